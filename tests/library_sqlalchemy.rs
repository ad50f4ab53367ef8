//! SQLAlchemy, the real library, against the ready config `config/examples/sqlalchemy.toml`
//! on the real PostgreSQL, MariaDB and SQLite, through the real binary.
//!
//! The test writes a declarative model (the one in the config's header) and real worker
//! processes that use the ORM: `create_all` makes the table, each worker marks its job
//! running and commits it every 0.3 s (`updated_at`, `onupdate`, is the heartbeat). One
//! worker is SIGKILLed mid-job, one stays alive. The dead job's times are moved back 47
//! minutes through the ORM (the time a real outage would take), then jobwarden, with the
//! ready config, must find it with that age and never the live one across several scans, and
//! `recover` must fail it so that SQLAlchemy reads the row back (status, error, `finished_at`
//! aware on PostgreSQL's `DateTime(timezone=True)`, naive UTC on MariaDB's and SQLite's
//! `DateTime`, and now on the worker's own clock) and a new job created through the ORM is
//! processed.

mod common;

use common::python::{found, python, Script, SQLALCHEMY_VERSION};
use common::{jobwarden_json, Backend, TestDb};

/// `python jobs.py COMMAND [ID]`: the model and the ORM's side of the test.
const JOBS_PY: &str = r#"
import json, os, sys, time
from datetime import datetime, timedelta, timezone
from typing import Optional

from sqlalchemy import JSON, DateTime, String, Text, create_engine, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

# PostgreSQL: DateTime(timezone=True), aware UTC. MariaDB and SQLite: DateTime, naive UTC,
# or (JW_LOCAL) naive local time in the process's zone, as `datetime.now()` writes it.
AWARE = os.environ["JW_AWARE"] == "1"
LOCAL = os.environ.get("JW_LOCAL") == "1"


def utcnow():
    if LOCAL:
        return datetime.now()
    now = datetime.now(timezone.utc)
    return now if AWARE else now.replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=AWARE), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=AWARE), default=utcnow, onupdate=utcnow
    )
    started_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=AWARE))
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=AWARE))
    error: Mapped[Optional[str]] = mapped_column(Text)
    progress: Mapped[Optional[dict]] = mapped_column(JSON)


url = os.environ["JW_DATABASE_URL"]
scheme, rest = url.split("://", 1)
url = {
    "postgres": "postgresql+psycopg://" + rest,
    "mysql": "mysql+pymysql://" + rest,
    "sqlite": "sqlite:///" + rest,
}[scheme]
engine = create_engine(url)

command = sys.argv[1]
if command == "init":
    Base.metadata.create_all(engine)
elif command == "create":
    with Session(engine) as session:
        job = Job()
        session.add(job)
        session.commit()
        print(job.id)
elif command == "work":
    # Takes the job and hangs in it, committing its progress (and so updated_at) as it goes.
    with Session(engine) as session:
        job = session.get(Job, int(sys.argv[2]))
        job.status = "running"
        job.started_at = utcnow()
        session.commit()
        print("running %s" % job.id, flush=True)
        step = 0
        while True:
            step += 1
            job.progress = {"step": step}
            session.commit()
            time.sleep(0.3)
elif command == "shift":
    # The outage: the job's times, as SQLAlchemy wrote them, moved back.
    back = timedelta(minutes=float(sys.argv[3]))
    with Session(engine) as session:
        job = session.get(Job, int(sys.argv[2]))
        session.execute(update(Job).where(Job.id == job.id).values(
            created_at=job.created_at - back,
            updated_at=job.updated_at - back,
            started_at=job.started_at and job.started_at - back,
        ))
        session.commit()
elif command == "process":
    # A worker run: every pending job taken and finished.
    with Session(engine) as session:
        pending = select(Job).where(Job.status == "pending").order_by(Job.id)
        for job in session.scalars(pending).all():
            job.status = "running"
            job.started_at = utcnow()
            session.commit()
            job.status = "done"
            job.finished_at = utcnow()
            job.progress = {"step": 1}
            session.commit()
            print("done %s" % job.id, flush=True)
elif command == "get":
    with Session(engine) as session:
        job = session.get(Job, int(sys.argv[2]))
        finished = job.finished_at
        print(json.dumps({
            "status": job.status,
            "error": job.error,
            "progress": job.progress,
            "finished_at": finished and finished.isoformat(),
            "aware": finished is not None and finished.tzinfo is not None,
            "finished_ago": finished and (utcnow() - finished).total_seconds(),
            "updated_ago": (utcnow() - job.updated_at).total_seconds(),
        }))
"#;

/// `local`: the model fills its plain `DateTime`s with `datetime.now()` in New York, and the
/// config's `timezone` says so.
async fn killed_mid_job(backend: Backend, local: Option<&str>) {
    let db = TestDb::new(backend).await;
    let aware = backend == Backend::Postgres && local.is_none();
    let script = db.dir().join("jobs.py");
    std::fs::write(&script, JOBS_PY).expect("write jobs.py");
    let orm = Script {
        python: python("sqlalchemy", SQLALCHEMY_VERSION),
        script,
        cwd: db.dir().to_path_buf(),
        env: vec![
            ("JW_DATABASE_URL".into(), db.url.clone()),
            ("JW_AWARE".into(), if aware { "1" } else { "0" }.into()),
            (
                "JW_LOCAL".into(),
                if local.is_some() { "1" } else { "0" }.into(),
            ),
            ("TZ".into(), local.unwrap_or("UTC").into()),
        ],
    };
    orm.run(&["init"]);

    // Every time the rows hold was written after this: the ages found are bounded by it.
    let start = std::time::SystemTime::now();
    let dead = orm.run(&["create"]);
    let live = orm.run(&["create"]);
    let idle = orm.run(&["create"]);

    let mut killed = orm.worker(&["work", &dead], db.dir());
    killed.expect(&[format!("running {dead}")]);
    killed.kill();
    let mut alive = orm.worker(&["work", &live], db.dir());
    alive.expect(&[format!("running {live}")]);

    // The outage lasts: the dead job last beat 47 minutes ago, the idle one waits 2 hours.
    orm.run(&["shift", &dead, "47"]);
    orm.run(&["shift", &idle, "120"]);

    // The ready config, with the application's zone for local time (as its header says),
    // and a state directory of its own.
    let zone = local.map(|zone| format!("timezone = \"{zone}\""));
    let edits: Vec<(&str, &str)> = zone
        .iter()
        .map(|z| ("timezone = \"UTC\"", z.as_str()))
        .collect();
    let config = db.ready_config("examples/sqlalchemy.toml", &edits);

    common::worker::validates(&db.url, &config);

    // Several scans: the dead job found with its age, the idle one alerted on, and the live
    // one, beating every 0.3 s, never.
    common::worker::scans_find_dead_and_idle(&db.url, &config, &dead, &idle, start, &mut alive)
        .await;

    // recover fails the dead job; the idle one stays an alert (exit 1).
    let (code, report) = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(common::applied(&report), vec![dead.as_str()], "{report}");

    // SQLAlchemy reads the failure back: the status word, jobwarden's reason in `error`, and
    // `finished_at` just now on the worker's clock, aware exactly when the column is.
    let job = orm.json(&["get", &dead]);
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("jobwarden: stalled: "), "{job}");
    assert_eq!(job["aware"], aware, "{job}");
    let ago = job["finished_ago"].as_f64().unwrap_or(f64::NAN);
    assert!(
        (-2.0..60.0).contains(&ago),
        "finished_at is {ago}s ago: {job}"
    );
    // The live job and the idle one are untouched, the live one still beating.
    let job = orm.json(&["get", &live]);
    assert_eq!(
        (&job["status"], &job["error"]),
        (&"running".into(), &serde_json::Value::Null)
    );
    assert!(
        job["updated_ago"].as_f64().unwrap_or(f64::NAN) < 5.0,
        "{job}"
    );
    assert_eq!(orm.json(&["get", &idle])["status"], "pending");
    assert!(alive.alive(), "the live worker is still working");

    // A new job created through the ORM is processed, with the idle one.
    let new = orm.run(&["create"]);
    let done = orm.run(&["process"]);
    assert_eq!(done, format!("done {idle}\ndone {new}"));
    let job = orm.json(&["get", &new]);
    assert_eq!(
        (&job["status"], &job["error"]),
        (&"done".into(), &serde_json::Value::Null)
    );
    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!((code, found(&report)), (0, vec![]), "{report}");
}

#[tokio::test]
async fn postgres_timezone_true() {
    killed_mid_job(Backend::Postgres, None).await;
}

#[tokio::test]
async fn mariadb_naive_utc() {
    killed_mid_job(Backend::MySql, None).await;
}

#[tokio::test]
async fn sqlite_naive_utc() {
    killed_mid_job(Backend::Sqlite, None).await;
}

#[tokio::test]
async fn mariadb_naive_local_new_york() {
    killed_mid_job(Backend::MySql, Some("America/New_York")).await;
}
