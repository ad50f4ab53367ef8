//! The audit trail: one JSON line per write (and per dry-run write) in `audit.jsonl` in the
//! state directory, appended and flushed before the scan goes on. `jobwarden audit` prints
//! the latest entries.

use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::Finding;
use crate::store::Write;

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

/// Who writes, when, and whether forced: the same for every write of one scan.
#[derive(Debug, Clone)]
pub struct Context {
    pub environment: Option<String>,
    /// The database's clock.
    pub now: f64,
    pub forced: bool,
}

/// The audit line of one write about `finding` (its outcome filled in by the caller).
pub fn entry(write: &Write, finding: &Finding, ctx: &Context) -> Entry {
    Entry {
        time: crate::job::rfc3339(ctx.now),
        environment: ctx.environment.clone(),
        job_id: write.job_id.clone(),
        status_before: write.status_before.clone(),
        status_after: write.status_after.clone(),
        action: write.action.as_str().to_string(),
        kind: finding.kind.as_str().to_string(),
        rule: finding.rule.clone(),
        age_seconds: finding.age_seconds,
        threshold_seconds: finding.threshold_seconds,
        outcome: String::new(),
        replica: replica(),
        forced: ctx.forced,
    }
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
