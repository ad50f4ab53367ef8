//! procrastinate, the real library, against the ready config
//! `config/examples/procrastinate.toml` on the real PostgreSQL, through the real binary.
//!
//! Real procrastinate workers (a small Python app, procrastinate from the virtualenv
//! `scripts/test` fills from PyPI) take jobs and hang in their tasks; one worker is SIGKILLed
//! mid-job, one stays alive and keeps beating. procrastinate keeps no per-job heartbeat: the
//! dead worker's `last_heartbeat` is moved back 47 minutes (the time a real outage would
//! take), then jobwarden, with the ready config (`[workers]`, no view), must find the dead
//! worker's job with that age and never the live worker's across several scans, fail it, and
//! procrastinate itself must read it back as failed, retry it with its own
//! `retry_job_by_id`, run it to its end on a fresh worker, and run a new job.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::worker::Worker;
use common::{jobwarden_json, Backend, TestDb};

/// The version `scripts/test` installs and the ready config names in its header.
const PROCRASTINATE_VERSION: &str = "3.10.0";

/// The application: one task that hangs on its first attempt when asked to (so a retry of
/// it completes), in a module of its own as procrastinate wants.
const TASKS_PY: &str = r#"
import asyncio, os
import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["JW_DATABASE_URL"])
)

@app.task(name="work", pass_context=True)
async def work(context, hang=False):
    print(f"started {context.job.id}", flush=True)
    if hang and context.job.attempts == 0:
        await asyncio.Event().wait()
    print(f"done {context.job.id}", flush=True)
"#;

/// The client: `python pc.py COMMAND [ARGS]`, the database URL in `JW_DATABASE_URL`.
const PC_PY: &str = r#"
import asyncio, datetime, sys
from jw_tasks import app, work

command, *args = sys.argv[1:]

async def main():
    async with app.open_async():
        if command == "schema":
            await app.schema_manager.apply_schema_async()
        elif command == "defer":
            print(await work.configure(queue=args[0]).defer_async(hang=args[1] == "hang"))
        elif command == "work":
            print("working", flush=True)
            await app.run_worker_async(queues=[args[0]], update_heartbeat_interval=1,
                                       fetch_job_polling_interval=0.5)
        elif command == "retry":
            await app.job_manager.retry_job_by_id_async(
                int(args[0]), retry_at=datetime.datetime.now(datetime.timezone.utc))
        elif command == "status":
            print(list(await app.job_manager.list_jobs_async(id=int(args[0])))[0].status)

asyncio.run(main())
"#;

/// The Python of the virtualenv holding procrastinate at [`PROCRASTINATE_VERSION`]; a
/// missing one or another version fails the test with the way to get it.
fn python() -> PathBuf {
    let venv = common::worker::cache_dir("JOBWARDEN_TEST_PROCRASTINATE_VENV", "procrastinate");
    let python = venv.join("bin/python");
    let version = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('procrastinate'))",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(
        version.as_deref(),
        Some(PROCRASTINATE_VERSION),
        "procrastinate {PROCRASTINATE_VERSION} is not installed in {}; run the tests through \
         scripts/test, which installs it from PyPI",
        venv.display()
    );
    python
}

/// Runs the client against one database.
struct Client {
    python: PathBuf,
    dir: PathBuf,
    url: String,
}

impl Client {
    fn new(db: &TestDb) -> Client {
        std::fs::write(db.dir().join("jw_tasks.py"), TASKS_PY).expect("write jw_tasks.py");
        std::fs::write(db.dir().join("pc.py"), PC_PY).expect("write pc.py");
        Client {
            python: python(),
            dir: db.dir().to_path_buf(),
            url: db.url.clone(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.python);
        command
            .arg(self.dir.join("pc.py"))
            .args(args)
            .current_dir(&self.dir)
            .env("JW_DATABASE_URL", &self.url)
            .env("PYTHONPATH", &self.dir)
            .stdin(Stdio::null());
        command
    }

    /// Runs one client command to its end; its stdout, trimmed.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run python");
        assert!(
            out.status.success(),
            "python pc.py {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn defer(&self, queue: &str, hang: bool) -> String {
        self.run(&["defer", queue, if hang { "hang" } else { "finish" }])
    }

    /// procrastinate's own view of the job's status.
    fn status(&self, id: &str) -> String {
        self.run(&["status", id])
    }

    /// A worker on `queue`.
    fn worker(&self, queue: &str, dir: &Path) -> Worker {
        let stderr = dir.join(format!("worker-{queue}.err"));
        Worker::spawn(self.command(&["work", queue]), stderr)
    }
}

fn finding<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["job_id"] == id))
        .unwrap_or_else(|| panic!("no finding for {id}: {report}"))
}

async fn one(db: &TestDb, sql: &str) -> String {
    db.rows(sql)
        .await
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
        .unwrap_or_else(|| panic!("no value: {sql}"))
}

#[tokio::test]
async fn procrastinate_workers_killed_mid_job() {
    let db = TestDb::new(Backend::Postgres).await;
    let pc = Client::new(&db);
    pc.run(&["schema"]);

    let dead = pc.defer("jw-dead", true);
    let live = pc.defer("jw-live", true);

    // One worker takes its job and keeps beating; another takes its job and is killed.
    let mut alive = pc.worker("jw-live", db.dir());
    alive.expect(&[format!("started {live}")]);
    let mut killed = pc.worker("jw-dead", db.dir());
    killed.expect(&[format!("started {dead}")]);
    killed.kill();
    let dead_worker = one(
        &db,
        &format!("SELECT worker_id::text FROM procrastinate_jobs WHERE id = {dead}"),
    )
    .await;
    let live_worker = one(
        &db,
        &format!("SELECT worker_id::text FROM procrastinate_jobs WHERE id = {live}"),
    )
    .await;
    assert_ne!(dead_worker, live_worker);

    // The outage lasts: the dead worker's last beat was 47 minutes ago.
    let moved = std::time::SystemTime::now();
    db.exec(&format!(
        "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '47 minutes' \
         WHERE id = {dead_worker}"
    ))
    .await;

    // The ready config as it is, with a state directory of its own.
    let config = db.ready_config("examples/procrastinate.toml", &[]);
    let text = common::worker::validates(&db.url, &config);
    assert!(
        text.contains("workers.heartbeat_at (last_heartbeat"),
        "{text}"
    );

    // Several scans: the dead worker's job is found with its worker's age, the live one never.
    for scan in 0..3 {
        if scan > 0 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
        assert_eq!(code, 1, "{report}");
        assert_eq!(
            common::findings(&report),
            common::expect(&[(dead.as_str(), "stalled", "worker-silent")]),
            "scan {scan}: {report}"
        );
        let f = finding(&report, &dead);
        let since = moved.elapsed().unwrap_or_default().as_secs();
        let age = f["age_seconds"].as_u64().expect("age");
        assert!(
            (47 * 60..=47 * 60 + since + 1).contains(&age),
            "scan {scan}: {age}s old, not 47m (+{since}s): {report}"
        );
        let message = f["message"].as_str().expect("message");
        assert!(
            message.starts_with(&format!("worker {dead_worker} last beat at ")),
            "{message}"
        );
        assert_eq!(f["worker"]["id"], dead_worker.as_str(), "{f}");
        assert_eq!(f["worker"]["gone"], false, "{f}");
        assert_eq!(report["jobs"]["running"], 2, "{report}");
        assert!(alive.alive(), "the live worker is still working");
    }

    // recover fails the dead job; nothing is left (exit 0).
    let (code, report) = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        common::applied(&report),
        std::slice::from_ref(&dead),
        "{report}"
    );

    // procrastinate reads it back as failed, with its own `failed` event; the live job is
    // untouched.
    assert_eq!(pc.status(&dead), "failed");
    assert_eq!(pc.status(&live), "doing");
    let events = one(
        &db,
        &format!(
            "SELECT string_agg(type::text, ',' ORDER BY id) FROM procrastinate_events \
             WHERE job_id = {dead}"
        ),
    )
    .await;
    assert_eq!(events, "deferred,started,failed");
    assert!(alive.alive(), "the live worker is still working");

    // procrastinate's own retry takes it back to `todo`; a fresh worker runs it to its end,
    // and a new job too.
    pc.run(&["retry", &dead]);
    assert_eq!(pc.status(&dead), "todo");
    let fresh = pc.worker("jw-dead", db.dir());
    fresh.expect(&[format!("done {dead}")]);
    let new = pc.defer("jw-dead", false);
    fresh.expect(&[format!("done {new}")]);
    assert_eq!(pc.status(&dead), "succeeded");
    assert_eq!(pc.status(&new), "succeeded");
    let errors = std::fs::read_to_string(&fresh.stderr).unwrap_or_default();
    assert!(
        !errors.contains("Traceback") && !errors.contains("Error"),
        "the fresh worker reported an error: {errors}"
    );

    // The live worker's job is still left alone.
    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!((code, common::findings(&report)), (0, vec![]), "{report}");
}
