//! graphile-worker, the real library, against the ready config
//! `config/examples/graphile-worker.toml` on the real PostgreSQL, through the real binary.
//!
//! graphile-worker keeps no status: the config reads the view (and its unlock trigger) that
//! the config's header tells the user to create, taken from that header here. A real
//! graphile-worker worker (a small node script, graphile-worker from the cache `scripts/test`
//! fills from the npm registry) takes a job and hangs in it, and is SIGKILLed; another stays
//! alive in its own. The dead job's `locked_at` is moved back 47 minutes (the time a real
//! outage would take), then jobwarden must find it with that age and the worker that held it,
//! never the live one across several scans, unlock it through the view, and a fresh
//! graphile-worker worker must run it again to its end.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::worker::Worker;
use common::{jobwarden_json, Backend, TestDb};

/// The version `scripts/test` installs and the ready config names in its header.
const GRAPHILE_VERSION: &str = "0.16.6";

/// A graphile-worker client: `node gw.js URL COMMAND [ARG]`: `migrate`, `add TASK` (prints
/// the id), `work hang|finish` (task `job`: hangs, or ends).
const GW_JS: &str = r#"
const { run, quickAddJob, runMigrations } = require('graphile-worker')
const [url, command, arg] = process.argv.slice(2)
async function main () {
  if (command === 'migrate') { await runMigrations({ connectionString: url }); return }
  if (command === 'add') {
    const job = await quickAddJob({ connectionString: url }, arg, {})
    console.log(job.id)
    return
  }
  await run({
    connectionString: url, concurrency: 1, noHandleSignals: true, pollInterval: 200,
    taskList: {
      job: async (payload, helpers) => {
        console.log('started ' + helpers.job.id)
        if (arg === 'hang') await new Promise(() => {})
        console.log('done ' + helpers.job.id)
      }
    }
  })
  console.log('working')
}
main().catch((e) => { console.error(e.stack); process.exit(1) })
"#;

struct Gw {
    script: PathBuf,
    node_modules: PathBuf,
    url: String,
}

impl Gw {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(common::tool("node"));
        command
            .arg(&self.script)
            .arg(&self.url)
            .args(args)
            .env("NODE_PATH", &self.node_modules)
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run node");
        assert!(
            out.status.success(),
            "node gw.js {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn worker(&self, mode: &str, dir: &Path, n: usize) -> Worker {
        let stderr = dir.join(format!("worker-{n}-{mode}.err"));
        Worker::spawn(self.command(&["work", mode]), stderr)
    }
}

/// The SQL statements in the ready config's header: its blocks of `#   ` lines, each ended by
/// a bare `#` line (the `Try it:` command excepted).
fn header_sql(config: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in config.lines() {
        match line.strip_prefix("#   ") {
            Some(sql) => {
                current.push_str(sql);
                current.push('\n');
            }
            None => {
                let block = std::mem::take(&mut current);
                if block.starts_with("CREATE ") {
                    statements.push(block);
                }
            }
        }
    }
    statements
}

#[tokio::test]
async fn graphile_worker_killed_mid_job_is_unlocked_and_runs_again() {
    let db = TestDb::new(Backend::Postgres).await;
    let script = db.dir().join("gw.js");
    std::fs::write(&script, GW_JS).expect("write gw.js");
    let gw = Gw {
        script,
        node_modules: common::worker::node_modules("graphile-worker", GRAPHILE_VERSION),
        url: db.url.clone(),
    };
    gw.run(&["migrate"]);

    // The view and trigger the ready config's header says to create.
    let ready =
        std::fs::read_to_string(common::root().join("config/examples/graphile-worker.toml"))
            .expect("config/examples/graphile-worker.toml");
    assert!(ready.contains(&format!("graphile-worker {GRAPHILE_VERSION}")));
    let statements = header_sql(&ready);
    assert_eq!(statements.len(), 3, "{statements:?}");
    for sql in &statements {
        db.exec(sql).await;
    }

    // A worker takes the first job and is killed in it; another stays alive in the second.
    let dead = gw.run(&["add", "job"]);
    let mut killed = gw.worker("hang", db.dir(), 1);
    killed.expect(&[format!("started {dead}")]);
    killed.kill();
    let holder = db
        .rows(&format!(
            "SELECT locked_by FROM graphile_worker._private_jobs WHERE id = {dead}"
        ))
        .await[0][0]
        .clone()
        .expect("the dead job is still locked");
    let live = gw.run(&["add", "job"]);
    let mut alive = gw.worker("hang", db.dir(), 2);
    alive.expect(&[format!("started {live}")]);

    // The outage lasts: the dead job was locked 47 minutes ago.
    let moved = std::time::SystemTime::now();
    db.exec(&format!(
        "UPDATE graphile_worker._private_jobs SET locked_at = now() - interval '47 minutes', \
         created_at = now() - interval '50 minutes' WHERE id = {dead}"
    ))
    .await;

    let config = db.ready_config("examples/graphile-worker.toml", &[]);
    let text = common::worker::validates(&db.url, &config);
    assert!(
        text.contains("graphile_worker.jobwarden_jobs is a view"),
        "{text}"
    );

    // Several scans: the dead job, with its age and its worker; never the live one.
    for scan in 0..3 {
        if scan > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
        assert_eq!(code, 1, "{report}");
        let findings = report["findings"].as_array().expect("findings");
        assert_eq!(findings.len(), 1, "scan {scan}: {report}");
        let f = &findings[0];
        assert_eq!(
            (f["job_id"].as_str(), f["rule"].as_str()),
            (Some(dead.as_str()), Some("locked-too-long")),
            "{report}"
        );
        // The lock's holder is the finding's owner, as forceUnlockWorkers takes it; with no
        // worker table, nothing is said of its liveness.
        assert_eq!(f["worker"], serde_json::json!({"id": holder}), "{report}");
        let since = moved.elapsed().unwrap_or_default().as_secs() as i64;
        let age = f["age_seconds"].as_i64().unwrap_or(-1);
        assert!(
            (47 * 60..=47 * 60 + since + 1).contains(&age),
            "scan {scan}: {age}s old, not 47 minutes: {report}"
        );
        assert!(alive.alive(), "the live worker is still working");
    }

    // recover: the dead job is unlocked, the live one untouched.
    let (_, report) = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(common::applied(&report), vec![dead.clone()], "{report}");
    let rows = db
        .rows(
            "SELECT id::text, (locked_at IS NULL)::text, coalesce(locked_by, '') \
             FROM graphile_worker._private_jobs ORDER BY id",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            vec![Some(dead.clone()), Some("true".into()), Some(String::new())],
            vec![
                Some(live.clone()),
                Some("false".into()),
                rows[1][2].clone().filter(|w| !w.is_empty() && *w != holder)
            ],
        ],
        "{rows:?}"
    );

    // A fresh worker runs the unlocked job to its end: graphile-worker deletes it.
    let fresh = gw.worker("finish", db.dir(), 3);
    fresh.expect(&[format!("done {dead}")]);
    common::wait_for("the job's row to go", Duration::from_secs(10), || async {
        db.rows(&format!(
            "SELECT id::text FROM graphile_worker._private_jobs WHERE id = {dead}"
        ))
        .await
        .is_empty()
        .then_some(())
    })
    .await;
    assert!(alive.alive(), "the live worker is still working");
    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!(code, 0, "{report}");
}
