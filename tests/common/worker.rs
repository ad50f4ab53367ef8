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
