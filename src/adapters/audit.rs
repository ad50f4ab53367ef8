//! The audit trail: JSON lines in `audit.jsonl` in the state directory. Every write is
//! recorded twice: its *intent* (job, row as read, action), appended and flushed to disk
//! before the `UPDATE` runs, and its *outcome* after (written, not waited on to reach the disk:
//! a lost outcome leaves its intent, resolved at the next start). A write whose intent cannot be recorded
//! is not made, so the trail and the table always agree: no write without its record. After a
//! crash, an intent without an outcome is resolved at the next start by reading the row
//! ([`pending`], then the caller records the outcome with `recovered`). A dry-run write is one
//! entry (its outcome, `dry_run`). `jobwarden audit` joins each intent with its outcome and
//! reads the file from its end, in constant memory.
//!
//! The trail rotates: an append that would take `audit.jsonl` past `[audit] max_size` first
//! renames it to `audit.jsonl.1` (and `.1` to `.2`, ... up to [`ROTATED`]; the oldest goes),
//! under an exclusive lock that every appending process takes, so two never rotate at once.
//! Every reader ([`last`], [`last_matching`], [`pending`]) reads the rotated files too,
//! newest first, so a write stays findable as long as its file is kept.

use std::io::{Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::core::detect::{Finding, Kind, Outcome};
use crate::core::plan::Write;
use crate::core::vocabulary::Action;

/// The file, in the state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";
/// Rotated files kept besides the current one: `audit.jsonl.1` (the newest) to `.4`.
pub const ROTATED: usize = 4;
/// How many of the last lines [`pending`] reads: far more than the writes one process can
/// have in flight (they are made one at a time).
pub const PENDING_LINES: usize = 10_000;

/// Which record of a write a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Recorded before the write: it may have happened.
    Intent,
    /// What became of it (lines of older versions, which had no intents, are outcomes).
    #[default]
    Outcome,
}

/// What became of a write, as the audit trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    /// An intent: the write is about to be made.
    Intent,
    Applied,
    /// The row changed since it was read; left alone.
    Raced,
    Error,
    DryRun,
    /// The write was not made: an intent resolved after a crash (the row shows it), or a
    /// write that gave up waiting for another writer's lock.
    NotWritten,
    /// An intent with no outcome (yet), as `jobwarden audit` shows it.
    Interrupted,
    /// A word this version does not know (a line of a later version).
    #[serde(other)]
    Other,
}

impl Recorded {
    pub fn as_str(self) -> &'static str {
        match self {
            Recorded::Intent => "intent",
            Recorded::Applied => "applied",
            Recorded::Raced => "raced",
            Recorded::Error => "error",
            Recorded::DryRun => "dry_run",
            Recorded::NotWritten => "not_written",
            Recorded::Interrupted => "interrupted",
            Recorded::Other => "other",
        }
    }

    /// The record of a finding's outcome (`None` for outcomes that are not writes).
    pub fn of(outcome: Outcome) -> Option<Recorded> {
        match outcome {
            Outcome::Applied => Some(Recorded::Applied),
            Outcome::Raced => Some(Recorded::Raced),
            Outcome::Error => Some(Recorded::Error),
            Outcome::DryRun => Some(Recorded::DryRun),
            _ => None,
        }
    }
}

/// One record of a write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Ties an intent to its outcome: `host:pid:n`. Empty in lines of older versions.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub stage: Stage,
    /// RFC 3339, the database's clock.
    pub time: String,
    pub environment: Option<String>,
    pub job_id: String,
    pub status_before: String,
    pub status_after: String,
    pub action: Action,
    pub kind: Kind,
    pub rule: String,
    pub age_seconds: u64,
    pub threshold_seconds: u64,
    /// `intent` on an intent; else `applied`, `raced`, `error`, `dry_run`, or, for an intent
    /// resolved after a crash, `applied` or `not_written`.
    pub outcome: Recorded,
    /// `host:pid` of the jobwarden that wrote.
    pub replica: String,
    /// `recover --force` lifted the limits for this run.
    pub forced: bool,
    /// The outcome was found at a later start, by reading the row.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
    /// A person asked for this write (a console or API action): `http` and their address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// The bulk action by a person this write was one of (every row of it shares the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Why, in the person's words, for a person's write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every column the write sets, with this job's values, as a dry run shows them: only
    /// for an action with `[writes]` columns, whose values differ per job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
}

/// The audit file under a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(AUDIT_FILE)
}

/// This process, as the audit names it.
pub fn replica() -> String {
    format!(
        "{}:{}",
        crate::adapters::process::hostname(),
        std::process::id()
    )
}

/// Who writes, when, and whether forced: the same for every write of one scan.
#[derive(Debug, Clone)]
pub struct Context {
    pub environment: Option<String>,
    /// The database's clock.
    pub now: f64,
    pub forced: bool,
    /// Who asked, for a manual action (`http 127.0.0.1:50312`).
    pub requested_by: Option<String>,
    /// The bulk action this write is one of.
    pub batch: Option<String>,
    /// The person's words, for a manual action.
    pub reason: Option<String>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The audit record of one write about `finding` (its stage and outcome filled in by the
/// caller), with a fresh id.
pub fn entry(write: &Write, finding: &Finding, ctx: &Context) -> Entry {
    let replica = replica();
    Entry {
        id: format!("{replica}:{}", NEXT_ID.fetch_add(1, Ordering::Relaxed)),
        stage: Stage::Outcome,
        time: crate::core::job::rfc3339(ctx.now),
        environment: ctx.environment.clone(),
        job_id: write.job_id.clone(),
        status_before: write.status_before.clone(),
        status_after: write.status_after.clone(),
        action: write.action,
        kind: finding.kind,
        rule: finding.rule.clone(),
        age_seconds: finding.age_seconds,
        threshold_seconds: finding.threshold_seconds,
        outcome: Recorded::Intent,
        replica,
        forced: ctx.forced,
        recovered: false,
        requested_by: ctx.requested_by.clone(),
        reason: ctx.reason.clone(),
        batch: ctx.batch.clone(),
        statement: None,
    }
}

/// Appends entries, one JSON line each, and flushes them to disk. A file whose last line was
/// cut short (a crash mid-append) first gets the newline it lacks, so the cut line cannot
/// swallow the next one.
/// The file is rotated first when the entries would take it past `max_size` (bytes).
pub fn append(state_dir: &Path, max_size: u64, entries: &[Entry]) -> std::io::Result<()> {
    append_with(state_dir, max_size, entries, true)
}

/// Appends an outcome: handed to the operating system, not waited on to reach the disk. Its
/// intent already is there, so a crash that loses the outcome leaves an intent that the next
/// start resolves from the row; a write costs one disk flush, not two.
pub fn append_outcome(state_dir: &Path, max_size: u64, entry: &Entry) -> std::io::Result<()> {
    append_with(state_dir, max_size, std::slice::from_ref(entry), false)
}

/// A person's pause or snooze, kept in the audit trail beside the writes (a line with a
/// `hold` key, which the readers of writes skip), for `/audit` and the job pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    pub hold: HoldKind,
    /// RFC 3339, the host's clock.
    pub time: String,
    /// The snoozed job; none for a pause (every write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// When it ends (RFC 3339); none when it was ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default)]
    pub reason: String,
    /// Who asked: `http` and their address, or the person.
    #[serde(default)]
    pub by: String,
}

/// What a [`Hold`] record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    Pause,
    Resume,
    Snooze,
    Unsnooze,
}

impl HoldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::Pause => "pause",
            HoldKind::Resume => "resume",
            HoldKind::Snooze => "snooze",
            HoldKind::Unsnooze => "unsnooze",
        }
    }
}

/// Appends pauses and snoozes (handed to the system, not waited on: `holds.json` is what
/// keeps them in force; these lines are their history).
pub fn append_holds(state_dir: &Path, max_size: u64, holds: &[Hold]) -> std::io::Result<()> {
    append_with(state_dir, max_size, holds, false)
}

/// The last `n` pauses and snoozes, oldest first: every pause, and the snoozes of `job` (all
/// jobs' when `None`).
pub fn last_holds(state_dir: &Path, n: usize, job: Option<&str>) -> std::io::Result<Vec<Hold>> {
    let mut out = Vec::new();
    lines_from_end(state_dir, |line| {
        if !line.contains("\"hold\"") {
            return true;
        }
        let Ok(h) = serde_json::from_str::<Hold>(line) else {
            return true;
        };
        let wanted = match (&h.job_id, job) {
            (None, _) | (_, None) => true,
            (Some(id), Some(job)) => id == job,
        };
        if wanted {
            out.push(h);
        }
        out.len() < n
    })?;
    out.reverse();
    Ok(out)
}

fn append_with<T: Serialize>(
    state_dir: &Path,
    max_size: u64,
    entries: &[T],
    durable: bool,
) -> std::io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut lines = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut lines, e).map_err(std::io::Error::other)?;
        lines.push(b'\n');
    }
    std::fs::create_dir_all(state_dir)?;
    let mut file = open_for_append(state_dir, max_size, lines.len() as u64 + 1)?;
    let mut buf = Vec::new();
    let len = file.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            buf.push(b'\n');
        }
    }
    buf.extend_from_slice(&lines);
    file.write_all(&buf)?;
    if durable {
        file.sync_data()?;
    }
    Ok(())
}

/// Opens the current file to append `incoming` bytes, locked (until the file is closed)
/// against other appending processes, after rotating it when they would take it past
/// `max_size`. A file that is empty takes them whatever their size.
fn open_for_append(
    state_dir: &Path,
    max_size: u64,
    incoming: u64,
) -> std::io::Result<std::fs::File> {
    let current = path(state_dir);
    // Each turn either returns or sees the file rotated (by this process or another).
    for _ in 0..8 {
        let file = crate::adapters::state::open_state(
            &current,
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .read(true),
        )?;
        lock(&file)?;
        // Another process may have rotated it away while this one waited for the lock.
        if !is_at(&file, &current)? {
            continue;
        }
        let len = file.metadata()?.len();
        if len > 0 && len.saturating_add(incoming) > max_size {
            rotate(state_dir)?;
            continue;
        }
        return Ok(file);
    }
    Err(std::io::Error::other(
        "the audit trail kept being rotated by another process",
    ))
}

/// Waits for an exclusive lock on the file (released when it is closed).
fn lock(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    loop {
        // SAFETY: flock on a descriptor this function borrows, open for its whole call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether `file` is still the file at `path` (not renamed away since it was opened).
fn is_at(file: &std::fs::File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let open = file.metadata()?;
    Ok(match std::fs::symlink_metadata(path) {
        Ok(there) => there.dev() == open.dev() && there.ino() == open.ino(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    })
}

/// A rotated file: `audit.jsonl.<n>`, 1 the newest.
fn rotated(state_dir: &Path, n: usize) -> PathBuf {
    state_dir.join(format!("{AUDIT_FILE}.{n}"))
}

/// Shifts the rotated files up by one (the oldest is renamed over, so it goes), then the
/// current file to `.1`. Renames only: a crash part-way leaves every kept line in a file the
/// readers read.
fn rotate(state_dir: &Path) -> std::io::Result<()> {
    for n in (1..ROTATED).rev() {
        match std::fs::rename(rotated(state_dir, n), rotated(state_dir, n + 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path(state_dir), rotated(state_dir, 1))?;
    tracing::info!(
        path = %path(state_dir).display(),
        "the audit trail was rotated to {}",
        rotated(state_dir, 1).display()
    );
    Ok(())
}

/// Whether the audit file can be opened for appending (the directory made if need be).
pub fn writable(state_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    crate::adapters::state::open_state(
        &path(state_dir),
        std::fs::OpenOptions::new().create(true).append(true),
    )
    .map(|_| ())
}

/// Reads lines from the end of the trail, newest first (the current file, then `.1`, `.2`,
/// ...), until `keep` says stop (constant memory: 64 KiB at a time). A file that is not
/// there is skipped.
fn lines_from_end(state_dir: &Path, mut keep: impl FnMut(&str) -> bool) -> std::io::Result<()> {
    for file in std::iter::once(path(state_dir)).chain((1..=ROTATED).map(|n| rotated(state_dir, n)))
    {
        if !lines_from_end_of(&file, &mut keep)? {
            break;
        }
    }
    Ok(())
}

/// [`lines_from_end`] of one file; whether `keep` wants more.
fn lines_from_end_of(at: &Path, keep: &mut impl FnMut(&str) -> bool) -> std::io::Result<bool> {
    let mut file =
        match crate::adapters::state::open_state(at, std::fs::OpenOptions::new().read(true)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", at.display()),
                ))
            }
        };
    const CHUNK: u64 = 64 * 1024;
    let mut end = file.metadata()?.len();
    let mut carry: Vec<u8> = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&carry);
        // Everything after the first newline in the chunk is whole lines; the head may be
        // the tail of a line that began in an earlier chunk.
        let (head, whole) = match (start > 0, chunk.iter().position(|&b| b == b'\n')) {
            (true, Some(i)) => chunk.split_at(i + 1),
            (true, None) => {
                carry = chunk;
                end = start;
                continue;
            }
            (false, _) => (&[][..], &chunk[..]),
        };
        for line in whole.rsplit(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            if !line.trim().is_empty() && !keep(&line) {
                return Ok(false);
            }
        }
        carry = head.strip_suffix(b"\n").unwrap_or(head).to_vec();
        end = start;
    }
    Ok(true)
}

/// Which entries a reader wants: one job's, of one outcome (as [`last`] shows it: an intent
/// without its outcome is `interrupted`); every one by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub job: Option<String>,
    pub outcome: Option<String>,
    /// Leave out a person's previews (their dry runs: not writes), unless `outcome` asks
    /// for dry runs. The dry runs of a daemon in dry-run mode stay: what it would have done.
    pub hide_previews: bool,
}

/// The last `n` writes, oldest first: each intent joined with its outcome (an intent without
/// one shows outcome `interrupted`). Lines that do not parse are skipped.
pub fn last(state_dir: &Path, n: usize) -> std::io::Result<Vec<Entry>> {
    last_matching(state_dir, n, &Filter::default())
}

/// The last `n` writes that `filter` wants, as [`last`] shows them, read back through the
/// whole trail (the rotated files too) until `n` are found: a job's writes are found however
/// long ago they were made, while their file is kept.
pub fn last_matching(state_dir: &Path, n: usize, filter: &Filter) -> std::io::Result<Vec<Entry>> {
    Ok(tail(state_dir, n, filter, false)?
        .into_iter()
        .filter_map(|line| match line {
            Line::Write(e) => Some(e),
            Line::Hold(_) => None,
        })
        .collect())
}

/// A line of the trail as its readers show it: a write, or a person's pause or snooze.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Write(Entry),
    Hold(Hold),
}

/// The last `n` lines of the trail, writes (as [`last`] shows them) and pauses and snoozes
/// together, in the order they were kept, oldest first.
pub fn last_lines(state_dir: &Path, n: usize) -> std::io::Result<Vec<Line>> {
    tail(state_dir, n, &Filter::default(), true)
}

/// The last `n` lines `filter` wants, holds among them when `holds`, oldest first.
fn tail(state_dir: &Path, n: usize, filter: &Filter, holds: bool) -> std::io::Result<Vec<Line>> {
    // A line that does not hold the job's id as JSON spells it is not that job's: not parsed.
    let needle = filter
        .job
        .as_ref()
        .and_then(|job| serde_json::to_string(job).ok());
    let mut out: Vec<Line> = Vec::new();
    let mut outcomes: std::collections::HashSet<String> = Default::default();
    lines_from_end(state_dir, |line| {
        if needle
            .as_ref()
            .is_some_and(|id| !line.contains(id.as_str()))
        {
            return true;
        }
        if holds && line.contains("\"hold\"") {
            if let Ok(h) = serde_json::from_str::<Hold>(line) {
                out.push(Line::Hold(h));
                return out.len() < n;
            }
        }
        let Ok(e) = serde_json::from_str::<Entry>(line) else {
            return true;
        };
        if filter.job.as_ref().is_some_and(|job| &e.job_id != job) {
            return true;
        }
        let shown = match e.stage {
            Stage::Outcome => {
                if !e.id.is_empty() {
                    outcomes.insert(e.id.clone());
                }
                Some(e)
            }
            Stage::Intent if !outcomes.contains(&e.id) => Some(Entry {
                outcome: Recorded::Interrupted,
                ..e
            }),
            Stage::Intent => None,
        };
        if let Some(e) = shown.filter(|e| match &filter.outcome {
            Some(o) => e.outcome.as_str() == o,
            None => {
                !(filter.hide_previews && e.outcome == Recorded::DryRun && e.requested_by.is_some())
            }
        }) {
            out.push(Line::Write(e));
        }
        out.len() < n
    })?;
    out.reverse();
    Ok(out)
}

/// Intents without an outcome among the last [`PENDING_LINES`] lines: writes that may or may
/// not have happened when the process that made them died.
pub fn pending(state_dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut outcomes: std::collections::HashSet<String> = Default::default();
    let mut read = 0;
    lines_from_end(state_dir, |line| {
        read += 1;
        if let Ok(e) = serde_json::from_str::<Entry>(line) {
            match e.stage {
                Stage::Outcome => {
                    outcomes.insert(e.id);
                }
                Stage::Intent if !e.id.is_empty() && !outcomes.contains(&e.id) => out.push(e),
                Stage::Intent => {}
            }
        }
        read < PENDING_LINES
    })?;
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_ROTATION: u64 = u64::MAX;

    fn e(id: &str, stage: Stage, outcome: Recorded) -> Entry {
        Entry {
            id: id.into(),
            stage,
            time: "2026-01-01T00:00:00Z".into(),
            environment: None,
            job_id: id.into(),
            status_before: "running".into(),
            status_after: "failed".into(),
            action: Action::Fail,
            kind: Kind::Stalled,
            rule: "hb".into(),
            age_seconds: 100,
            threshold_seconds: 60,
            outcome,
            replica: "h:1".into(),
            forced: false,
            recovered: false,
            requested_by: None,
            batch: None,
            reason: None,
            statement: None,
        }
    }

    #[test]
    fn intents_join_their_outcomes_and_a_cut_line_swallows_nothing() {
        let dir = tempfile::tempdir().unwrap();
        append(
            dir.path(),
            NO_ROTATION,
            &[
                e("a", Stage::Intent, Recorded::Intent),
                e("a", Stage::Outcome, Recorded::Applied),
            ],
        )
        .unwrap();
        append(
            dir.path(),
            NO_ROTATION,
            &[e("b", Stage::Intent, Recorded::Intent)],
        )
        .unwrap();
        // A crash mid-append leaves half a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path(dir.path()))
            .unwrap();
        f.write_all(b"{\"id\":\"c\",\"sta").unwrap();
        append(
            dir.path(),
            NO_ROTATION,
            &[e("d", Stage::Outcome, Recorded::DryRun)],
        )
        .unwrap();
        let got: Vec<(String, Recorded)> = last(dir.path(), 10)
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.outcome))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), Recorded::Applied),
                ("b".into(), Recorded::Interrupted),
                ("d".into(), Recorded::DryRun)
            ]
        );
        let pending: Vec<String> = pending(dir.path())
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(pending, ["b"]);
        assert_eq!(last(dir.path(), 1).unwrap()[0].id, "d");
        // The console's trail leaves a person's preview out, unless it asks for dry runs;
        // the daemon's own dry run stays.
        let mut preview = e("p", Stage::Outcome, Recorded::DryRun);
        preview.requested_by = Some("http 127.0.0.1:1".into());
        append(dir.path(), NO_ROTATION, &[preview]).unwrap();
        let shown = |filter: Filter| -> Vec<String> {
            last_matching(dir.path(), 10, &filter)
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect()
        };
        let writes = Filter {
            hide_previews: true,
            ..Filter::default()
        };
        assert_eq!(shown(writes), ["a", "b", "d"]);
        let asked = Filter {
            outcome: Some("dry_run".into()),
            hide_previews: true,
            ..Filter::default()
        };
        assert_eq!(shown(asked), ["d", "p"]);
    }

    #[test]
    fn pauses_and_snoozes_are_kept_beside_the_writes_and_read_apart() {
        let dir = tempfile::tempdir().unwrap();
        let hold = |kind: HoldKind, job: Option<&str>, reason: &str| Hold {
            hold: kind,
            time: "2026-01-01T00:00:00Z".into(),
            job_id: job.map(str::to_string),
            until: Some("2026-01-01T01:00:00Z".into()),
            reason: reason.into(),
            by: "alice (http 127.0.0.1:1)".into(),
        };
        append(
            dir.path(),
            NO_ROTATION,
            &[e("a", Stage::Outcome, Recorded::Applied)],
        )
        .unwrap();
        append_holds(
            dir.path(),
            NO_ROTATION,
            &[
                hold(HoldKind::Pause, None, "deploy"),
                hold(HoldKind::Snooze, Some("7"), "looking"),
                hold(HoldKind::Snooze, Some("8"), "other"),
            ],
        )
        .unwrap();
        // The readers of writes skip them.
        let writes: Vec<String> = last(dir.path(), 10)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(writes, ["a"]);
        // One job's: its snoozes and every pause, oldest first.
        let reasons = |job: Option<&str>| -> Vec<String> {
            last_holds(dir.path(), 10, job)
                .unwrap()
                .into_iter()
                .map(|h| h.reason)
                .collect()
        };
        assert_eq!(reasons(Some("7")), ["deploy", "looking"]);
        assert_eq!(reasons(None), ["deploy", "looking", "other"]);
    }

    #[test]
    fn the_tail_is_read_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<Entry> = (0..3000)
            .map(|i| e(&format!("{i}"), Stage::Outcome, Recorded::Applied))
            .collect();
        append(dir.path(), NO_ROTATION, &entries).unwrap();
        let tail = last(dir.path(), 2500).unwrap();
        assert_eq!(tail.len(), 2500);
        assert_eq!(tail[0].id, "500");
        assert_eq!(tail[2499].id, "2999");
    }

    #[test]
    fn the_trail_rotates_and_every_kept_entry_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let max = 2048;
        for i in 0..100 {
            let id = format!("{i}");
            append(dir.path(), max, &[e(&id, Stage::Intent, Recorded::Intent)]).unwrap();
            append_outcome(dir.path(), max, &e(&id, Stage::Outcome, Recorded::Applied)).unwrap();
        }
        let mut sizes = vec![std::fs::metadata(path(dir.path())).unwrap().len()];
        for n in 1..=ROTATED {
            sizes.push(std::fs::metadata(rotated(dir.path(), n)).unwrap().len());
        }
        assert!(sizes.iter().all(|&s| s > 0 && s <= max), "{sizes:?}");
        assert!(!rotated(dir.path(), ROTATED + 1).exists(), "a few kept");
        // Every kept write is read, oldest first, across the files: the newest ones, unbroken.
        let all = last(dir.path(), 10_000).unwrap();
        let ids: Vec<usize> = all.iter().map(|e| e.id.parse().unwrap()).collect();
        let first = ids[0];
        assert!(first > 0 && ids.len() > 10, "{ids:?}");
        assert_eq!(ids, (first..100).collect::<Vec<_>>(), "one entry per write");
        assert!(
            all.iter().all(|e| e.outcome == Recorded::Applied),
            "each joined"
        );
        // One job's writes are found in an older file, and an outcome filter reads on.
        let old = (first + 1).to_string();
        let found = last_matching(
            dir.path(),
            10,
            &Filter {
                job: Some(old.clone()),
                ..Filter::default()
            },
        )
        .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].job_id, old);
        let applied = last_matching(
            dir.path(),
            10_000,
            &Filter {
                outcome: Some("applied".into()),
                ..Filter::default()
            },
        )
        .unwrap();
        assert_eq!(applied.len(), ids.len());
        // An intent in a rotated file whose outcome never came is still pending.
        let big = e(&"x".repeat(1500), Stage::Intent, Recorded::Intent);
        append(dir.path(), max, &[big]).unwrap();
        append(
            dir.path(),
            max,
            &[e("y", Stage::Outcome, Recorded::Applied)],
        )
        .unwrap();
        let pending: Vec<String> = pending(dir.path())
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(pending, ["x".repeat(1500)]);
        assert!(std::fs::read_to_string(rotated(dir.path(), 1))
            .unwrap()
            .contains(&"x".repeat(1500)));
    }

    #[test]
    fn lines_of_older_versions_are_outcomes() {
        let old = r#"{"time":"t","environment":null,"job_id":"1","status_before":"running","status_after":"failed","action":"fail","kind":"stalled","rule":"hb","age_seconds":1,"threshold_seconds":1,"outcome":"applied","replica":"h:1","forced":false}"#;
        let entry: Entry = serde_json::from_str(old).unwrap();
        assert_eq!((entry.stage, entry.id.as_str()), (Stage::Outcome, ""));
    }

    #[test]
    fn a_word_of_a_later_version_still_reads() {
        let line = r#"{"time":"t","environment":null,"job_id":"1","status_before":"running","status_after":"failed","action":"fail","kind":"stalled","rule":"hb","age_seconds":1,"threshold_seconds":1,"outcome":"vetoed","replica":"h:1","forced":false}"#;
        let e: Entry = serde_json::from_str(line).unwrap();
        assert_eq!(
            (e.kind, e.action, e.outcome),
            (Kind::Stalled, Action::Fail, Recorded::Other)
        );
    }
}
