//! Celery, the real library, with its own database result backend (SQLAlchemy,
//! `celery_taskmeta`), against the ready config `config/examples/celery.toml` on the real
//! PostgreSQL, MariaDB and SQLite, through the real binary.
//!
//! A small Celery app (`task_track_started = True`, kombu's `filesystem://` broker in the
//! test's folder, so no broker service) runs real workers (`--pool=solo`, so a SIGKILL ends
//! the task with the worker). Each takes a task that hangs; one worker is SIGKILLed mid-task,
//! one stays alive. A STARTED row has no time of its own (`date_done` is NULL until the task
//! ends), so jobwarden dates it from the scan that first sees it: after a first scan, the
//! dead task's first sight is moved back 90 minutes in jobwarden's memory (the time a
//! daemon would have watched it through a real outage). jobwarden must then find the dead
//! task with that age and never the live one across several scans, and `recover` must fail
//! it so that Celery reads it back: `AsyncResult(id).state == "FAILURE"`, `.result` a
//! `billiard.exceptions.WorkerLostError` carrying the reason, `.traceback` the reason; and a
//! fresh worker runs a new task to SUCCESS. Celery 5.7 keeps `result` as JSON bytes (the
//! ready config's `{ json = ... }`); one case writes it pickled (`{ pickle = ... }`, Celery
//! before 5.7), which Celery 5.7 still unpickles.

mod common;

use std::path::Path;

use common::python::{python, Script, CELERY_VERSION};
use common::{jobwarden_json, Backend, TestDb};

/// The application and its command line: `python jw_celery.py COMMAND [ARGS]`, the database
/// in `JW_DATABASE_URL` (jobwarden's URL, turned into SQLAlchemy's), the broker's folder in
/// `JW_BROKER_DIR`.
const APP_PY: &str = r#"
import json, os, sys, time
from datetime import datetime, timezone
from urllib.parse import urlsplit

from celery import Celery


def backend_url(url):
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return "db+sqlite:///" + url[len("sqlite://"):]
    driver = {"postgres": "postgresql+psycopg", "mysql": "mysql+pymysql"}[scheme]
    return "db+" + driver + url[len(scheme):]


broker = os.environ["JW_BROKER_DIR"]
os.makedirs(broker, exist_ok=True)
app = Celery("jw", broker="filesystem://", backend=backend_url(os.environ["JW_DATABASE_URL"]))
app.conf.update(
    broker_transport_options={"data_folder_in": broker, "data_folder_out": broker,
                              "polling_interval": 0.1},
    broker_connection_retry_on_startup=True,
    task_track_started=True,
    worker_redirect_stdouts=False,
    worker_hijack_root_logger=False,
)


@app.task(name="work", bind=True)
def work(self, hang):
    print(f"started {self.request.id}", flush=True)
    while hang:
        time.sleep(0.2)
    print(f"done {self.request.id}", flush=True)
    return "finished"


def state(task_id):
    r = app.AsyncResult(task_id)
    result = r.result
    exception = isinstance(result, BaseException)
    return {
        "state": r.state,
        "type": type(result).__module__ + "." + type(result).__qualname__,
        "args": list(result.args) if exception else None,
        "exception": exception,
        "traceback": r.traceback,
        # date_done as Celery reads it back (naive, UTC: the app's zone), seconds ago.
        "done_ago": r.date_done and (
            datetime.now(timezone.utc).replace(tzinfo=None) - r.date_done.replace(tzinfo=None)
        ).total_seconds(),
    }


if __name__ == "__main__":
    # Each command does all it can in one process: importing Celery takes a second.
    command, *args = sys.argv[1:]
    if command == "send":
        # QUEUE:hang or QUEUE:finish, one task each; their ids, one a line. The backend's
        # tables are made first, so that the workers starting next do not race to make them.
        app.backend.ResultSession().close()
        for arg in args:
            queue, how = arg.split(":")
            print(work.apply_async(args=[how == "hang"], queue=queue).id)
    elif command == "worker":
        app.worker_main(["worker", "--pool=solo", "-Q", args[0], "-n", f"{args[0]}@%h",
                         "--loglevel=WARNING", "--without-heartbeat", "--without-gossip",
                         "--without-mingle"])
    elif command == "get":
        print(json.dumps({task_id: state(task_id) for task_id in args}))
    elif command == "run":
        # A new task on the queue, waited for; its id, what it returned, and its state.
        task = work.apply_async(args=[False], queue=args[0])
        print(json.dumps({"id": task.id, "returned": task.get(timeout=30), **state(task.id)}))
"#;

fn app(db: &TestDb) -> Script {
    let script = db.dir().join("jw_celery.py");
    std::fs::write(&script, APP_PY).expect("write the Celery app");
    Script {
        python: python("celery", CELERY_VERSION),
        script,
        cwd: db.dir().to_path_buf(),
        env: vec![
            ("JW_DATABASE_URL".into(), db.url.clone()),
            (
                "JW_BROKER_DIR".into(),
                db.dir().join("broker").display().to_string(),
            ),
        ],
    }
}

/// Moves the moment jobwarden's memory (in `state`) first saw `id` in its status back by
/// `seconds`, as if the scans had gone on for that long.
fn first_seen_earlier(state: &Path, id: &str, seconds: f64) {
    let file = state.join("memory.json");
    let text = std::fs::read_to_string(&file).expect("jobwarden's memory");
    let mut memory: serde_json::Value = serde_json::from_str(&text).expect("memory JSON");
    let seen = &mut memory["jobs"][id];
    assert_eq!(seen["source"], "observed", "{text}");
    let entered = seen["entered"].as_f64().expect("first sight");
    seen["entered"] = (entered - seconds).into();
    std::fs::write(&file, memory.to_string()).expect("write the memory");
}

/// How the failure is written into `result`.
enum Shape {
    /// The ready config as it is: JSON bytes (Celery 5.7).
    Json,
    /// `{ pickle = ... }`: Celery before 5.7.
    Pickle,
}

async fn killed_mid_task(backend: Backend, shape: Shape) {
    let db = TestDb::new(backend).await;
    let celery = app(&db);

    let sent = celery.run(&["send", "jw-dead:hang", "jw-live:hang"]);
    let [dead, live] = [0, 1].map(|i| sent.lines().nth(i).expect("two ids").to_string());
    let mut killed = celery.worker(&["worker", "jw-dead"], db.dir());
    let mut alive = celery.worker(&["worker", "jw-live"], db.dir());
    killed.expect(&[format!("started {dead}")]);
    killed.kill();
    alive.expect(&[format!("started {live}")]);

    let edits: &[(&str, &str)] = match shape {
        Shape::Json => &[],
        Shape::Pickle => &[("result = { json = ", "result = { pickle = ")],
    };
    let config = db.ready_config("examples/celery.toml", edits);
    common::worker::validates(&db.url, &config);

    // The first scan sees both tasks STARTED, with no time of their own: nothing yet.
    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!((code, common::findings(&report)), (0, vec![]), "{report}");
    assert_eq!(report["jobs"]["running"], 2, "{report}");

    // The outage lasts: the scans have seen the dead task STARTED for 90 minutes.
    let start = std::time::SystemTime::now();
    first_seen_earlier(&db.dir().join("state"), &dead, 90.0 * 60.0);

    // Several scans: the dead task found with that age, the live one never.
    common::worker::scans_find(
        &db.url,
        &config,
        &[(&dead, "started-too-long", 90 * 60)],
        start,
        &mut alive,
    )
    .await;

    // recover fails the dead task; nothing is left (exit 0).
    let (code, report) = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(common::applied(&report), vec![dead.as_str()], "{report}");

    // A fresh worker starts (it takes a second or two to come up).
    let fresh = celery.worker(&["worker", "jw-dead"], db.dir());

    // Celery reads it back as it would a task whose worker was lost, with the reason.
    let tasks = celery.json(&["get", &dead, &live]);
    let task = &tasks[&dead];
    assert_eq!(task["state"], "FAILURE", "{task}");
    assert_eq!(task["exception"], true, "{task}");
    assert_eq!(
        task["type"], "billiard.exceptions.WorkerLostError",
        "{task}"
    );
    let reason = task["args"][0].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("jobwarden: started-too-long: "),
        "{task}"
    );
    assert_eq!(task["traceback"], reason, "{task}");
    // `date_done` is now, in the zone Celery writes it in.
    let ago = task["done_ago"].as_f64().unwrap_or(f64::NAN);
    assert!((-2.0..60.0).contains(&ago), "date_done {ago}s ago: {task}");
    // The live task is untouched.
    assert_eq!(tasks[&live]["state"], "STARTED", "{tasks}");
    assert!(alive.alive(), "the live worker is still working");

    // The fresh worker runs a new task to SUCCESS.
    let new = celery.json(&["run", "jw-dead"]);
    assert_eq!(
        (&new["state"], &new["returned"]),
        (&"SUCCESS".into(), &"finished".into()),
        "{new}"
    );
    let ago = new["done_ago"].as_f64().unwrap_or(f64::NAN);
    assert!((-2.0..60.0).contains(&ago), "Celery's own date_done: {new}");
    fresh.expect(&[format!("done {}", new["id"].as_str().unwrap_or_default())]);

    // The live task is still left alone.
    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!((code, common::findings(&report)), (0, vec![]), "{report}");
}

/// The ready config as it is.
async fn json_result(backend: Backend) {
    killed_mid_task(backend, Shape::Json).await;
}
per_backend!(ready_config, json_result);

/// `{ pickle = ... }`, as for Celery before 5.7.
async fn pickled_result(backend: Backend) {
    killed_mid_task(backend, Shape::Pickle).await;
}
per_backend!(pickle, pickled_result, postgres => Postgres);
