//! Django, the real library, against the ready config `config/examples/django.toml` on the
//! real PostgreSQL and MariaDB, through the real binary.
//!
//! The test writes a tiny Django project (an app `jobs` with the jobs model of the config's
//! header), runs Django's own `makemigrations` and `migrate` into a database of its own, and
//! starts real worker processes that use the ORM: each marks its job running and saves it
//! every 0.3 s (`updated_at`, `auto_now`, is the heartbeat). One worker is SIGKILLed mid-job,
//! one stays alive. The dead job's times are moved back 47 minutes through the ORM (the time
//! a real outage would take), then jobwarden, with the ready config, must find it with that
//! age and never the live one across several scans, and `recover` must fail it so that
//! Django reads the row back (status, error, `finished_at` aware or naive as `USE_TZ` says,
//! and now on Django's own clock) and a new job created through the ORM is processed.
//! `USE_TZ=False` with `TIME_ZONE = "America/New_York"` writes naive New York wall clock: the
//! config's `timezone` set to it keeps the age right, not off by the offset.

mod common;

use common::python::{found, python, Script, DJANGO_VERSION};
use common::{jobwarden_json, Backend, TestDb};

const SETTINGS_PY: &str = r#"
import os
from urllib.parse import urlsplit

url = urlsplit(os.environ["JW_DATABASE_URL"])
if url.scheme == "mysql":
    import pymysql
    pymysql.install_as_MySQLdb()
    ENGINE = "django.db.backends.mysql"
else:
    ENGINE = "django.db.backends.postgresql"

SECRET_KEY = "jobwarden-test"
INSTALLED_APPS = ["jobs"]
DATABASES = {
    "default": {
        "ENGINE": ENGINE,
        "NAME": url.path.lstrip("/"),
        "USER": url.username or "",
        "PASSWORD": url.password or "",
        "HOST": url.hostname,
        "PORT": str(url.port or ""),
    }
}
USE_TZ = os.environ["JW_USE_TZ"] == "1"
TIME_ZONE = os.environ["JW_TIME_ZONE"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"#;

/// The model the ready config's header describes.
const MODELS_PY: &str = r#"
from django.db import models


class Job(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    progress = models.JSONField(default=dict, blank=True)
"#;

/// `python jobs.py COMMAND [ID]`: the ORM's side of the test.
const JOBS_PY: &str = r#"
import json, os, sys, time
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
import django
django.setup()
from django.db.models import F
from django.utils import timezone
from jobs.models import Job

command = sys.argv[1]
if command == "create":
    print(Job.objects.create().pk)
elif command == "work":
    # Takes the job and hangs in it, saving its progress (and so updated_at) as it goes.
    job = Job.objects.get(pk=sys.argv[2])
    job.status = Job.Status.RUNNING
    job.started_at = timezone.now()
    job.save()
    print("running %s" % job.pk, flush=True)
    step = 0
    while True:
        step += 1
        job.progress = {"step": step}
        job.save(update_fields=["progress", "updated_at"])
        time.sleep(0.3)
elif command == "shift":
    # The outage: the job's times, as Django wrote them, moved back.
    back = timedelta(minutes=float(sys.argv[3]))
    Job.objects.filter(pk=sys.argv[2]).update(
        created_at=F("created_at") - back,
        updated_at=F("updated_at") - back,
        started_at=F("started_at") - back,
    )
elif command == "process":
    # A worker run: every pending job taken and finished.
    for job in Job.objects.filter(status=Job.Status.PENDING).order_by("pk"):
        job.status = Job.Status.RUNNING
        job.started_at = timezone.now()
        job.save()
        job.status = Job.Status.DONE
        job.finished_at = timezone.now()
        job.progress = {"step": 1}
        job.save()
        print("done %s" % job.pk, flush=True)
elif command == "get":
    job = Job.objects.get(pk=sys.argv[2])
    job.full_clean()
    finished = job.finished_at
    print(json.dumps({
        "status": job.status,
        "error": job.error,
        "progress": job.progress,
        "finished_at": finished and finished.isoformat(),
        "aware": finished is not None and timezone.is_aware(finished),
        "finished_ago": finished and (timezone.now() - finished).total_seconds(),
        "started_at": job.started_at and job.started_at.isoformat(),
    }))
"#;

struct Case {
    backend: Backend,
    use_tz: bool,
    time_zone: &'static str,
}

fn project(db: &TestDb, case: &Case) -> Script {
    let root = db.dir().join("site");
    for (path, text) in [
        ("proj/__init__.py", ""),
        ("proj/settings.py", SETTINGS_PY),
        ("jobs/__init__.py", ""),
        ("jobs/models.py", MODELS_PY),
        ("jobs.py", JOBS_PY),
        (
            "manage.py",
            "import os, sys\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings')\n\
             from django.core.management import execute_from_command_line\n\
             execute_from_command_line(sys.argv)\n",
        ),
    ] {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write the Django project");
    }
    let script = |name: &str| Script {
        python: python("django", DJANGO_VERSION),
        script: root.join(name),
        cwd: root.clone(),
        env: vec![
            ("JW_DATABASE_URL".into(), db.url.clone()),
            (
                "JW_USE_TZ".into(),
                if case.use_tz { "1" } else { "0" }.into(),
            ),
            ("JW_TIME_ZONE".into(), case.time_zone.into()),
        ],
    };
    let manage = script("manage.py");
    manage.run(&["makemigrations", "jobs"]);
    manage.run(&["migrate"]);
    script("jobs.py")
}

async fn killed_mid_job(case: Case) {
    let db = TestDb::new(case.backend).await;
    let django = project(&db, &case);

    // Every time the rows hold was written after this: the ages found are bounded by it.
    let start = std::time::SystemTime::now();
    let dead = django.run(&["create"]);
    let live = django.run(&["create"]);
    let idle = django.run(&["create"]);

    let mut killed = django.worker(&["work", &dead], db.dir());
    killed.expect(&[format!("running {dead}")]);
    killed.kill();
    let mut alive = django.worker(&["work", &live], db.dir());
    alive.expect(&[format!("running {live}")]);

    // The outage lasts: the dead job last beat 47 minutes ago, the idle one waits 2 hours.
    django.run(&["shift", &dead, "47"]);
    django.run(&["shift", &idle, "120"]);

    // The ready config, with the zone `USE_TZ=False` needs, and a state directory of its own.
    let mut edits = vec![];
    if !case.use_tz {
        edits.push((
            "timezone = \"UTC\"",
            format!("timezone = \"{}\"", case.time_zone),
        ));
    }
    let edits: Vec<(&str, &str)> = edits.iter().map(|(f, t)| (*f, t.as_str())).collect();
    let config = db.ready_config("examples/django.toml", &edits);

    common::worker::validates(&db.url, &config);

    // Several scans: the dead job found with its age, the idle one alerted on, and the live
    // one, beating every 0.3 s, never.
    common::worker::scans_find_dead_and_idle(&db.url, &config, &dead, &idle, start, &mut alive)
        .await;

    // recover fails the dead job; the idle one stays an alert (exit 1).
    let (code, report) = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(common::applied(&report), vec![dead.as_str()], "{report}");

    // Django reads the failure back: its status word, jobwarden's reason in `error`, and
    // `finished_at` just now on Django's own clock, aware exactly when USE_TZ is on.
    let job = django.json(&["get", &dead]);
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("jobwarden: stalled: "), "{job}");
    assert_eq!(job["aware"], case.use_tz, "{job}");
    let ago = job["finished_ago"].as_f64().unwrap_or(f64::NAN);
    assert!(
        (-2.0..60.0).contains(&ago),
        "finished_at is {ago}s ago: {job}"
    );
    // The live job and the idle one are untouched.
    let job = django.json(&["get", &live]);
    assert_eq!(
        (&job["status"], &job["error"]),
        (&"running".into(), &"".into())
    );
    assert_eq!(django.json(&["get", &idle])["status"], "pending");
    assert!(alive.alive(), "the live worker is still working");

    // A new job created through the ORM is processed, with the idle one.
    let new = django.run(&["create"]);
    let done = django.run(&["process"]);
    assert_eq!(done, format!("done {idle}\ndone {new}"));
    let job = django.json(&["get", &new]);
    assert_eq!(
        (&job["status"], &job["error"]),
        (&"done".into(), &"".into())
    );
    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!((code, found(&report)), (0, vec![]), "{report}");
}

#[tokio::test]
async fn postgres_use_tz() {
    killed_mid_job(Case {
        backend: Backend::Postgres,
        use_tz: true,
        time_zone: "UTC",
    })
    .await;
}

#[tokio::test]
async fn mariadb_use_tz() {
    killed_mid_job(Case {
        backend: Backend::MySql,
        use_tz: true,
        time_zone: "Europe/Berlin",
    })
    .await;
}

#[tokio::test]
async fn mariadb_naive_new_york() {
    killed_mid_job(Case {
        backend: Backend::MySql,
        use_tz: false,
        time_zone: "America/New_York",
    })
    .await;
}

#[tokio::test]
async fn postgres_naive_new_york() {
    killed_mid_job(Case {
        backend: Backend::Postgres,
        use_tz: false,
        time_zone: "America/New_York",
    })
    .await;
}
