//! Python ORMs (Django, SQLAlchemy) from the cache venv `scripts/test` fills from PyPI, and
//! their worker processes, for the `library_*` tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

/// The versions `scripts/test` installs and the ready configs name in their headers.
pub const DJANGO_VERSION: &str = "5.2.19";
pub const SQLALCHEMY_VERSION: &str = "2.1.9";

/// The venv's python, with `module` importable at `version`; a missing venv or another
/// version fails the test with the way to get it.
pub fn python(module: &str, version: &str) -> PathBuf {
    let python = std::env::var_os("JOBWARDEN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache.join("jobwarden-test/python/bin/python")
        });
    let found = Command::new(&python)
        .args([
            "-c",
            &format!("import {module}; print({module}.__version__)"),
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(
        found.as_deref(),
        Some(version),
        "{module} {version} is not installed in the venv of {}; run the tests through \
         scripts/test, which installs it from PyPI",
        python.display()
    );
    python
}

/// Runs one Python script of the test's own with a fixed environment.
pub struct Script {
    pub python: PathBuf,
    pub script: PathBuf,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

/// A worker process; SIGKILLed when dropped.
pub struct Worker {
    child: Child,
    lines: Receiver<String>,
    pub stderr: PathBuf,
}

impl Script {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.python);
        command
            .arg(&self.script)
            .args(args)
            .current_dir(&self.cwd)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null());
        command
    }

    /// Runs one command to its end; its stdout, trimmed.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run python");
        assert!(
            out.status.success(),
            "python {} {args:?}: {}\n{}",
            self.script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs a command that prints one JSON value.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// A long-running process whose stdout lines [`Worker::expect`] waits for.
    pub fn worker(&self, args: &[&str], dir: &Path) -> Worker {
        let stderr = dir.join(format!("worker-{}.err", args.join("-")));
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("worker stderr"))
            .spawn()
            .expect("start a worker");
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
}

impl Worker {
    /// Waits for the worker to print each of `lines`, in any order.
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

    /// SIGKILL, as the OOM killer or a lost machine ends it: no handler runs.
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

/// `(job_id, rule, age_seconds)` of every finding, sorted.
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
