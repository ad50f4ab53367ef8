//! A queue library's worker process started by a test: its stdout lines are waited for
//! ("started 42"), its stderr kept in a file for the failure message, and it is SIGKILLed,
//! as the OOM killer or a lost machine ends it, when the test kills or drops it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

/// A worker process; SIGKILLed when dropped.
pub struct Worker {
    child: Child,
    lines: Receiver<String>,
    pub stderr: PathBuf,
}

impl Worker {
    /// Starts `command` with its stdout read line by line and its stderr written to `stderr`.
    pub fn spawn(mut command: Command, stderr: PathBuf) -> Worker {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("worker stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("start a worker ({command:?}): {e}"));
        let stdout = child.stdout.take().expect("worker stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            child,
            lines,
            stderr,
        }
    }

    /// Waits (30 s at most) for the worker to print each of `lines`, in any order.
    pub fn expect(&self, lines: &[String]) {
        let mut missing: Vec<&String> = lines.iter().collect();
        let limit = std::time::SystemTime::now() + Duration::from_secs(30);
        while !missing.is_empty() {
            let left = limit
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            match self.lines.recv_timeout(left) {
                Ok(l) => missing.retain(|m| **m != l),
                Err(_) => panic!(
                    "the worker never printed {missing:?}: {}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                ),
            }
        }
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// SIGKILL: no handler runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `(job_id, rule, age_seconds)` of every finding of a `check --json` report, sorted.
pub fn found(report: &serde_json::Value) -> Vec<(String, String, i64)> {
    let mut out: Vec<_> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["job_id"].as_str().unwrap_or_default().to_string(),
                f["rule"].as_str().unwrap_or_default().to_string(),
                f["age_seconds"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    out.sort();
    out
}

/// One `check --json` of `config`: it exits 1 and finds exactly `want`, each `(job id, rule,
/// age in seconds when the test aged the rows at `start`)`, every age between that and that
/// plus the time since `start` (two seconds either side). `scan` names the check in messages.
pub fn check_finds(
    url: &str,
    config: &std::path::Path,
    scan: usize,
    want: &[(&str, &str, i64)],
    start: std::time::SystemTime,
) {
    let (code, report) = super::jobwarden_json(url, config, &["check"]);
    assert_eq!(code, 1, "scan {scan}: {report}");
    let got = found(&report);
    let ids: Vec<(&str, &str)> = got
        .iter()
        .map(|(id, rule, _)| (id.as_str(), rule.as_str()))
        .collect();
    let mut expected: Vec<(&str, &str)> = want.iter().map(|(id, rule, _)| (*id, *rule)).collect();
    expected.sort();
    assert_eq!(ids, expected, "scan {scan}: {report}");
    let since = start.elapsed().unwrap_or_default().as_secs() as i64;
    for (id, _, age) in &got {
        let expected = want
            .iter()
            .find(|(w, _, _)| w == id)
            .map_or(-1, |(_, _, a)| *a);
        assert!(
            (expected - 2..=expected + since + 2).contains(age),
            "scan {scan}: {id} is {age}s old, not {expected}s (+ at most {since}s): {report}"
        );
    }
}

/// [`scans_find`] as the ORM tests (Django, SQLAlchemy, Sequelize) want it: `dead` stalled
/// for 47 minutes, `idle` pending for two hours.
pub async fn scans_find_dead_and_idle(
    url: &str,
    config: &std::path::Path,
    dead: &str,
    idle: &str,
    start: std::time::SystemTime,
    alive: &mut Worker,
) {
    let want = [(dead, "stalled", 47 * 60), (idle, "pending-too-long", 7200)];
    scans_find(url, config, &want, start, alive).await
}

/// Three `check`s of `config`, half a second apart, each as [`check_finds`] (exit 1, exactly
/// `want`, each with its age), while the `alive` worker goes on working.
pub async fn scans_find(
    url: &str,
    config: &std::path::Path,
    want: &[(&str, &str, i64)],
    start: std::time::SystemTime,
    alive: &mut Worker,
) {
    for scan in 0..3 {
        if scan > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        check_finds(url, config, scan, want, start);
        assert!(
            alive.alive(),
            "scan {scan}: the live worker is still working"
        );
    }
}

/// `validate --connect` of `config` exits 0; returns what it printed (stdout, then stderr).
pub fn validates(url: &str, config: &std::path::Path) -> String {
    let out = super::jobwarden(
        url,
        &[
            "validate",
            "--connect",
            "--config",
            config.to_str().expect("utf-8"),
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    text
}

/// The Node ORM scripts' `get` (Prisma's and Sequelize's `jobs.js`, appended to each): one
/// row as the application reads it back after jobwarden wrote it: status, error, progress,
/// `finishedAt`, whether that is a valid date, and how many seconds ago it is.
pub const JS_PRINT_JOB: &str = r#"
function printJob(job) {
  const finished = job.finishedAt
  console.log(JSON.stringify({
    status: job.status,
    error: job.error,
    progress: job.progress,
    finishedAt: finished,
    finishedIsDate: finished instanceof Date && !isNaN(finished),
    finishedAgo: finished instanceof Date ? (Date.now() - finished.getTime()) / 1000 : null,
  }))
}
"#;

/// A Node ORM's `jobs.js` (`js`, with [`JS_PRINT_JOB`] for its `get`) written into the
/// test's folder `dir` and run there by `node` with `env` (the database URL among it).
pub fn orm_script(
    dir: &std::path::Path,
    js: &str,
    env: Vec<(String, String)>,
) -> super::python::Script {
    let script = dir.join("jobs.js");
    std::fs::write(&script, format!("{js}{JS_PRINT_JOB}")).expect("write jobs.js");
    super::python::Script {
        python: super::tool("node"),
        script,
        cwd: dir.to_path_buf(),
        env,
    }
}

/// The `node_modules` that `scripts/test` fills from the npm registry
/// (`JOBWARDEN_TEST_NODE_MODULES`, else its cache), checked to hold `package` at `version`:
/// a missing or other version fails the test with the way to get it.
pub fn node_modules(package: &str, version: &str) -> PathBuf {
    let dir = cache_dir("JOBWARDEN_TEST_NODE_MODULES", "npm/node_modules");
    let installed = std::fs::read_to_string(dir.join(package).join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string));
    assert_eq!(
        installed.as_deref(),
        Some(version),
        "{package} {version} is not installed in {}; run the tests through scripts/test, \
         which installs it from the npm registry",
        dir.display()
    );
    dir
}

/// The Node.js ORM tests' story (Sequelize, Prisma), after `db`'s table is made. `model` is the
/// ORM's script, answering `create` (prints the new id), `work ID` (marks the job running,
/// prints "running ID", then saves its progress every 0.3 s), `shift ID MINUTES` (moves the
/// job's times back), `process` (runs every pending job, printing "done ID") and `get ID` (the
/// row as the ORM reads it, as JSON with `status`, `error`, `finishedIsDate` and
/// `finishedAgo`). One worker is SIGKILLed mid-job and one kept; the dead job is moved back 47
/// minutes, an idle one two hours. Several scans with the ready `config` find exactly those
/// two with their ages and never the live job; `recover` fails the dead one, the ORM reads
/// the failure back (`finishedAt` a date just now on its own clock), and a new job is run.
pub async fn orm_killed_mid_job(
    db: &super::TestDb,
    model: &super::python::Script,
    config: &std::path::Path,
) {
    let run = |args: &[&str]| model.run(args);

    // Every time the rows hold was written after this: the ages found are bounded by it.
    let start = std::time::SystemTime::now();
    let dead = run(&["create"]);
    let live = run(&["create"]);
    let idle = run(&["create"]);

    let worker = |id: &str| {
        let w = model.worker(&["work", id], db.dir());
        w.expect(&[format!("running {id}")]);
        w
    };
    let mut killed = worker(&dead);
    killed.kill();
    let mut alive = worker(&live);

    // The outage lasts: the dead job last beat 47 minutes ago, the idle one waits 2 hours.
    run(&["shift", &dead, "47"]);
    run(&["shift", &idle, "120"]);

    validates(&db.url, config);
    scans_find_dead_and_idle(&db.url, config, &dead, &idle, start, &mut alive).await;

    // recover fails the dead job; the idle one stays an alert (exit 1).
    let (code, report) = super::jobwarden_json(&db.url, config, &["recover"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(super::applied(&report), vec![dead.as_str()], "{report}");

    // The ORM reads the failure back: the status word, jobwarden's reason in `error`, and
    // `finishedAt` a date just now on the ORM's own clock (hours off if the config's zone is
    // not the one the ORM writes).
    let get = |id: &str| model.json(&["get", id]);
    let job = get(&dead);
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("jobwarden: stalled: "), "{job}");
    assert_eq!(job["finishedIsDate"], true, "{job}");
    let ago = job["finishedAgo"].as_f64().unwrap_or(f64::NAN);
    assert!(
        (-2.0..60.0).contains(&ago),
        "finishedAt is {ago}s ago: {job}"
    );
    // The live job and the idle one are untouched.
    let job = get(&live);
    assert_eq!(
        (&job["status"], &job["error"]),
        (&"running".into(), &serde_json::Value::Null),
        "{job}"
    );
    assert_eq!(get(&idle)["status"], "pending");
    assert!(alive.alive(), "the live worker is still working");

    // A new job created through the model is processed, with the idle one.
    let new = run(&["create"]);
    let done = run(&["process"]);
    assert_eq!(done, format!("done {idle}\ndone {new}"));
    let job = get(&new);
    assert_eq!(
        (&job["status"], &job["error"]),
        (&"done".into(), &serde_json::Value::Null),
        "{job}"
    );
    let (code, report) = super::jobwarden_json(&db.url, config, &["check"]);
    assert_eq!((code, found(&report)), (0, vec![]), "{report}");
}

/// What `scripts/test` installed for the tests: the path in `env` if set, else `path` in its
/// cache, `$XDG_CACHE_HOME/jobwarden-test` (`~/.cache/jobwarden-test`).
pub fn cache_dir(env: &str, path: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
            });
        cache.join("jobwarden-test").join(path)
    })
}
