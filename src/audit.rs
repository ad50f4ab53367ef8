//! The audit trail: one JSON line per write (and per dry-run write) in `audit.jsonl` in the
//! state directory, appended and flushed before the scan goes on. `jobwarden audit` prints
//! the latest entries.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::actions::Applied;
use crate::detect::Finding;

/// The file, in the state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// One write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339, the database's clock.
    pub time: String,
    pub environment: Option<String>,
    pub job_id: String,
    pub status_before: String,
    pub status_after: String,
    pub action: String,
    pub kind: String,
    pub rule: String,
    pub age_seconds: u64,
    pub threshold_seconds: u64,
    pub outcome: String,
    /// `host:pid` of the jobwarden that wrote.
    pub replica: String,
    /// `recover --force` lifted the limits for this run.
    pub forced: bool,
}

/// The audit file under a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(AUDIT_FILE)
}

/// This process, as the audit names it.
pub fn replica() -> String {
    format!("{}:{}", crate::process::hostname(), std::process::id())
}

/// Builds the entries for a scan's writes.
pub fn entries(
    applied: &[Applied],
    findings: &[Finding],
    environment: Option<&str>,
    now: f64,
    forced: bool,
) -> Vec<Entry> {
    let replica = replica();
    applied
        .iter()
        .map(|a| {
            let f = findings
                .iter()
                .find(|f| f.job_id == a.write.job_id && f.action == a.write.action);
            Entry {
                time: crate::job::rfc3339(now),
                environment: environment.map(str::to_string),
                job_id: a.write.job_id.clone(),
                status_before: a.write.status_before.clone(),
                status_after: a.write.status_after.clone(),
                action: a.write.action.as_str().to_string(),
                kind: f.map(|f| f.kind.as_str().to_string()).unwrap_or_default(),
                rule: f.map(|f| f.rule.clone()).unwrap_or_default(),
                age_seconds: f.map_or(0, |f| f.age_seconds),
                threshold_seconds: f.map_or(0, |f| f.threshold_seconds),
                outcome: a.outcome.as_str().to_string(),
                replica: replica.clone(),
                forced,
            }
        })
        .collect()
}

/// Appends entries, one JSON line each, and flushes them to disk.
pub fn append(state_dir: &Path, entries: &[Entry]) -> std::io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(state_dir)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path(state_dir))?;
    let mut buf = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    file.write_all(&buf)?;
    file.sync_data()
}

/// Appends, logging (never failing the scan) when the file cannot be written.
pub fn record(state_dir: &Path, entries: &[Entry]) {
    if let Err(e) = append(state_dir, entries) {
        tracing::error!(path = %path(state_dir).display(), "cannot write the audit trail: {e}");
    }
}

/// The last `n` entries; lines that do not parse are skipped.
pub fn last(state_dir: &Path, n: usize) -> std::io::Result<Vec<Entry>> {
    let file = match std::fs::File::open(path(state_dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut all: Vec<Entry> = std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let skip = all.len().saturating_sub(n);
    Ok(all.split_off(skip))
}
