//! pg-boss, the real library, against the ready config `config/examples/pg-boss.toml` on the
//! real PostgreSQL, through the real binary.
//!
//! Real pg-boss workers (a small node script, pg-boss from the cache `scripts/test` fills from
//! the npm registry) take jobs and hang in their handlers; one worker is SIGKILLed mid-job,
//! one stays alive. The dead jobs' `started_on` is moved back 47 minutes (the time a real
//! outage would take; pg-boss's own expiry is off in these workers, as it is when no instance
//! supervises), then jobwarden, with the ready config pointed at the test's schema, must find
//! the dead jobs with that age and never the live one across several scans, fail one in
//! pg-boss's own shape, re-queue another through a per-queue rule (and fail instead a third
//! whose retries are used up), and pg-boss itself must read them back, run the re-queued job
//! again, and run a new job on a fresh worker.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::worker::{found, Worker};
use common::{jobwarden_json, Backend, TestDb};

/// The version `scripts/test` installs and the ready config names in its header.
const PGBOSS_VERSION: &str = "10.4.2";

/// pg-boss's schema in the test's own database: not the default `pgboss`, so the test also
/// proves the one edit a user with another schema makes.
const SCHEMA: &str = "pgboss_jw_test";

/// A pg-boss client: `node boss.js URL SCHEMA COMMAND QUEUES [ARG]`.
const BOSS_JS: &str = r#"
const PgBoss = require('pg-boss')
const [url, schema, command, queues, arg] = process.argv.slice(2)
// No supervision: pg-boss's own expiry must not fail the jobs jobwarden is to find.
const boss = new PgBoss({ connectionString: url, schema, supervise: false, schedule: false })
boss.on('error', (e) => { console.error('pg-boss error: ' + e.stack); process.exit(2) })
async function main () {
  await boss.start()
  const names = queues.split(',')
  for (const name of names) await boss.createQueue(name)
  if (command === 'work') {
    // arg `hang`: a job with data {hang: true} never ends; `finish`: every job completes.
    for (const name of names) {
      await boss.work(name, { pollingIntervalSeconds: 0.5 }, async ([job]) => {
        console.log('started ' + job.id)
        if (arg === 'hang' && job.data && job.data.hang) await new Promise(() => {})
        console.log('done ' + job.id)
        return { ok: true }
      })
    }
    console.log('working ' + queues)
    return
  }
  if (command === 'send') console.log(await boss.send(names[0], JSON.parse(arg)))
  if (command === 'get') console.log(JSON.stringify(await boss.getJobById(names[0], arg)))
  await boss.stop({ graceful: false, wait: false })
  process.exit(0)
}
main().catch((e) => { console.error(e.stack); process.exit(1) })
"#;

/// Runs the pg-boss client against one database.
struct Boss {
    script: PathBuf,
    node: PathBuf,
    node_modules: PathBuf,
    url: String,
}

impl Boss {
    fn new(db: &TestDb) -> Boss {
        let script = db.dir().join("boss.js");
        std::fs::write(&script, BOSS_JS).expect("write boss.js");
        Boss {
            script,
            node: common::tool("node"),
            node_modules: common::worker::node_modules("pg-boss", PGBOSS_VERSION),
            url: db.url.clone(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.node);
        command
            .arg(&self.script)
            .args([self.url.as_str(), SCHEMA])
            .args(args)
            .env("NODE_PATH", &self.node_modules)
            .stdin(Stdio::null());
        command
    }

    /// Runs one client command to its end; its stdout, trimmed.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run node");
        assert!(
            out.status.success(),
            "node boss.js {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn send(&self, queue: &str, data: &str) -> String {
        self.run(&["send", queue, data])
    }

    /// pg-boss's own `getJobById`.
    fn get(&self, queue: &str, id: &str) -> serde_json::Value {
        let out = self.run(&["get", queue, id]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("getJobById: {e}: {out}"))
    }

    /// A worker on `queues` (comma-separated), `mode` `hang` or `finish`.
    fn worker(&self, queues: &str, mode: &str, dir: &Path) -> Worker {
        let stderr = dir.join(format!("worker-{queues}-{mode}.err"));
        Worker::spawn(self.command(&["work", queues, mode]), stderr)
    }
}

fn finding<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["job_id"] == id))
        .unwrap_or_else(|| panic!("no finding for {id}: {report}"))
}

#[tokio::test]
async fn pg_boss_workers_killed_mid_job() {
    let db = TestDb::new(Backend::Postgres).await;
    db.exec(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await;
    let boss = Boss::new(&db);

    // Jobs sent through pg-boss, which makes its schema on the first start.
    let dead = boss.send("jw-dead", r#"{"hang": true}"#);
    let again = boss.send("jw-again", r#"{"hang": true}"#);
    let spent = boss.send("jw-spent", r#"{"hang": true}"#);
    let live = boss.send("jw-live", r#"{"hang": true}"#);
    let idle = boss.send("jw-idle", "{}");

    // One worker takes three jobs and is killed in their handlers; another stays alive in its.
    let mut killed = boss.worker("jw-dead,jw-again,jw-spent", "hang", db.dir());
    killed.expect(&[
        format!("started {dead}"),
        format!("started {again}"),
        format!("started {spent}"),
    ]);
    killed.kill();
    let mut alive = boss.worker("jw-live", "hang", db.dir());
    alive.expect(&[format!("started {live}")]);

    // The outage lasts: the dead jobs started 47 minutes ago, the idle one waits for 2 hours.
    let moved = std::time::SystemTime::now();
    // `spent` had used its two retries (pg-boss's default retryLimit) before this attempt.
    db.exec(&format!(
        "UPDATE {SCHEMA}.job SET started_on = now() - interval '47 minutes', \
         created_on = now() - interval '50 minutes' WHERE id IN ('{dead}', '{again}', '{spent}')"
    ))
    .await;
    db.exec(&format!(
        "UPDATE {SCHEMA}.job SET retry_count = 2 WHERE id = '{spent}'"
    ))
    .await;
    db.exec(&format!(
        "UPDATE {SCHEMA}.job SET created_on = now() - interval '2 hours' WHERE id = '{idle}'"
    ))
    .await;

    // The ready config, pointed at this schema, with a per-queue rule that re-queues jobs of
    // `jw-again` and `jw-spent` (as its comment shows), and a state directory of its own.
    let first_rule = "[[rules]]\n# An active job past this";
    let table = format!("table = \"{SCHEMA}.job\"");
    let requeue_rule = format!(
        "[[rules]]\nname = \"again\"\nstatuses = [\"active\"]\nphases = [\"jw-again\", \"jw-spent\"]\n\
         signal = \"created\"\nafter = \"30m\"\naction = \"requeue\"\n\n{first_rule}"
    );
    let config = db.ready_config(
        "examples/pg-boss.toml",
        &[
            ("table = \"pgboss.job\"", &table),
            (first_rule, &requeue_rule),
        ],
    );

    // validate --connect passes, and the one index it advises (as the config's header says)
    // is enough for the scan.
    let validate = || common::worker::validates(&db.url, &config);
    let advice = validate();
    let index = advice
        .lines()
        .find(|l| l.contains("no index on") && l.contains("(state, started_on)"))
        .and_then(|l| l.split_once("Create one: "))
        .map(|(_, sql)| sql.to_string())
        .unwrap_or_else(|| panic!("no index advice for (state, started_on): {advice}"));
    db.exec(&index).await;
    let advice = validate();
    assert!(!advice.contains("no index"), "{advice}");

    // Several scans: the dead jobs are found with their age, the idle one alerted on, and the
    // live one, 47 minutes younger, never.
    let mut last = serde_json::Value::Null;
    for scan in 0..3 {
        if scan > 0 {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
        assert_eq!(code, 1, "{report}");
        let found = found(&report);
        let ids: Vec<_> = found
            .iter()
            .map(|(id, rule, _)| (id.as_str(), rule.as_str()))
            .collect();
        let mut want = vec![
            (dead.as_str(), "active-too-long"),
            (again.as_str(), "again"),
            (spent.as_str(), "again"),
            (idle.as_str(), "created-too-long"),
        ];
        want.sort();
        assert_eq!(ids, want, "scan {scan}: {report}");
        // Their ages, on the database's clock: what the row says, plus the time since.
        let since = moved.elapsed().unwrap_or_default().as_secs() as i64;
        for (id, _, age) in &found {
            let expected = if *id == idle { 7200 } else { 47 * 60 };
            assert!(
                (expected..=expected + since + 1).contains(age),
                "scan {scan}: {id} is {age}s old, not {expected}s (+{since}s): {report}"
            );
        }
        assert_eq!(finding(&report, &dead)["kind"], "overdue");
        assert_eq!(finding(&report, &idle)["action"], "alert");
        assert!(alive.alive(), "the live worker is still working");
        last = report;
    }
    assert_eq!(last["jobs"]["running"], 4, "{last}");

    // recover: the dead job failed, `again` re-queued, `spent` failed instead (its retries
    // are used up); the idle one stays an alert (exit 1).
    let (code, report) = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(code, 1, "{report}");
    let mut applied = common::applied(&report);
    applied.sort();
    let mut want = vec![dead.clone(), again.clone(), spent.clone()];
    want.sort();
    assert_eq!(applied, want, "{report}");
    let message = finding(&report, &dead)["message"]
        .as_str()
        .expect("message")
        .to_string();

    // pg-boss reads the failure back in its own shape.
    let job = boss.get("jw-dead", &dead);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        job["output"],
        serde_json::json!({
            "name": "Error",
            "message": format!("jobwarden: active-too-long: {message}"),
        }),
        "{job}"
    );
    assert!(job["completedOn"].is_string(), "{job}");
    let job = boss.get("jw-spent", &spent);
    let output = job["output"]["message"].as_str().unwrap_or_default();
    assert!(
        job["state"] == "failed"
            && job["output"]["name"] == "Error"
            && output.starts_with("jobwarden: again: ")
            && output.contains("gave up after 2 attempts"),
        "{job}"
    );
    // The re-queued job is a pg-boss retry: counted once, not yet started again.
    let job = boss.get("jw-again", &again);
    assert_eq!(
        (&job["state"], &job["retryCount"], &job["startedOn"]),
        (
            &serde_json::json!("retry"),
            &serde_json::json!(1),
            &serde_json::Value::Null
        ),
        "{job}"
    );
    // The live job and the idle one are untouched.
    let job = boss.get("jw-live", &live);
    assert_eq!(
        (&job["state"], &job["output"]),
        (&serde_json::json!("active"), &serde_json::Value::Null),
        "{job}"
    );
    assert_eq!(boss.get("jw-idle", &idle)["state"], "created");
    assert!(alive.alive(), "the live worker is still working");

    // A fresh worker runs the re-queued job to its end, and a new job, without error.
    let fresh = boss.worker("jw-dead,jw-again", "finish", db.dir());
    fresh.expect(&[format!("done {again}")]);
    let new = boss.send("jw-dead", "{}");
    fresh.expect(&[format!("done {new}")]);
    for (queue, id, retries) in [("jw-again", &again, 1), ("jw-dead", &new, 0)] {
        let job = boss.get(queue, id);
        assert_eq!(
            (&job["state"], &job["retryCount"], &job["output"]),
            (
                &serde_json::json!("completed"),
                &serde_json::json!(retries),
                &serde_json::json!({"ok": true})
            ),
            "{job}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&fresh.stderr).unwrap_or_default(),
        "",
        "the fresh worker reported no error"
    );
    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        found(&report)
            .into_iter()
            .map(|(id, rule, _)| (id, rule))
            .collect::<Vec<_>>(),
        [(idle.clone(), "created-too-long".to_string())],
        "{report}"
    );
}
