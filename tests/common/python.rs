//! Python ORMs (Django, SQLAlchemy) and Celery from the cache venv `scripts/test` fills from PyPI, and
//! their worker processes, for the `library_*` tests.

use std::path::{Path, PathBuf};

#[allow(unused_imports)]
pub use super::worker::{found, Worker};
use std::process::{Command, Stdio};

/// The versions `scripts/test` installs and the ready configs name in their headers.
pub const DJANGO_VERSION: &str = "5.2.19";
pub const SQLALCHEMY_VERSION: &str = "2.1.9";
pub const CELERY_VERSION: &str = "5.7.0";

/// The venv's python, with `module` importable at `version`; a missing venv or another
/// version fails the test with the way to get it.
pub fn python(module: &str, version: &str) -> PathBuf {
    let python = super::worker::cache_dir("JOBWARDEN_TEST_PYTHON", "python/bin/python");
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
        Worker::spawn(self.command(args), stderr)
    }
}
