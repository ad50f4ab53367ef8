//! The detection core: active rows, rules and the time in, findings out.
//!
//! This is the one place that decides whether a job is stuck, and it does no I/O: no clock
//! reads (the database's `now` is passed in), no process table (the shell passes the set of
//! dead pids), no errors (a row it cannot judge becomes a [`Warning`]). That keeps every rule
//! testable with plain values, and keeps `check`, `recover` and the daemon in agreement,
//! since all three call [`detect`].
//!
//! Rule precedence: for each job and each signal (heartbeat, progress, created) the first rule
//! in file order whose statuses and phases match the job is the one that judges it. A
//! specific rule (`phases = ["training"]`, `after = "6h"`) placed before a generic one
//! (`after = "30m"`) therefore overrides it, and a progress rule is never hidden by a
//! heartbeat rule.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::job::{Guard, JobRow, Relative, Stamp, WorkerBeat, WorkerSeen};
use crate::core::memory::{Entered, Memory};
use crate::core::pattern::ArtifactFile;
use crate::core::vocabulary::{Action, Rule, Severity, Signal, StatusClass, Statuses};

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Stalled,
    Overdue,
    DeadProcess,
    OrphanedChild,
    UnreportedArtifact,
    IncompleteArtifact,
    OrphanArtifact,
    MissingArtifact,
    /// Too many active jobs look stuck at once: nothing was written (see `safety`).
    MassStall,
}

impl Kind {
    /// The name used in JSON, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Stalled => "stalled",
            Kind::Overdue => "overdue",
            Kind::DeadProcess => "dead_process",
            Kind::OrphanedChild => "orphaned_child",
            Kind::UnreportedArtifact => "unreported_artifact",
            Kind::IncompleteArtifact => "incomplete_artifact",
            Kind::OrphanArtifact => "orphan_artifact",
            Kind::MissingArtifact => "missing_artifact",
            Kind::MassStall => "mass_stall",
        }
    }
}

/// A finding's identity from one scan to the next: its kind, rule and job id. Alerts,
/// confirmations and the daemon's appear/clear log all key on it; its text form
/// (`kind/rule/job_id`) names an alert in the alert book.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FindingKey {
    pub kind: Kind,
    pub rule: String,
    pub job_id: String,
}

impl std::fmt::Display for FindingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind.as_str(), self.rule, self.job_id)
    }
}

impl Outcome {
    /// The name used in JSON, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::None => "none",
            Outcome::DryRun => "dry_run",
            Outcome::Applied => "applied",
            Outcome::Raced => "raced",
            Outcome::Limited => "limited",
            Outcome::Error => "error",
        }
    }
}

/// What became of a finding's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing was attempted (`check`, or an `alert` action).
    None,
    /// The write was only printed.
    DryRun,
    /// The row was written.
    Applied,
    /// The row changed since it was read, so nothing was written.
    Raced,
    /// A safety limit held the write back.
    Limited,
    /// The write failed.
    Error,
}

/// A file tied to a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactRef {
    /// Relative to the artifact root.
    pub path: String,
    pub size: u64,
}

/// One problem with one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub rule: String,
    pub job_id: String,
    pub status: String,
    pub phase: Option<String>,
    pub age_seconds: u64,
    pub threshold_seconds: u64,
    #[serde(serialize_with = "crate::core::job::serialize_epoch")]
    pub since: f64,
    pub severity: Severity,
    pub action: Action,
    pub outcome: Outcome,
    pub message: String,
    pub artifacts: Vec<ArtifactRef>,
    /// The row's own evidence, when the judged age differs from it (a job first seen late is
    /// judged from that sight): `signal_age_seconds` and `signal_at` in the JSON.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// The incident it belongs to (see `core::incident`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// The job's worker (`[jobs] worker`, with what `[workers]` shows of it when that is
    /// configured), so the operator can use the queue library's own tools on it; omitted when
    /// the row names none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<Owner>,
    /// The row's `host` column (`[jobs] host`), omitted when not configured or NULL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The row's `pid` column (`[jobs] pid`) when it is a number, omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    /// The row as read, for the guarded write.
    #[serde(skip)]
    pub guard: Guard,
    /// The job's progress value, for the human table.
    #[serde(skip)]
    pub progress: Option<String>,
    /// Why its write was held back (`outcome: limited`), for the console.
    #[serde(skip)]
    pub held: Option<String>,
}

impl Finding {
    /// Its identity across scans.
    pub fn key(&self) -> FindingKey {
        FindingKey {
            kind: self.kind,
            rule: self.rule.clone(),
            job_id: self.job_id.clone(),
        }
    }
}

/// The worker a job's row names (`[jobs] worker`), as `[workers]` shows it this scan when
/// that is configured. Without `[workers]` it is the id alone: `gone`, `heartbeat_at`, `host`
/// and `pid` are left out, and nothing is judged by it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    /// The value of the job's `worker` column.
    pub id: String,
    /// With `[workers]`: whether the workers table has no row with this id. `None` (left
    /// out of the JSON) without `[workers]`: its liveness is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone: Option<bool>,
    /// The worker's last beat, when its row has a readable one.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_opt_epoch",
        skip_deserializing
    )]
    pub heartbeat_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
}

impl Owner {
    /// "worker 17 on w-2, pid 42, last beat 2026-12-03T14:02:00Z", "worker 17 (its row is
    /// gone)" or, without `[workers]`, "worker 17": who held the job, for the queue
    /// library's own tools.
    pub fn words(&self) -> String {
        if self.gone == Some(true) {
            return format!("worker {} (its row is gone)", self.id);
        }
        let mut out = format!("worker {}", self.id);
        if let Some(host) = &self.host {
            out.push_str(&format!(" on {host}"));
        }
        if let Some(pid) = self.pid {
            out.push_str(&format!(", pid {pid}"));
        }
        if let Some(at) = self.heartbeat_at {
            out.push_str(&format!(", last beat {}", crate::core::job::rfc3339(at)));
        }
        out
    }
}

/// Who held a job, in words, from a finding's `worker`, `host` and `pid`: "worker 17 on w-2,
/// pid 42; the row's host web-1, pid 4242". `None` when the finding names none of them.
pub fn owner_words(worker: Option<&Owner>, host: Option<&str>, pid: Option<i64>) -> Option<String> {
    let mut parts: Vec<String> = worker.map(Owner::words).into_iter().collect();
    let place = match (host, pid) {
        (Some(h), Some(p)) => Some(format!("host {h}, pid {p}")),
        (Some(h), None) => Some(format!("host {h}")),
        (None, Some(p)) => Some(format!("pid {p}")),
        (None, None) => None,
    };
    if let Some(place) = place {
        parts.push(match worker {
            Some(_) => format!("the row's {place}"),
            None => place,
        });
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn serialize_opt_epoch<S: serde::Serializer>(epoch: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match epoch {
        Some(e) => crate::core::job::serialize_epoch(e, s),
        None => s.serialize_none(),
    }
}

/// What the row itself shows when it says more than the judged age: its heartbeat or
/// progress last moved at `signal_at`, before the moment the judgement counts from (the first
/// sight of a job first seen late, a re-queue, the `status_since` column).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evidence {
    pub signal_age_seconds: u64,
    #[serde(serialize_with = "crate::core::job::serialize_epoch")]
    pub signal_at: f64,
}

/// A row the core could not judge, said once per row and field; or, without a job id,
/// something about the whole scan (a likely time-zone mismatch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    pub message: String,
}

/// What the shell saw under one `[[artifacts]]` root this scan: only the jobs that matter.
#[derive(Debug, Clone, Default)]
pub struct ArtifactView {
    /// The block's name: the `rule` of its findings.
    pub name: String,
    pub settle: Duration,
    /// The `required` globs, as written (for messages).
    pub required: Vec<String>,
    /// Files by job id, for the active jobs with output, partial-file owners, ids the table
    /// lacks, and recently succeeded jobs.
    pub files: HashMap<String, Vec<ArtifactFile>>,
    /// Ids with output that the table does not have.
    pub unknown: BTreeSet<String>,
    /// Statuses of ids with output that are not active (looked up in the table).
    pub status_of: HashMap<String, String>,
    /// Succeeded jobs within `required_within`: id, status, finished (database clock).
    pub succeeded: Vec<(String, String, f64)>,
}

/// What the shell observed in one scan.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The database's clock, Unix seconds.
    pub now: f64,
    /// The rows judged in full: every active row (the reference read), or the candidates of
    /// a two-tier read (see `core::candidates`).
    pub jobs: &'a [JobRow],
    /// Every active row, as the scan's first read has it: what the memory records, what the
    /// scan-wide figures and the families are taken from. The same slice as `jobs` when
    /// every row was read in full.
    pub all: &'a [JobRow],
    /// Parents and children of active rows that are not active themselves.
    pub relatives: &'a [Relative],
    /// This machine's host name, as the `host` column would spell it.
    pub local_host: &'a str,
    /// Pids of jobs on this host that no longer exist.
    pub dead_pids: &'a BTreeSet<i64>,
    /// The report folders.
    pub artifacts: &'a [ArtifactView],
    /// `[workers]`, read once this scan, by id (the text of the id column); `None` when not
    /// configured. A job whose `worker` names one of them lives by its heartbeat.
    pub workers: Option<&'a HashMap<String, WorkerBeat>>,
}

/// The rules in force for one scan.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub rules: &'a [Rule],
    pub statuses: &'a Statuses,
    /// `recover --older-than`: any active job stuck longer than this is overdue.
    pub older_than: Option<OlderThan>,
    /// The liveness signals the table has, for `--older-than`.
    pub liveness: Liveness,
}

impl Policy<'_> {
    /// Whether a status word is one of a finished class (succeeded, failed, cancelled).
    pub(crate) fn finished(&self, status: &str) -> bool {
        self.statuses
            .class_of(status)
            .is_some_and(|c| !c.is_active())
    }

    /// What `--older-than` measures "stuck" by: the best liveness signal the table has.
    pub(crate) fn older_than_signal(&self) -> Signal {
        if self.liveness.heartbeat {
            Signal::Heartbeat
        } else if self.liveness.progress {
            Signal::Progress
        } else {
            Signal::Created
        }
    }
}

/// `recover --older-than D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OlderThan {
    pub after: Duration,
    /// `--force`: also write rows whose first matching rule is alert-only.
    pub force: bool,
}

/// Which liveness signals the table has: `--older-than` measures "stuck" by the best one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Liveness {
    pub heartbeat: bool,
    pub progress: bool,
}

/// A timestamp further ahead of the database clock than this is not believed.
pub const FUTURE_TOLERANCE: f64 = 60.0;
/// "Every active row looks stuck at once" is only said from this many rows up.
const ALL_STUCK_MIN_ROWS: usize = 3;

/// The core's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detected {
    pub findings: Vec<Finding>,
    pub warnings: Vec<Warning>,
    /// The scan as a whole looks wrong (most rows in the future, or every row stuck at once):
    /// the likely cause, in one sentence. Also the first of `warnings`.
    pub suspicion: Option<String>,
    /// The suspicion is one a write must not act on (rows ahead of the clock, or every row
    /// stuck by an amount that looks like a zone offset): every write waits until it clears
    /// or an operator forces it.
    pub suspicion_holds: bool,
    /// How old the newest liveness signal (heartbeat, else creation) of any judged row is:
    /// `validate --connect` compares it with the database clock.
    pub newest_signal_age: Option<f64>,
    /// Active jobs whose row shows a signal older than their rule, not flagged (yet) because
    /// jobwarden counts from its first sight of them: they became active, or came into view,
    /// since an earlier scan.
    pub late: Vec<String>,
}

/// The rule name of findings made by `--older-than`.
pub const OLDER_THAN_RULE: &str = "older-than";
/// The rule name of parent/child and dead-process findings that no rule covers.
pub const BUILTIN_RULE: &str = "builtin";

impl Rule {
    /// Whether this rule watches the job's status and phase.
    pub fn matches(&self, job: &JobRow) -> bool {
        self.statuses.contains(&job.status)
            && self.phases.as_ref().is_none_or(|phases| {
                job.phase
                    .as_ref()
                    .is_some_and(|p| phases.iter().any(|x| x == p))
            })
    }
}

/// Judges every active job. Pure: same input, same output (the memory is part of the input,
/// and this scan's rows are recorded in it first).
pub fn detect(obs: &Observation<'_>, policy: &Policy<'_>, memory: &mut Memory) -> Detected {
    memory.observe(obs.all, obs.now);
    judge(obs, policy, memory)
}

/// Judges the rows read in full against a memory that has recorded this scan's rows
/// already. A row of `all` that is not in `jobs` must be one [`crate::core::candidates`]
/// proved to have nothing to say: it counts in the scan-wide figures only.
pub fn judge(obs: &Observation<'_>, policy: &Policy<'_>, memory: &Memory) -> Detected {
    judge_with(obs, policy, memory, None)
}

/// The scan-wide figures of an active set that was not read row by row this scan (the
/// unchanged set of a summary scan, see [`crate::core::candidates::Standing`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetFigures {
    /// How many active rows there are.
    pub active: usize,
    /// The newest liveness signal (heartbeat, else creation) of any of them, Unix seconds.
    pub newest_signal: Option<f64>,
}

/// [`judge`], with the scan-wide figures given rather than taken from `obs.all`, which then
/// holds only the rows read in full (a config with no parent column: no families to build).
pub fn judge_summarised(
    obs: &Observation<'_>,
    policy: &Policy<'_>,
    memory: &Memory,
    figures: SetFigures,
) -> Detected {
    judge_with(obs, policy, memory, Some(figures))
}

fn judge_with(
    obs: &Observation<'_>,
    policy: &Policy<'_>,
    memory: &Memory,
    figures: Option<SetFigures>,
) -> Detected {
    let family = Family::new(obs);

    let mut out = Detected::default();
    let mut ahead: Vec<f64> = Vec::new();
    let mut judged = 0usize;
    let mut stuck: BTreeSet<&str> = BTreeSet::new();
    // The least any stuck row is past its rule: a row just past its rule is explained by it.
    let mut least_excess: Option<u64> = None;
    let is_active = |job: &JobRow| {
        policy
            .statuses
            .class_of(&job.status)
            .is_some_and(|c| c.is_active())
    };
    if let Some(f) = figures {
        judged = f.active;
        out.newest_signal_age = f.newest_signal.map(|at| obs.now - at);
    }
    for job in obs.all.iter().filter(|j| is_active(j) && figures.is_none()) {
        judged += 1;
        let worker_beat = worker_of(job, obs.workers)
            .and_then(|(_, beat)| beat)
            .and_then(|b| b.heartbeat_at.at());
        if let Some(at) = worker_beat
            .or(job.heartbeat_at.at())
            .or(job.created_at.at())
        {
            let age = obs.now - at;
            out.newest_signal_age = Some(out.newest_signal_age.map_or(age, |n| n.min(age)));
        }
    }
    for job in obs.jobs.iter().filter(|j| is_active(j)) {
        if let Some((column, by)) = ahead_of_clock(job, obs.now) {
            ahead.push(by);
            out.warn(
                job,
                format!(
                    "{column} is {} ahead of the database clock: check `[database] timezone` (or the clock of whoever writes it); not judged",
                    format_age(by)
                ),
            );
            continue;
        }
        let judge = Judge::new(job, obs.now, memory, obs.workers);
        let before = out.findings.len();
        for signal in [Signal::Heartbeat, Signal::Progress, Signal::Created] {
            let Some(rule) = policy
                .rules
                .iter()
                .find(|r| r.signal == signal && r.matches(job))
            else {
                continue;
            };
            match judge.since(signal) {
                Ok(since) => {
                    if let Some(f) = judge.over(
                        since,
                        rule.after,
                        signal,
                        &rule.name,
                        rule.action,
                        rule.severity,
                    ) {
                        out.findings.push(f);
                    } else if judge.first_seen_late(since, rule.after)
                        && out.late.last() != Some(&job.id)
                    {
                        out.late.push(job.id.clone());
                    }
                }
                Err(message) => out.warn(job, format!("{message}; rule `{}` skipped", rule.name)),
            }
        }
        if let Some(limit) = policy.older_than {
            // Stuck, not old: the best liveness signal the table has.
            let signal = policy.older_than_signal();
            // A row whose first matching rule only alerts (a phase on external workers, say)
            // is reported, never written, unless `--force`.
            let alert_only = policy
                .rules
                .iter()
                .find(|r| r.matches(job))
                .is_some_and(|r| r.action == Action::Alert);
            let action = if alert_only && !limit.force {
                Action::Alert
            } else {
                Action::Fail
            };
            match judge.since(signal) {
                Ok(since) => {
                    if let Some(mut f) = judge.over(
                        since,
                        limit.after,
                        signal,
                        OLDER_THAN_RULE,
                        action,
                        Severity::Critical,
                    ) {
                        f.kind = Kind::Overdue;
                        if action == Action::Alert {
                            f.message
                                .push_str("; its rule only alerts, so --older-than does not write it without --force");
                        }
                        out.findings.push(f);
                    }
                }
                Err(message) => out.warn(job, format!("{message}; --older-than skipped")),
            }
        }
        if out.findings.len() > before {
            stuck.insert(job.id.as_str());
            let excess = out.findings[before..]
                .iter()
                .map(|f| f.age_seconds.saturating_sub(f.threshold_seconds))
                .max()
                .unwrap_or(0);
            least_excess = Some(least_excess.map_or(excess, |l: u64| l.min(excess)));
        }
        if let Some(bad) = &job.bad_pid {
            out.warn(
                job,
                format!("pid `{bad}` is not a process id; the dead-process check is skipped"),
            );
        }
        if job.pid.is_none() && job.parent_id.is_none() && family.children.is_empty() {
            continue;
        }
        let governing = policy.rules.iter().find(|r| r.matches(job));
        let (rule, action, severity) = match governing {
            Some(r) => (r.name.as_str(), r.action, r.severity),
            None => (BUILTIN_RULE, Action::Alert, Severity::Warning),
        };
        if let (Some(pid), Some(host)) = (job.pid, &job.host) {
            if same_host(host, obs.local_host) && obs.dead_pids.contains(&pid) {
                out.findings.push(judge.finding(
                    Kind::DeadProcess,
                    rule,
                    action,
                    severity,
                    0,
                    format!(
                        "process {pid} on {host} is gone, but the job is still {}",
                        job.status
                    ),
                ));
            }
        }
        if let Some(parent) = &job.parent_id {
            if let Some(parent_status) = family.finished_parent(job, policy) {
                out.findings.push(judge.finding(
                    Kind::OrphanedChild,
                    rule,
                    action,
                    severity,
                    0,
                    format!(
                        "parent {parent} is {parent_status}, but this child is still {}",
                        job.status
                    ),
                ));
            }
        }
        if let Some(kids) = family.finished_children(&job.id, policy) {
            // The parent may be about to wrap up; tell a person, never write.
            out.findings.push(judge.finding(
                Kind::OrphanedChild,
                rule,
                Action::Alert,
                severity,
                0,
                format!(
                    "all {kids} children are finished, but the parent is still {}",
                    job.status
                ),
            ));
        }
    }
    let offset_age = out
        .newest_signal_age
        .filter(|_| least_excess.is_some_and(|e| e as f64 >= MIN_OFFSET_EXCESS));
    if let Some((message, holds)) = suspicion(judged, &ahead, stuck.len(), offset_age) {
        out.suspicion = Some(message);
        out.suspicion_holds = holds;
    }
    if let Some(s) = &out.suspicion {
        out.warnings.insert(
            0,
            Warning {
                job_id: None,
                message: s.clone(),
            },
        );
    }
    for view in obs.artifacts {
        artifact_findings(obs, view, policy, &mut out.findings);
    }
    outrank_stalled(&mut out.findings);
    out.findings.sort_by(|a, b| {
        natural_cmp(&a.job_id, &b.job_id)
            .then(a.kind.cmp(&b.kind))
            .then(a.rule.cmp(&b.rule))
    });
    out
}

/// Most urgent first, the order of the console's table: critical first, the mass stall first
/// among its severity (it has no age of its own), then the oldest first; the job id settles
/// ties, so a page holds the same rows from one request to the next.
pub fn by_urgency(a: &Finding, b: &Finding) -> std::cmp::Ordering {
    b.severity
        .cmp(&a.severity)
        .then((b.kind == Kind::MassStall).cmp(&(a.kind == Kind::MassStall)))
        .then(b.age_seconds.cmp(&a.age_seconds))
        .then(a.job_id.cmp(&b.job_id))
        .then(a.kind.cmp(&b.kind))
        .then(a.rule.cmp(&b.rule))
}

/// The first of a row's timestamps that is more than [`FUTURE_TOLERANCE`] ahead of `now`, and
/// by how much.
pub(crate) fn ahead_of_clock(job: &JobRow, now: f64) -> Option<(&'static str, f64)> {
    [
        ("heartbeat_at", &job.heartbeat_at),
        ("created_at", &job.created_at),
        ("status_since", &job.status_since),
    ]
    .into_iter()
    .find_map(|(name, stamp)| {
        stamp
            .at()
            .map(|t| t - now)
            .filter(|by| *by > FUTURE_TOLERANCE)
            .map(|by| (name, by))
    })
}

/// A zone offset is only suspected from this many active rows up: one row stuck a round
/// number of hours is as likely a job that died then (and the daemon never writes a job whose
/// heartbeat moves between its confirming scans, whatever its age reads).
const OFFSET_MIN_ROWS: usize = 2;
/// A zone offset is only suspected when every stuck row is at least this far past its rule: a
/// job that has just crossed a round `after` ("1h") is explained by its rule, not by a zone.
const MIN_OFFSET_EXCESS: f64 = 45.0 * 60.0;

/// One sentence when the scan as a whole looks wrong, and whether it holds writes back.
/// `judged` active rows, of which `ahead` had timestamps in the future (by these amounts) and
/// `stuck` had an age finding; `newest` is the age of the newest liveness signal, when every
/// stuck row is well past its rule.
///
/// Rows ahead of the clock always hold writes: the rows that were judged may be read in the
/// same wrong zone. Every row stuck at once holds writes only when the newest signal's age
/// looks like a zone offset (see [`zone_offset`]): a whole worker pool can die at once, and
/// that case is the `mass_stall` guard's, not a reason to never fail three dead jobs.
fn suspicion(
    judged: usize,
    ahead: &[f64],
    stuck: usize,
    newest: Option<f64>,
) -> Option<(String, bool)> {
    if !ahead.is_empty() && ahead.len() * 2 > judged {
        let mut sorted = ahead.to_vec();
        sorted.sort_by(f64::total_cmp);
        let typical = sorted[sorted.len() / 2];
        return Some((
            format!(
                "{} of {judged} active rows have timestamps about {} ahead of the database clock: \
                 naive timestamps are likely read in the wrong zone (set `[database] timezone`), or \
                 the application's clock is ahead; those rows are not judged, and nothing is \
                 written until this clears (or `recover --force`)",
                ahead.len(),
                format_age(typical)
            ),
            true,
        ));
    }
    if judged >= OFFSET_MIN_ROWS && stuck == judged {
        if let Some(advice) = newest.and_then(zone_advice) {
            return Some((
                format!(
                    "every active row ({judged}) looks older than its rule, and {advice}; \
                     nothing is written until this clears (or `recover --force`)"
                ),
                true,
            ));
        }
    }
    if judged >= ALL_STUCK_MIN_ROWS && stuck == judged {
        return Some((
            format!(
                "all {judged} active rows look older than their rules at once: check that naive \
                 timestamps are read in the right zone (`[database] timezone`) and the clocks, \
                 before believing that every job is stuck"
            ),
            false,
        ));
    }
    None
}

/// How far from a zone offset the newest signal may be: a live job beats every few seconds
/// to a minute, so its age sits just over the offset.
const OFFSET_SLACK_BEFORE: f64 = 60.0;
const OFFSET_SLACK_AFTER: f64 = 180.0;

/// The zone offset (minutes west of UTC, a multiple of 30 from 1 h to 12 h) that an age of the
/// newest liveness signal looks like: naive timestamps written in UTC-5 and read as UTC make a
/// job that beat a second ago look 5 h 0 m old.
pub fn zone_offset(newest_age: f64) -> Option<u32> {
    let centre = (OFFSET_SLACK_AFTER - OFFSET_SLACK_BEFORE) / 2.0;
    let half_hours = ((newest_age - centre) / 1800.0).round();
    let offset = half_hours * 1800.0;
    let fits =
        newest_age >= offset - OFFSET_SLACK_BEFORE && newest_age <= offset + OFFSET_SLACK_AFTER;
    (fits && (2.0..=24.0).contains(&half_hours)).then_some(half_hours as u32 * 30)
}

/// "the newest heartbeat is 5h 0m old: rows look written in UTC-5; set `[database] timezone`",
/// when the age looks like a zone offset.
pub fn zone_advice(newest_age: f64) -> Option<String> {
    let minutes = zone_offset(newest_age)?;
    let zone = match minutes % 60 {
        0 => format!("UTC-{}", minutes / 60),
        m => format!("UTC-{}:{m:02}", minutes / 60),
    };
    let whole = newest_age.max(0.0) as u64 / 60;
    Some(format!(
        "the newest heartbeat is {}h {}m old: rows look written in {zone}; set `[database] timezone`",
        whole / 60,
        whole % 60
    ))
}

/// Who is whose parent, among the active rows and their relatives. Empty (and free) when no
/// row has a parent.
pub(crate) struct Family<'a> {
    status_of: HashMap<&'a str, &'a str>,
    /// Statuses of each parent's children.
    children: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Family<'a> {
    /// The status of the job's parent, when the parent is finished.
    pub(crate) fn finished_parent(&self, job: &JobRow, policy: &Policy<'_>) -> Option<&'a str> {
        let parent = job.parent_id.as_deref()?;
        self.status_of
            .get(parent)
            .copied()
            .filter(|s| policy.finished(s))
    }

    /// How many children the job has, when it has some and every one is finished.
    pub(crate) fn finished_children(&self, id: &str, policy: &Policy<'_>) -> Option<usize> {
        let kids = self.children.get(id)?;
        kids.iter()
            .all(|s| policy.finished(s))
            .then_some(kids.len())
    }

    pub(crate) fn new(obs: &Observation<'a>) -> Family<'a> {
        let mut family = Family {
            status_of: HashMap::new(),
            children: HashMap::new(),
        };
        if obs.relatives.is_empty() && obs.all.iter().all(|j| j.parent_id.is_none()) {
            return family;
        }
        let rows = obs
            .all
            .iter()
            .map(|j| (j.id.as_str(), j.parent_id.as_deref(), j.status.as_str()))
            .chain(
                obs.relatives
                    .iter()
                    .map(|r| (r.id.as_str(), r.parent_id.as_deref(), r.status.as_str())),
            );
        for (id, parent, status) in rows {
            family.status_of.insert(id, status);
            if let Some(parent) = parent {
                family.children.entry(parent).or_default().push(status);
            }
        }
        family
    }
}

impl Detected {
    fn warn(&mut self, job: &JobRow, message: String) {
        self.warnings.push(Warning {
            job_id: Some(job.id.clone()),
            message,
        });
    }
}

/// One job at one instant.
pub(crate) struct Judge<'a> {
    job: &'a JobRow,
    now: f64,
    /// When the job entered its current status, and how that is known.
    entered: Result<(f64, Entered), String>,
    memory: &'a Memory,
    /// The job's worker and its row (`None`: gone), when `[workers]` is configured and the
    /// row names one.
    worker: Option<(&'a str, Option<&'a WorkerBeat>)>,
}

/// The job's worker as a finding shows it: what `[workers]` shows of it (`worker`, from
/// [`worker_of`]), else the job's `worker` column alone.
fn owner(job: &JobRow, worker: Option<(&str, Option<&WorkerBeat>)>) -> Option<Owner> {
    let Some((id, beat)) = worker else {
        return job.worker.as_ref().map(|id| Owner {
            id: id.clone(),
            ..Owner::default()
        });
    };
    Some(Owner {
        id: id.to_string(),
        gone: Some(beat.is_none()),
        heartbeat_at: beat.and_then(|b| b.heartbeat_at.at()),
        host: beat.and_then(|b| b.host.clone()),
        pid: beat.and_then(|b| b.pid.as_deref()?.trim().parse().ok()),
    })
}

/// What the guarded write of a finding on `job` compares: the row as read, and its worker's
/// row as the judgement saw it (`worker`, from [`worker_of`]).
fn guard_of(job: &JobRow, worker: Option<(&str, Option<&WorkerBeat>)>) -> Guard {
    Guard {
        worker_row: worker.map(|(id, beat)| match beat {
            None => WorkerSeen::Gone { id: id.into() },
            Some(b) => WorkerSeen::Beat {
                id: id.into(),
                heartbeat: b.heartbeat_text.clone(),
            },
        }),
        ..job.guard.clone()
    }
}

/// The worker a job names, and its row in `[workers]` (`None`: gone); `None` when the
/// workers are not configured or the row names no worker.
pub(crate) fn worker_of<'a>(
    job: &'a JobRow,
    workers: Option<&'a HashMap<String, WorkerBeat>>,
) -> Option<(&'a str, Option<&'a WorkerBeat>)> {
    let id = job.worker.as_deref()?;
    Some((id, workers?.get(id)))
}

/// When a signal last moved: what the judgement counts from, and what the row itself shows
/// when that is earlier.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Since {
    pub(crate) judged: f64,
    pub(crate) shown: Option<f64>,
}

impl<'a> Judge<'a> {
    /// The judge of `job` at `now`, by a memory that has recorded this scan's rows.
    pub(crate) fn new(
        job: &'a JobRow,
        now: f64,
        memory: &'a Memory,
        workers: Option<&'a HashMap<String, WorkerBeat>>,
    ) -> Judge<'a> {
        Judge {
            job,
            now,
            entered: memory.entered(job),
            memory,
            worker: worker_of(job, workers),
        }
    }

    /// Whether the job's worker row is gone from `[workers]`.
    pub(crate) fn worker_gone(&self) -> bool {
        matches!(self.worker, Some((_, None)))
    }

    /// The worker's last beat, when the job has a worker whose row shows one: the job's
    /// liveness signal then. `Err`: the row's value is not a timestamp.
    fn worker_beat(&self) -> Result<Option<(&'a str, f64)>, String> {
        match self.worker {
            Some((id, Some(beat))) => match &beat.heartbeat_at {
                Stamp::At(t) => Ok(Some((id, *t))),
                // Not beaten yet: the job's own signals judge it.
                Stamp::Missing => Ok(None),
                Stamp::Invalid(v) => {
                    Err(format!("worker {id}'s heartbeat `{v}` is not a timestamp"))
                }
            },
            _ => Ok(None),
        }
    }

    /// When the job entered its status, when that is known better than `created_at` (a column,
    /// jobwarden's own sight of it, a re-queue): no signal is judged older than that.
    fn floor(&self) -> Option<(f64, Entered)> {
        match &self.entered {
            Ok((at, how)) if !matches!(how, Entered::FirstScan | Entered::Created) => {
                Some((*at, *how))
            }
            _ => None,
        }
    }

    /// Since when the signal has not moved. No signal is judged older than the job's time in
    /// its current status when that is known better than `created_at`: a heartbeat left over
    /// from before a re-queue says nothing about the new attempt, and a job first seen late is
    /// counted from that sight. The row's own older value is kept as evidence. A row with no
    /// heartbeat and no creation time is counted from the scan that first saw it.
    pub(crate) fn since(&self, signal: Signal) -> Result<Since, String> {
        if let (Signal::Heartbeat, Some((_, beat))) = (signal, self.worker_beat()?) {
            return Ok(self.by_worker(beat));
        }
        let floor = self.floor().map(|(at, _)| at);
        let raw = match signal {
            Signal::Heartbeat => match self.job.heartbeat_since() {
                Ok(t) => t,
                Err(e) if self.undated() => {
                    return floor
                        .map(|judged| Since {
                            judged,
                            shown: None,
                        })
                        .ok_or(e)
                }
                Err(e) => return Err(e),
            },
            Signal::Progress => self.memory.progress_since(&self.job.id).unwrap_or(self.now),
            Signal::Created => {
                return self.entered.clone().map(|(judged, _)| Since {
                    judged,
                    shown: None,
                })
            }
        };
        Ok(match floor {
            Some(f) if f > raw => Since {
                judged: f,
                shown: Some(raw),
            },
            _ => Since {
                judged: raw,
                shown: None,
            },
        })
    }

    /// Since when a job whose worker beats has been without a sign of life: its worker's last
    /// beat, unless the job entered its status later by the `status_since` column or a
    /// re-queue (its worker was alive to take it then). jobwarden's first sight of the job is
    /// no such sign: a worker's silence is seen directly, whenever the job came into view,
    /// so a job of a dead worker is found on the first scan that sees it.
    fn by_worker(&self, beat: f64) -> Since {
        match self.floor() {
            Some((at, Entered::Column | Entered::Requeued)) if at > beat => Since {
                judged: at,
                shown: Some(beat),
            },
            _ => Since {
                judged: beat,
                shown: None,
            },
        }
    }

    /// The row has neither a heartbeat nor a creation time: only jobwarden's sight dates it.
    fn undated(&self) -> bool {
        matches!(self.job.heartbeat_at, Stamp::Missing)
            && matches!(self.job.created_at, Stamp::Missing)
    }

    /// Whether the row shows the signal older than `limit` while the judgement, counting from
    /// jobwarden's first sight of the job, does not yet.
    fn first_seen_late(&self, since: Since, limit: Duration) -> bool {
        matches!(self.floor(), Some((_, Entered::Observed)))
            && since
                .shown
                .is_some_and(|shown| self.now - shown > limit.as_secs_f64())
    }

    /// A finding when `now - since` exceeds `limit`. Its message says the row's own evidence
    /// too when the judgement counts from later than it.
    fn over(
        &self,
        since: Since,
        limit: Duration,
        signal: Signal,
        rule: &str,
        action: Action,
        severity: Severity,
    ) -> Option<Finding> {
        let age = self.now - since.judged;
        if age <= limit.as_secs_f64() {
            return None;
        }
        let (kind, what) = match signal {
            Signal::Heartbeat => (Kind::Stalled, "no heartbeat"),
            Signal::Progress => (Kind::Stalled, "no progress"),
            Signal::Created => (Kind::Overdue, self.job.status.as_str()),
        };
        let limit_text = humantime::format_duration(limit);
        let worker_beat = match signal {
            Signal::Heartbeat => self.worker_beat().ok().flatten(),
            _ => None,
        };
        let message = match (since.shown, worker_beat) {
            (Some(shown), Some((id, _))) => format!(
                "worker {id} last beat at {} ({} ago); {} (limit {limit_text})",
                clock(shown, self.now),
                format_age(self.now - shown),
                self.counted(age)
            ),
            (None, Some((id, beat))) => format!(
                "worker {id} last beat at {} ({} ago; limit {limit_text})",
                clock(beat, self.now),
                format_age(self.now - beat)
            ),
            (shown, None) => self.own_message(shown, age, what, signal, &limit_text),
        };
        let message = match self.worker {
            Some((id, None)) if signal == Signal::Heartbeat => {
                format!("worker {id} is gone; {message}")
            }
            _ => message,
        };
        let mut finding = self.finding(kind, rule, action, severity, limit.as_secs(), message);
        finding.since = since.judged;
        finding.age_seconds = age as u64;
        finding.evidence = since.shown.map(|shown| Evidence {
            signal_age_seconds: (self.now - shown).max(0.0) as u64,
            signal_at: shown,
        });
        Some(finding)
    }

    /// The message of a finding judged by the row's own signal.
    fn own_message(
        &self,
        shown: Option<f64>,
        age: f64,
        what: &str,
        signal: Signal,
        limit_text: &humantime::FormattedDuration,
    ) -> String {
        match shown {
            Some(shown) => format!(
                "{what} since {} ({} ago); {} (limit {limit_text})",
                clock(shown, self.now),
                format_age(self.now - shown),
                self.counted(age)
            ),
            None => {
                let note = match (&self.entered, signal) {
                    (Ok((_, Entered::FirstScan)), Signal::Created) => {
                        "; counted from created_at: the first scan to see this job"
                    }
                    (Ok((_, Entered::Observed)), Signal::Created)
                        if matches!(self.job.created_at, Stamp::Missing) =>
                    {
                        "; counted from the scan that first saw it: the row has no creation time"
                    }
                    (_, Signal::Heartbeat) if self.undated() => {
                        "; counted from the scan that first saw it: the row has no heartbeat and no creation time"
                    }
                    _ => "",
                };
                format!("{what} for {} (limit {limit_text}{note})", format_age(age))
            }
        }
    }

    /// What the judged age counts: the time since jobwarden first saw the job, since its
    /// re-queue, or in its status as the `status_since` column says.
    fn counted(&self, age: f64) -> String {
        let status = &self.job.status;
        match self.floor() {
            Some((_, Entered::Requeued)) => {
                format!("re-queued by jobwarden {} ago", format_age(age))
            }
            Some((_, Entered::Column)) => format!("{status} for {}", format_age(age)),
            _ => format!("watched {status} for {}", format_age(age)),
        }
    }

    fn finding(
        &self,
        kind: Kind,
        rule: &str,
        action: Action,
        severity: Severity,
        threshold_seconds: u64,
        message: String,
    ) -> Finding {
        let since = self
            .since(Signal::Heartbeat)
            .map_or(self.now, |s| s.judged)
            .min(self.now);
        Finding {
            kind,
            rule: rule.to_string(),
            job_id: self.job.id.clone(),
            status: self.job.status.clone(),
            phase: self.job.phase.clone(),
            age_seconds: (self.now - since).max(0.0) as u64,
            threshold_seconds,
            since,
            severity,
            action,
            outcome: Outcome::None,
            message,
            artifacts: Vec::new(),
            evidence: None,
            incident: None,
            worker: owner(self.job, self.worker),
            host: self.job.host.clone(),
            pid: self.job.pid,
            guard: guard_of(self.job, self.worker),
            progress: self.job.progress.clone(),
            held: None,
        }
    }
}

/// The four artifact kinds for one root.
fn artifact_findings(
    obs: &Observation<'_>,
    view: &ArtifactView,
    policy: &Policy<'_>,
    out: &mut Vec<Finding>,
) {
    let settle = view.settle.as_secs_f64();
    let active: HashMap<&str, &JobRow> = obs.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let refs = |files: &[&ArtifactFile]| -> Vec<ArtifactRef> {
        files
            .iter()
            .take(20)
            .map(|f| ArtifactRef {
                path: f.path.clone(),
                size: f.size,
            })
            .collect()
    };
    let base =
        |job_id: &str, kind: Kind, severity: Severity, age: f64, message: String| -> Finding {
            let job = active.get(job_id);
            Finding {
                kind,
                rule: view.name.clone(),
                job_id: job_id.to_string(),
                status: job
                    .map(|j| j.status.clone())
                    .or_else(|| view.status_of.get(job_id).cloned())
                    .unwrap_or_default(),
                phase: job.and_then(|j| j.phase.clone()),
                age_seconds: age.max(0.0) as u64,
                threshold_seconds: view.settle.as_secs(),
                since: obs.now - age.max(0.0),
                severity,
                action: Action::Alert,
                outcome: Outcome::None,
                message,
                artifacts: Vec::new(),
                evidence: None,
                incident: None,
                worker: job.and_then(|j| owner(j, worker_of(j, obs.workers))),
                host: job.and_then(|j| j.host.clone()),
                pid: job.and_then(|j| j.pid),
                guard: job
                    .map(|j| guard_of(j, worker_of(j, obs.workers)))
                    .unwrap_or_default(),
                progress: job.and_then(|j| j.progress.clone()),
                held: None,
            }
        };
    let mut ids: Vec<&String> = view.files.keys().collect();
    ids.sort();
    for id in ids {
        let files = &view.files[id];
        // A partial file nobody has touched for `settle`: its writer is gone.
        let stale_partials: Vec<&ArtifactFile> = files
            .iter()
            .filter(|f| f.partial && f.age >= settle)
            .collect();
        if let Some(first) = stale_partials.first() {
            let more = if stale_partials.len() > 1 {
                format!(" (and {} more)", stale_partials.len() - 1)
            } else {
                String::new()
            };
            let mut f = base(
                id,
                Kind::IncompleteArtifact,
                Severity::Warning,
                first.age,
                format!(
                    "partial file {} unchanged for {}{more}: its writer is gone",
                    first.path,
                    format_age(first.age)
                ),
            );
            f.artifacts = refs(&stale_partials);
            out.push(f);
        }
        let complete: Vec<&ArtifactFile> = files.iter().filter(|f| !f.partial).collect();
        let newest = complete.iter().map(|f| f.age).reduce(f64::min);
        if let (Some(job), Some(newest)) = (active.get(id.as_str()), newest) {
            // The report was written, then nothing: no heartbeat after the last write.
            let written_at = obs.now - newest;
            let quiet = job.heartbeat_since().is_ok_and(|beat| beat <= written_at);
            if newest >= settle && quiet {
                let severity = policy
                    .rules
                    .iter()
                    .find(|r| r.matches(job))
                    .map_or(Severity::Critical, |r| r.severity.max(Severity::Critical));
                let mut f = base(
                    id,
                    Kind::UnreportedArtifact,
                    severity,
                    newest,
                    format!(
                        "report written {} ago, status still {}",
                        format_age(newest),
                        job.status
                    ),
                );
                f.artifacts = refs(&complete);
                out.push(f);
            }
        }
        if view.unknown.contains(id.as_str())
            && !files.is_empty()
            && files.iter().all(|f| f.age >= settle)
        {
            let oldest = files.iter().map(|f| f.age).fold(0.0, f64::max);
            let mut f = base(
                id,
                Kind::OrphanArtifact,
                Severity::Warning,
                oldest,
                format!(
                    "output for job {id}, which the table does not have ({} file{})",
                    files.len(),
                    if files.len() == 1 { "" } else { "s" }
                ),
            );
            f.artifacts = refs(&files.iter().collect::<Vec<_>>());
            out.push(f);
        }
    }
    if view.required.is_empty() {
        return;
    }
    for (id, status, finished) in &view.succeeded {
        let age = obs.now - finished;
        if age < settle {
            continue;
        }
        let files = view.files.get(id).map(Vec::as_slice).unwrap_or_default();
        let missing: Vec<&str> = view
            .required
            .iter()
            .enumerate()
            .filter(|(i, _)| !files.iter().any(|f| !f.partial && f.required.contains(i)))
            .map(|(_, r)| r.as_str())
            .collect();
        if !missing.is_empty() {
            let mut f = base(
                id,
                Kind::MissingArtifact,
                Severity::Warning,
                age,
                format!(
                    "{status} {} ago without {}",
                    format_age(age),
                    missing.join(", ")
                ),
            );
            f.status = status.clone();
            f.artifacts = refs(&files.iter().collect::<Vec<_>>());
            out.push(f);
        }
    }
}

/// An operator reading a stalled job's message should first hear that its report exists.
fn outrank_stalled(findings: &mut [Finding]) {
    let unreported: HashMap<String, String> = findings
        .iter()
        .filter(|f| f.kind == Kind::UnreportedArtifact)
        .map(|f| (f.job_id.clone(), f.message.clone()))
        .collect();
    if unreported.is_empty() {
        return;
    }
    for f in findings.iter_mut().filter(|f| f.kind == Kind::Stalled) {
        if let Some(m) = unreported.get(&f.job_id) {
            f.message = format!("{m}; {}", f.message);
        }
    }
}

/// A moment as a person reads it beside `now`: `13:39 UTC` on the same day, else with its date.
fn clock(at: f64, now: f64) -> String {
    let day = |t: f64| chrono::DateTime::<chrono::Utc>::from_timestamp(t.floor() as i64, 0);
    match (day(at), day(now)) {
        (Some(a), Some(n)) if a.date_naive() == n.date_naive() => a.format("%H:%M UTC").to_string(),
        (Some(a), _) => a.format("%Y-%m-%d %H:%M UTC").to_string(),
        (None, _) => crate::core::job::rfc3339(at),
    }
}

/// Whole seconds, humantime style: `31m 40s`.
pub fn format_age(seconds: f64) -> String {
    humantime::format_duration(Duration::from_secs(seconds.max(0.0) as u64)).to_string()
}

/// `web-1` and `web-1.example.com` are the same host; case does not matter.
pub(crate) fn same_host(a: &str, b: &str) -> bool {
    let short = |h: &str| h.split('.').next().unwrap_or(h).to_ascii_lowercase();
    a.eq_ignore_ascii_case(b) || short(a) == short(b)
}

/// Numbers in numeric order (`9` before `10`), anything else as text.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<i128>(), b.parse::<i128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Counts active rows per status class and per status word.
pub fn count_active(jobs: &[JobRow], statuses: &Statuses) -> ActiveCounts {
    let mut counts = ActiveCounts::default();
    for job in jobs {
        if let Some(class) = statuses.class_of(&job.status) {
            *counts.by_class.entry(class).or_default() += 1;
        }
        *counts.by_status.entry(job.status.clone()).or_default() += 1;
    }
    counts
}

/// Active rows per class and per word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveCounts {
    pub by_class: std::collections::BTreeMap<StatusClass, u64>,
    pub by_status: std::collections::BTreeMap<String, u64>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::job::rfc3339;

    const NOW: f64 = 1_767_225_600.0;
    const MIN: f64 = 60.0;

    fn statuses() -> Statuses {
        Statuses {
            pending: vec!["queued".into()],
            running: vec!["running".into()],
            succeeded: vec!["completed".into()],
            failed: vec!["failed".into()],
            cancelled: vec!["cancelled".into()],
        }
    }

    pub(crate) fn rule(name: &str, signal: Signal, after_min: u64) -> Rule {
        Rule {
            name: name.into(),
            statuses: vec!["running".into()],
            signal,
            after: Duration::from_secs(after_min * 60),
            phases: None,
            action: Action::Fail,
            severity: Severity::Critical,
        }
    }

    /// A running job created an hour ago that beat `beat_min_ago` minutes ago.
    fn job(id: &str, beat_min_ago: Option<f64>) -> JobRow {
        JobRow {
            created_at: Stamp::At(NOW - 60.0 * MIN),
            heartbeat_at: beat_min_ago.map_or(Stamp::Missing, |m| Stamp::At(NOW - m * MIN)),
            ..JobRow::new(id, "running")
        }
    }

    struct Scenario {
        jobs: Vec<JobRow>,
        relatives: Vec<Relative>,
        rules: Vec<Rule>,
        dead: BTreeSet<i64>,
        older_than: Option<OlderThan>,
        liveness: Liveness,
        now: f64,
        artifacts: Vec<ArtifactView>,
        workers: Option<HashMap<String, WorkerBeat>>,
    }

    fn scenario(jobs: Vec<JobRow>, rules: Vec<Rule>) -> Scenario {
        Scenario {
            jobs,
            relatives: vec![],
            rules,
            dead: BTreeSet::new(),
            older_than: None,
            liveness: Liveness {
                heartbeat: true,
                progress: false,
            },
            now: NOW,
            artifacts: vec![],
            workers: None,
        }
    }

    /// Runs a scenario by the reference (every row judged in full), and by the two-tier
    /// read from a copy of the memory (light rows without phase or guard, then only the
    /// picked rows in full), and asserts that both say the same. (The light read's progress
    /// is a digest of the value; the copy's memory holds the reference's fingerprints, so
    /// the value is kept here.)
    fn run(s: &Scenario, memory: &mut Memory) -> Detected {
        let statuses = statuses();
        let obs = Observation {
            now: s.now,
            jobs: &s.jobs,
            all: &s.jobs,
            relatives: &s.relatives,
            local_host: "web-1",
            dead_pids: &s.dead,
            artifacts: &s.artifacts,
            workers: s.workers.as_ref(),
        };
        let policy = Policy {
            rules: &s.rules,
            statuses: &statuses,
            older_than: s.older_than,
            liveness: s.liveness,
        };
        let mut two_tier = memory.clone();
        let reference = detect(&obs, &policy, memory);
        let light: Vec<JobRow> = s
            .jobs
            .iter()
            .map(|j| JobRow {
                phase: None,
                guard: Guard::default(),
                ..j.clone()
            })
            .collect();
        let first = Observation {
            jobs: &light,
            all: &light,
            ..obs
        };
        two_tier.observe(&light, s.now);
        let picked = crate::core::candidates::pick(&first, &policy, &two_tier);
        let full: Vec<JobRow> = s
            .jobs
            .iter()
            .filter(|j| picked.contains(&j.id))
            .cloned()
            .collect();
        let second = Observation {
            jobs: &full,
            all: &light,
            ..obs
        };
        let got = judge(&second, &policy, &two_tier);
        assert_eq!(
            got, reference,
            "the two-tier read differs from the reference"
        );
        reference
    }

    /// Runs a scenario once and compares `(job, kind, rule)` of each finding.
    fn check(s: Scenario, expected: &[(&str, Kind, &str)]) -> Detected {
        let got = run(&s, &mut Memory::default());
        let summary: Vec<_> = got
            .findings
            .iter()
            .map(|f| (f.job_id.as_str(), f.kind, f.rule.as_str()))
            .collect();
        assert_eq!(
            summary,
            expected,
            "messages: {:?}",
            got.findings.iter().map(|f| &f.message).collect::<Vec<_>>()
        );
        got
    }

    #[test]
    fn healthy_jobs_are_left_alone() {
        check(
            scenario(
                vec![job("1", Some(1.0)), job("2", Some(29.0))],
                vec![rule("hb", Signal::Heartbeat, 30)],
            ),
            &[],
        );
    }

    #[test]
    fn stalled_heartbeat_is_found_with_the_spec_message() {
        let mut j = job("42", None);
        j.heartbeat_at = Stamp::At(NOW - 1900.0);
        j.phase = Some("designing".into());
        let got = check(
            scenario(
                vec![j],
                vec![rule("stalled-heartbeat", Signal::Heartbeat, 30)],
            ),
            &[("42", Kind::Stalled, "stalled-heartbeat")],
        );
        let f = &got.findings[0];
        assert_eq!(f.message, "no heartbeat for 31m 40s (limit 30m)");
        assert_eq!((f.age_seconds, f.threshold_seconds), (1900, 1800));
        assert_eq!(rfc3339(f.since), "2025-12-31T23:28:20Z");
        assert_eq!(f.outcome, Outcome::None);
        assert_eq!(f.phase.as_deref(), Some("designing"));
    }

    #[test]
    fn exactly_at_the_limit_is_not_stalled() {
        check(
            scenario(
                vec![job("1", Some(30.0))],
                vec![rule("hb", Signal::Heartbeat, 30)],
            ),
            &[],
        );
        check(
            scenario(
                vec![job("1", Some(30.02))],
                vec![rule("hb", Signal::Heartbeat, 30)],
            ),
            &[("1", Kind::Stalled, "hb")],
        );
    }

    #[test]
    fn no_heartbeat_yet_falls_back_to_created_at() {
        // Created 60 minutes ago, never beat.
        check(
            scenario(
                vec![job("1", None)],
                vec![rule("hb", Signal::Heartbeat, 45)],
            ),
            &[("1", Kind::Stalled, "hb")],
        );
        check(
            scenario(
                vec![job("1", None)],
                vec![rule("hb", Signal::Heartbeat, 90)],
            ),
            &[],
        );
    }

    #[test]
    fn null_or_bad_timestamps_warn_and_never_find() {
        let mut a = job("1", None);
        a.created_at = Stamp::Missing;
        let mut b = job("2", None);
        b.heartbeat_at = Stamp::Invalid("soon".into());
        let mut c = job("3", None);
        c.created_at = Stamp::Invalid("x".into());
        let got = check(
            scenario(
                vec![a, b, c],
                vec![
                    rule("hb", Signal::Heartbeat, 1),
                    rule("old", Signal::Created, 1),
                ],
            ),
            // Job 2's bad heartbeat does not hide its valid created_at from the created rule.
            // Job 1 has no date at all: the scan that first sees it dates it (next test).
            &[("2", Kind::Overdue, "old")],
        );
        let messages: Vec<_> = got
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.job_id.as_deref().unwrap_or("-"), w.message))
            .collect();
        assert_eq!(
            messages,
            [
                "2: heartbeat `soon` is not a timestamp; rule `hb` skipped",
                "3: no heartbeat yet and created_at `x` is not a timestamp; rule `hb` skipped",
                "3: created_at `x` is not a timestamp; rule `old` skipped",
            ]
        );
    }

    #[test]
    fn a_row_with_no_creation_time_is_judged_from_its_first_sight() {
        // A Celery task running at jobwarden's first scan: `date_done` (its created_at here)
        // is NULL until it ends, and it has no heartbeat column value.
        let mut started = job("1", None);
        started.created_at = Stamp::Missing;
        let rules = vec![
            rule("hb", Signal::Heartbeat, 10),
            rule("old", Signal::Created, 20),
        ];
        let mut memory = Memory::default();
        let first = run(&scenario(vec![started.clone()], rules.clone()), &mut memory);
        assert_eq!(first.findings, vec![]);
        assert_eq!(first.warnings, vec![], "dated, not skipped");
        let mut later = scenario(vec![started], rules);
        later.now = NOW + 25.0 * MIN;
        let got = run(&later, &mut memory);
        let messages: Vec<_> = got.findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "no heartbeat for 25m (limit 10m; counted from the scan that first saw it: the row has no heartbeat and no creation time)",
                "running for 25m (limit 20m; counted from the scan that first saw it: the row has no creation time)",
            ]
        );
        assert_eq!(got.findings[0].since, NOW);
    }

    #[test]
    fn a_memory_saved_before_undated_rows_were_dated_dates_them_now() {
        let mut started = job("1", None);
        started.created_at = Stamp::Missing;
        let mut memory: Memory = serde_json::from_str(
            r#"{"scope": "", "last_scan": 1767225000.0, "jobs": {"1": {"status": "running",
                "entered": null, "source": "first_scan", "progress": null,
                "progress_since": 1767225000.0}}}"#,
        )
        .unwrap();
        let rules = vec![rule("old", Signal::Created, 20)];
        let got = run(&scenario(vec![started.clone()], rules.clone()), &mut memory);
        assert_eq!(got.warnings, vec![], "no longer skipped");
        let mut later = scenario(vec![started], rules);
        later.now = NOW + 21.0 * MIN;
        assert_eq!(run(&later, &mut memory).findings.len(), 1);
    }

    /// A memory that scanned ten minutes ago, when job `1` was not active.
    fn warm_memory() -> Memory {
        let mut memory = Memory::default();
        memory.observe(&[], NOW - 10.0 * MIN);
        memory
    }

    #[test]
    fn a_job_first_seen_late_shows_its_row_evidence_beside_the_judged_age() {
        // Running for a long time with its last heartbeat two hours ago, but first seen now
        // by a daemon that scanned before: judged from this sight, never from before it.
        let mut memory = warm_memory();
        let silent = job("1", Some(123.0));
        let rules = vec![rule("hb", Signal::Heartbeat, 2)];
        let first = run(&scenario(vec![silent.clone()], rules.clone()), &mut memory);
        assert_eq!(first.findings, vec![]);
        assert_eq!(
            first.late,
            vec!["1".to_string()],
            "named as first seen late"
        );
        let mut s = scenario(vec![silent], rules);
        s.now = NOW + 127.0;
        let got = run(&s, &mut memory);
        let f = &got.findings[0];
        assert_eq!(
            f.message,
            "no heartbeat since 2025-12-31 21:57 UTC (2h 5m 7s ago); watched running for 2m 7s (limit 2m)"
        );
        assert_eq!(f.age_seconds, 127, "the judged age stays conservative");
        assert_eq!(
            f.evidence,
            Some(Evidence {
                signal_age_seconds: 123 * 60 + 127,
                signal_at: NOW - 123.0 * MIN,
            })
        );
        let json = serde_json::to_value(f).unwrap();
        assert_eq!(json["signal_age_seconds"], 123 * 60 + 127);
        assert_eq!(json["signal_at"], "2025-12-31T21:57:00Z");
        assert!(got.late.is_empty(), "flagged now, so no longer only late");
    }

    #[test]
    fn moments_read_with_their_date_only_on_another_day() {
        assert_eq!(
            clock(NOW + 13.0 * 3600.0 + 39.0 * MIN, NOW + 15.0 * 3600.0),
            "13:39 UTC"
        );
        assert_eq!(clock(NOW - MIN, NOW), "2025-12-31 23:59 UTC");
    }

    #[test]
    fn a_finding_that_shows_all_there_is_carries_no_evidence() {
        let got = check(
            scenario(
                vec![job("1", Some(40.0))],
                vec![rule("hb", Signal::Heartbeat, 30)],
            ),
            &[("1", Kind::Stalled, "hb")],
        );
        assert_eq!(got.findings[0].evidence, None);
        let json = serde_json::to_value(&got.findings[0]).unwrap();
        assert!(json.get("signal_at").is_none() && json.get("signal_age_seconds").is_none());
    }

    #[test]
    fn evidence_older_than_a_requeue_or_the_status_column_is_said_too() {
        let mut memory = Memory::default();
        let hung = job("1", Some(30.0));
        let rules = vec![rule("hb", Signal::Heartbeat, 5)];
        run(&scenario(vec![hung.clone()], rules.clone()), &mut memory);
        memory.requeued("1", "running", NOW);
        let mut s = scenario(vec![hung.clone()], rules.clone());
        s.now = NOW + 6.0 * MIN;
        let got = run(&s, &mut memory);
        assert_eq!(
            got.findings[0].message,
            "no heartbeat since 2025-12-31 23:30 UTC (36m ago); re-queued by jobwarden 6m ago (limit 5m)"
        );
        let mut since_column = hung;
        since_column.status_since = Stamp::At(NOW - 10.0 * MIN);
        let got = check(
            scenario(vec![since_column], rules),
            &[("1", Kind::Stalled, "hb")],
        );
        assert_eq!(
            got.findings[0].message,
            "no heartbeat since 2025-12-31 23:30 UTC (30m ago); running for 10m (limit 5m)"
        );
        assert!(
            got.late.is_empty(),
            "the column dates it: not a first sight"
        );
    }

    #[test]
    fn created_signal_makes_overdue() {
        let got = check(
            scenario(
                vec![job("1", Some(0.0))],
                vec![rule("old", Signal::Created, 30)],
            ),
            &[("1", Kind::Overdue, "old")],
        );
        assert_eq!(
            got.findings[0].message,
            "running for 1h (limit 30m; counted from created_at: the first scan to see this job)"
        );
        // A memory that has scanned before knows better than created_at.
        let mut memory = Memory::default();
        let mut first = scenario(vec![], vec![rule("old", Signal::Created, 30)]);
        first.now = NOW - 45.0 * MIN;
        run(&first, &mut memory);
        let later = run(
            &scenario(
                vec![job("1", Some(0.0))],
                vec![rule("old", Signal::Created, 30)],
            ),
            &mut memory,
        );
        assert_eq!(
            later.findings,
            vec![],
            "it entered its status since the last scan"
        );
    }

    #[test]
    fn first_matching_rule_per_signal_wins_in_file_order() {
        let mut training = rule("training-slow", Signal::Heartbeat, 360);
        training.phases = Some(vec!["training".into()]);
        training.action = Action::Alert;
        let generic = rule("hb", Signal::Heartbeat, 10);
        let mut t = job("1", Some(50.0));
        t.phase = Some("training".into());
        let mut d = job("2", Some(50.0));
        d.phase = Some("designing".into());
        let no_phase = job("3", Some(50.0));
        check(
            scenario(vec![t, d, no_phase], vec![training, generic]),
            &[("2", Kind::Stalled, "hb"), ("3", Kind::Stalled, "hb")],
        );
    }

    #[test]
    fn a_progress_rule_is_not_hidden_by_a_heartbeat_rule() {
        let mut j = job("1", Some(50.0));
        j.progress = Some("[\"a\"]".into());
        check(
            scenario(
                vec![j],
                vec![
                    rule("hb", Signal::Heartbeat, 30),
                    rule("prog", Signal::Progress, 40),
                ],
            ),
            &[("1", Kind::Stalled, "hb"), ("1", Kind::Stalled, "prog")],
        );
    }

    #[test]
    fn rules_only_watch_their_statuses() {
        let mut q = job("1", Some(500.0));
        q.status = "queued".into();
        let mut done = job("2", Some(500.0));
        done.status = "completed".into();
        check(
            scenario(vec![q, done], vec![rule("hb", Signal::Heartbeat, 1)]),
            &[],
        );
    }

    #[test]
    fn progress_memory_dates_changes_across_scans() {
        let rules = vec![rule("prog", Signal::Progress, 10)];
        let mut memory = Memory::default();
        let at = |minutes: f64, progress: &str| {
            let mut j = job("7", Some(0.0));
            j.heartbeat_at = Stamp::At(NOW + minutes * MIN); // a busy heartbeat, always fresh
            j.progress = Some(progress.into());
            let mut s = scenario(vec![j], rules.clone());
            s.now = NOW + minutes * MIN;
            s
        };
        let found = |d: Detected| d.findings.len();
        assert_eq!(found(run(&at(0.0, "1"), &mut memory)), 0);
        assert_eq!(found(run(&at(9.0, "1"), &mut memory)), 0);
        assert_eq!(
            found(run(&at(11.0, "1"), &mut memory)),
            1,
            "unchanged for 11m"
        );
        assert_eq!(found(run(&at(12.0, "2"), &mut memory)), 0, "it moved");
        assert_eq!(found(run(&at(21.0, "2"), &mut memory)), 0);
        let late = run(&at(22.5, "2"), &mut memory);
        assert_eq!(
            late.findings[0].message,
            "no progress for 10m 30s (limit 10m)"
        );
        assert_eq!(memory.len(), 1);
        // A job that left the active set is forgotten.
        run(&scenario(vec![], rules.clone()), &mut memory);
        assert!(memory.is_empty());
    }

    #[test]
    fn first_sight_of_progress_is_dated_by_the_heartbeat() {
        let mut j = job("1", Some(45.0));
        j.progress = Some("3".into());
        check(
            scenario(vec![j.clone()], vec![rule("prog", Signal::Progress, 30)]),
            &[("1", Kind::Stalled, "prog")],
        );
        // Without a heartbeat, a first sight proves nothing yet.
        j.heartbeat_at = Stamp::Missing;
        check(
            scenario(vec![j], vec![rule("prog", Signal::Progress, 30)]),
            &[],
        );
    }

    fn older_than(minutes: u64, force: bool) -> Option<OlderThan> {
        Some(OlderThan {
            after: Duration::from_secs(minutes * 60),
            force,
        })
    }

    #[test]
    fn older_than_overrides_the_rules_by_liveness() {
        // Both created an hour ago; job 1 has been silent for 40 minutes, job 2 beat just now.
        let mut s = scenario(vec![job("1", Some(40.0)), job("2", Some(0.0))], vec![]);
        s.older_than = older_than(30, false);
        let got = check(s, &[("1", Kind::Overdue, OLDER_THAN_RULE)]);
        assert_eq!(got.findings[0].action, Action::Fail);
        assert_eq!(got.findings[0].message, "no heartbeat for 40m (limit 30m)");
    }

    #[test]
    fn older_than_without_a_heartbeat_uses_time_in_status() {
        let mut s = scenario(vec![job("1", None), job("2", None)], vec![]);
        s.jobs[1].status_since = Stamp::At(NOW - 10.0 * MIN);
        s.liveness = Liveness::default();
        s.older_than = older_than(30, false);
        let got = check(s, &[("1", Kind::Overdue, OLDER_THAN_RULE)]);
        assert!(
            got.findings[0]
                .message
                .starts_with("running for 1h (limit 30m"),
            "{}",
            got.findings[0].message
        );
    }

    #[test]
    fn older_than_never_writes_alert_only_rows_unless_forced() {
        let mut worker = rule("worker", Signal::Heartbeat, 360);
        worker.phases = Some(vec!["training".into()]);
        worker.action = Action::Alert;
        let mut t = job("1", Some(120.0));
        t.phase = Some("training".into());
        let mut s = scenario(vec![t], vec![worker]);
        s.older_than = older_than(60, false);
        let got = check(s, &[("1", Kind::Overdue, OLDER_THAN_RULE)]);
        assert_eq!(got.findings[0].action, Action::Alert);
        assert!(got.findings[0].message.contains("without --force"));
        let mut s = scenario(
            got.findings.iter().map(|_| job("1", Some(120.0))).collect(),
            vec![],
        );
        s.jobs[0].phase = Some("training".into());
        let mut worker = rule("worker", Signal::Heartbeat, 360);
        worker.phases = Some(vec!["training".into()]);
        worker.action = Action::Alert;
        s.rules = vec![worker];
        s.older_than = older_than(60, true);
        let forced = check(s, &[("1", Kind::Overdue, OLDER_THAN_RULE)]);
        assert_eq!(forced.findings[0].action, Action::Fail);
    }

    #[test]
    fn a_requeued_job_counts_from_the_requeue() {
        let mut pending = rule("pending-too-long", Signal::Created, 10);
        pending.statuses = vec!["queued".into()];
        let rules = vec![pending, rule("hb", Signal::Heartbeat, 20)];
        let mut memory = Memory::default();
        // Scan 1: running, silent for 30 minutes: stalled.
        let hung = job("1", Some(30.0));
        let got = run(&scenario(vec![hung.clone()], rules.clone()), &mut memory);
        assert_eq!(got.findings.len(), 1);
        memory.requeued("1", "queued", NOW + 1.0);
        // Scan 2, a minute later: queued since the requeue, not since created_at an hour ago.
        let mut queued = hung;
        queued.status = "queued".into();
        let mut s = scenario(vec![queued.clone()], rules.clone());
        s.now = NOW + MIN;
        assert_eq!(run(&s, &mut memory).findings, vec![]);
        // Scan 3, 12 minutes after the requeue and nobody picked it up: now it is overdue.
        let mut s = scenario(vec![queued], rules);
        s.now = NOW + 1.0 + 12.0 * MIN;
        let late = run(&s, &mut memory);
        assert_eq!(late.findings[0].message, "queued for 12m (limit 10m)");
    }

    #[test]
    fn timestamps_ahead_of_the_clock_warn_and_are_never_judged() {
        let mut ahead = job("1", None);
        ahead.heartbeat_at = Stamp::At(NOW + 5.0 * 3600.0);
        let mut ok = job("2", Some(50.0));
        ok.created_at = Stamp::At(NOW - 55.0 * MIN);
        let got = check(
            scenario(
                vec![ahead.clone(), ok],
                vec![rule("hb", Signal::Heartbeat, 30)],
            ),
            &[("2", Kind::Stalled, "hb")],
        );
        assert_eq!(
            got.warnings[0].message,
            "heartbeat_at is 5h ahead of the database clock: check `[database] timezone` (or the clock of whoever writes it); not judged"
        );
        assert_eq!(got.suspicion, None, "one row of two is not most rows");
        // Most rows in the future: the zone is the likely cause, said once.
        let got = check(
            scenario(
                vec![ahead.clone(), ahead.clone(), job("3", Some(1.0))],
                vec![rule("hb", Signal::Heartbeat, 30)],
            ),
            &[],
        );
        let s = got.suspicion.unwrap();
        assert!(
            s.starts_with("2 of 3 active rows have timestamps about 5h ahead"),
            "{s}"
        );
        assert_eq!(got.warnings[0].job_id, None);
        assert!(got.suspicion_holds, "rows ahead hold every write back");
    }

    #[test]
    fn every_row_stuck_by_a_zone_offset_holds_writes_with_the_zones_advice() {
        // New York rows read as UTC: a job that beat 2 s ago looks 5 h old, and one that
        // died 10 minutes ago looks 5 h 10 m old.
        let rules = vec![rule("hb", Signal::Heartbeat, 30)];
        let mut live = job("1", None);
        live.heartbeat_at = Stamp::At(NOW - 5.0 * 3600.0 - 2.0);
        live.created_at = Stamp::At(NOW - 6.0 * 3600.0);
        let mut dead = live.clone();
        dead.id = "2".into();
        dead.heartbeat_at = Stamp::At(NOW - 5.0 * 3600.0 - 10.0 * MIN);
        let got = check(
            scenario(vec![live.clone(), dead.clone()], rules.clone()),
            &[("1", Kind::Stalled, "hb"), ("2", Kind::Stalled, "hb")],
        );
        assert!(got.suspicion_holds);
        assert_eq!(
            got.suspicion.as_deref(),
            Some(
                "every active row (2) looks older than its rule, and the newest heartbeat is 5h 0m \
                 old: rows look written in UTC-5; set `[database] timezone`; nothing is written \
                 until this clears (or `recover --force`)"
            )
        );
        // Two jobs that really died 5 h 10 m and 5 h 20 m ago are not a zone offset.
        let mut older = dead.clone();
        older.id = "3".into();
        older.heartbeat_at = Stamp::At(NOW - 5.0 * 3600.0 - 20.0 * MIN);
        let got = check(
            scenario(vec![dead, older], rules.clone()),
            &[("2", Kind::Stalled, "hb"), ("3", Kind::Stalled, "hb")],
        );
        assert!(!got.suspicion_holds);
        assert_eq!(got.suspicion, None);
        // One row a round number of hours old is as likely a job that died then.
        let got = check(
            scenario(vec![live.clone()], rules.clone()),
            &[("1", Kind::Stalled, "hb")],
        );
        assert!(!got.suspicion_holds, "one row is no pattern");
        // One live row beating now: not every row is stuck, nothing is held.
        let got = check(
            scenario(vec![live, job("2", Some(0.1))], rules),
            &[("1", Kind::Stalled, "hb")],
        );
        assert!(!got.suspicion_holds);
    }

    #[test]
    fn ages_near_a_whole_or_half_hour_look_like_zone_offsets() {
        assert_eq!(zone_offset(5.0 * 3600.0 + 2.0), Some(300));
        assert_eq!(
            zone_offset(5.0 * 3600.0 - 30.0),
            Some(300),
            "a clock a little ahead"
        );
        assert_eq!(zone_offset(3.5 * 3600.0 + 150.0), Some(210));
        assert_eq!(zone_offset(5.0 * 3600.0 + 10.0 * MIN), None);
        assert_eq!(zone_offset(20.0 * MIN), None, "not an hour");
        assert_eq!(
            zone_offset(13.0 * 3600.0),
            None,
            "no zone is 13 h west of UTC"
        );
        assert_eq!(
            zone_advice(3.5 * 3600.0 + 5.0).as_deref(),
            Some("the newest heartbeat is 3h 30m old: rows look written in UTC-3:30; set `[database] timezone`")
        );
    }

    #[test]
    fn every_row_stuck_at_once_is_suspicious() {
        let rules = vec![rule("hb", Signal::Heartbeat, 30)];
        let all = check(
            scenario(
                vec![
                    job("1", Some(40.0)),
                    job("2", Some(40.0)),
                    job("3", Some(40.0)),
                ],
                rules.clone(),
            ),
            &[
                ("1", Kind::Stalled, "hb"),
                ("2", Kind::Stalled, "hb"),
                ("3", Kind::Stalled, "hb"),
            ],
        );
        assert!(all
            .suspicion
            .unwrap()
            .starts_with("all 3 active rows look older"));
        assert!(
            !all.suspicion_holds,
            "a pool can die at once: a warning only"
        );
        let some = check(
            scenario(
                vec![
                    job("1", Some(40.0)),
                    job("2", Some(40.0)),
                    job("3", Some(1.0)),
                ],
                rules,
            ),
            &[("1", Kind::Stalled, "hb"), ("2", Kind::Stalled, "hb")],
        );
        assert_eq!(some.suspicion, None);
    }

    fn beat(minutes_ago: Option<f64>) -> WorkerBeat {
        WorkerBeat {
            heartbeat_at: minutes_ago.map_or(Stamp::Missing, |m| Stamp::At(NOW - m * MIN)),
            heartbeat_text: minutes_ago.map(|m| format!("{m} minutes ago")),
            host: Some("worker-host".into()),
            pid: Some("4242".into()),
        }
    }

    #[test]
    fn a_job_with_a_worker_lives_by_its_workers_beat() {
        let with = |id: &str, own: Option<f64>, worker: Option<&str>| JobRow {
            worker: worker.map(str::to_string),
            ..job(id, own)
        };
        let mut s = scenario(
            vec![
                // The worker went silent 45m ago; the job has no beat of its own.
                with("1", None, Some("17")),
                // A live worker keeps a job whose own heartbeat is old.
                with("2", Some(50.0), Some("18")),
                // The worker row is gone: the job's own heartbeat judges it.
                with("3", Some(40.0), Some("19")),
                with("4", Some(5.0), Some("20")),
                // No worker: the job's own heartbeat, as without [workers].
                with("5", Some(2.0), None),
                with("6", Some(45.0), None),
                // A worker row whose heartbeat is not a timestamp: warned about, not judged.
                with("7", Some(1.0), Some("21")),
                // A worker that has not beaten yet: the job's own signals (created 1h ago).
                with("8", None, Some("22")),
                // No time of its own at all (procrastinate): found on the first scan that
                // sees it, by its worker's silence.
                JobRow {
                    created_at: Stamp::Missing,
                    ..with("9", None, Some("17"))
                },
            ],
            vec![rule("hb", Signal::Heartbeat, 30)],
        );
        let mut bad = beat(None);
        bad.heartbeat_at = Stamp::Invalid("soon".into());
        s.workers = Some(
            [
                ("17", beat(Some(45.0))),
                ("18", beat(Some(1.0))),
                ("21", bad),
                ("22", beat(None)),
            ]
            .into_iter()
            .map(|(id, b)| (id.to_string(), b))
            .collect(),
        );
        let got = check(
            s,
            &[
                ("1", Kind::Stalled, "hb"),
                ("3", Kind::Stalled, "hb"),
                ("6", Kind::Stalled, "hb"),
                ("8", Kind::Stalled, "hb"),
                ("9", Kind::Stalled, "hb"),
            ],
        );
        let by = |id: &str| got.findings.iter().find(|f| f.job_id == id).unwrap();
        assert_eq!(by("9").age_seconds, 45 * 60);
        assert_eq!(
            by("1").message,
            format!(
                "worker 17 last beat at {} (45m ago; limit 30m)",
                clock(NOW - 45.0 * MIN, NOW)
            )
        );
        assert_eq!(by("1").age_seconds, 45 * 60);
        assert_eq!(
            by("3").message,
            "worker 19 is gone; no heartbeat for 40m (limit 30m)"
        );
        assert_eq!(by("8").age_seconds, 60 * 60);
        assert_eq!(
            got.warnings,
            vec![Warning {
                job_id: Some("7".into()),
                message: "worker 21's heartbeat `soon` is not a timestamp; rule `hb` skipped"
                    .into()
            }]
        );
        // The owner is in the finding's JSON, with what its row shows; none without a worker.
        let json = |id: &str| serde_json::to_value(by(id)).unwrap();
        assert_eq!(
            json("1")["worker"],
            serde_json::json!({"id": "17", "gone": false,
                "heartbeat_at": crate::core::job::rfc3339(NOW - 45.0 * MIN),
                "host": "worker-host", "pid": 4242})
        );
        assert_eq!(
            json("3")["worker"],
            serde_json::json!({"id": "19", "gone": true})
        );
        assert!(json("6").get("worker").is_none());
        // The guarded write compares the worker's row as the judgement saw it.
        assert_eq!(
            by("1").guard.worker_row,
            Some(WorkerSeen::Beat {
                id: "17".into(),
                heartbeat: Some("45 minutes ago".into())
            })
        );
        assert_eq!(
            by("3").guard.worker_row,
            Some(WorkerSeen::Gone { id: "19".into() })
        );
        assert_eq!(
            by("8").guard.worker_row,
            Some(WorkerSeen::Beat {
                id: "22".into(),
                heartbeat: None
            })
        );
        assert_eq!(by("6").guard.worker_row, None);
    }

    #[test]
    fn the_owner_columns_alone_are_shown_and_judge_nothing() {
        // `[jobs] worker`, `host` and `pid` without `[workers]`: the row's owner, as read.
        let mut owned = job("1", Some(40.0));
        owned.worker = Some("worker-7:abc".into());
        (owned.host, owned.pid) = (Some("web-2".into()), Some(4242));
        let mut alive = job("2", Some(1.0));
        alive.worker = Some("worker-7:abc".into());
        let got = check(
            scenario(vec![owned, alive], vec![rule("hb", Signal::Heartbeat, 30)]),
            &[("1", Kind::Stalled, "hb")],
        );
        let f = &got.findings[0];
        assert_eq!(
            f.message, "no heartbeat for 40m (limit 30m)",
            "its own signals"
        );
        assert_eq!(f.guard.worker_row, None, "no worker row to guard by");
        let json = serde_json::to_value(f).unwrap();
        assert_eq!(json["worker"], serde_json::json!({"id": "worker-7:abc"}));
        assert_eq!(
            (&json["host"], &json["pid"]),
            (&serde_json::json!("web-2"), &serde_json::json!(4242))
        );
        assert_eq!(
            owner_words(f.worker.as_ref(), f.host.as_deref(), f.pid).as_deref(),
            Some("worker worker-7:abc; the row's host web-2, pid 4242")
        );
        assert_eq!(
            owner_words(None, Some("web-2"), None).as_deref(),
            Some("host web-2")
        );
        assert_eq!(owner_words(None, None, None), None);
        // What a receiver reads back from the JSON is what was sent, but the beat's time.
        let back: Owner = serde_json::from_value(json["worker"].clone()).unwrap();
        assert_eq!(&back, f.worker.as_ref().unwrap());
    }

    #[test]
    fn older_than_measures_a_job_with_a_worker_by_its_workers_beat() {
        let with = |id: &str, own: Option<f64>, worker: &str| JobRow {
            worker: Some(worker.to_string()),
            ..job(id, own)
        };
        let mut s = scenario(
            vec![with("1", Some(1.0), "17"), with("2", Some(50.0), "18")],
            vec![],
        );
        s.older_than = older_than(20, false);
        s.workers = Some(
            [("17", beat(Some(25.0))), ("18", beat(Some(1.0)))]
                .into_iter()
                .map(|(id, b)| (id.to_string(), b))
                .collect(),
        );
        check(s, &[("1", Kind::Overdue, OLDER_THAN_RULE)]);
    }

    #[test]
    fn dead_local_process_is_found_at_once() {
        let mut here = job("1", Some(0.0));
        (here.pid, here.host) = (Some(4242), Some("WEB-1.example.com".into()));
        let mut elsewhere = job("2", Some(0.0));
        (elsewhere.pid, elsewhere.host) = (Some(4242), Some("web-2".into()));
        let mut alive = job("3", Some(0.0));
        (alive.pid, alive.host) = (Some(1), Some("web-1".into()));
        let mut s = scenario(
            vec![here, elsewhere, alive],
            vec![rule("hb", Signal::Heartbeat, 30)],
        );
        s.dead.insert(4242);
        let got = check(s, &[("1", Kind::DeadProcess, "hb")]);
        assert_eq!(
            got.findings[0].action,
            Action::Fail,
            "the governing rule's action"
        );
        assert!(got.findings[0]
            .message
            .starts_with("process 4242 on WEB-1.example.com is gone"));
    }

    #[test]
    fn orphaned_children_and_parents() {
        let mut child = job("10", Some(0.0));
        child.parent_id = Some("1".into());
        let mut live_child = job("11", Some(0.0));
        live_child.parent_id = Some("2".into());
        let parent_with_done_kids = job("3", Some(0.0));
        let mut s = scenario(
            vec![
                child,
                live_child,
                parent_with_done_kids,
                job("2", Some(0.0)),
            ],
            vec![rule("hb", Signal::Heartbeat, 30)],
        );
        s.relatives = vec![
            Relative {
                id: "1".into(),
                status: "failed".into(),
                parent_id: None,
            },
            Relative {
                id: "30".into(),
                status: "completed".into(),
                parent_id: Some("3".into()),
            },
            Relative {
                id: "31".into(),
                status: "cancelled".into(),
                parent_id: Some("3".into()),
            },
        ];
        let got = check(
            s,
            &[
                ("3", Kind::OrphanedChild, "hb"),
                ("10", Kind::OrphanedChild, "hb"),
            ],
        );
        assert_eq!(
            got.findings[0].message,
            "all 2 children are finished, but the parent is still running"
        );
        assert_eq!(
            got.findings[0].action,
            Action::Alert,
            "a parent is never failed for this"
        );
        assert_eq!(
            got.findings[1].message,
            "parent 1 is failed, but this child is still running"
        );
        assert_eq!(got.findings[1].action, Action::Fail);
    }

    #[test]
    fn unknown_parent_or_no_rule() {
        let mut child = job("10", Some(0.0));
        child.parent_id = Some("404".into());
        check(scenario(vec![child.clone()], vec![]), &[]);
        let mut s = scenario(vec![child], vec![]);
        s.relatives = vec![Relative {
            id: "404".into(),
            status: "completed".into(),
            parent_id: None,
        }];
        let got = check(s, &[("10", Kind::OrphanedChild, BUILTIN_RULE)]);
        assert_eq!(got.findings[0].action, Action::Alert);
    }

    #[test]
    fn findings_sort_by_numeric_id() {
        let jobs = ["10", "9", "100"].map(|id| job(id, Some(60.0))).to_vec();
        check(
            scenario(jobs, vec![rule("hb", Signal::Heartbeat, 30)]),
            &[
                ("9", Kind::Stalled, "hb"),
                ("10", Kind::Stalled, "hb"),
                ("100", Kind::Stalled, "hb"),
            ],
        );
    }

    #[test]
    fn clock_ahead_of_the_rows_finds_nothing() {
        // A heartbeat "in the future" (skewed writer) has a negative age: never stalled.
        check(
            scenario(
                vec![job("1", Some(-30.0))],
                vec![rule("hb", Signal::Heartbeat, 1)],
            ),
            &[],
        );
    }

    fn file(path: &str, age_min: f64, partial: bool) -> ArtifactFile {
        ArtifactFile {
            path: path.into(),
            size: 10,
            age: age_min * MIN,
            partial,
            required: if path.ends_with("report.pdf") {
                vec![0]
            } else {
                vec![]
            },
        }
    }

    fn view(files: &[(&str, Vec<ArtifactFile>)]) -> ArtifactView {
        ArtifactView {
            name: "reports".into(),
            settle: Duration::from_secs(120),
            required: vec!["report.pdf".into()],
            files: files
                .iter()
                .map(|(id, f)| (id.to_string(), f.clone()))
                .collect(),
            ..ArtifactView::default()
        }
    }

    #[test]
    fn a_report_written_after_the_last_heartbeat_is_unreported() {
        // Beat 40m ago, report finished 35m ago: the status update never came.
        let mut v = view(&[
            ("1", vec![file("1/report.pdf", 35.0, false)]),
            ("2", vec![file("2/report.pdf", 35.0, false)]),
            ("3", vec![file("3/report.pdf", 1.0, false)]),
        ]);
        v.required.clear();
        let mut s = scenario(
            vec![
                job("1", Some(40.0)),
                job("2", Some(5.0)),
                job("3", Some(40.0)),
            ],
            vec![rule("hb", Signal::Heartbeat, 30)],
        );
        s.artifacts = vec![v];
        let got = check(
            s,
            &[
                ("1", Kind::Stalled, "hb"),
                ("1", Kind::UnreportedArtifact, "reports"),
                ("3", Kind::Stalled, "hb"),
            ],
        );
        assert_eq!(
            got.findings[1].message,
            "report written 35m ago, status still running"
        );
        assert_eq!(
            got.findings[1].artifacts,
            vec![ArtifactRef {
                path: "1/report.pdf".into(),
                size: 10
            }]
        );
        assert_eq!(
            got.findings[0].message,
            "report written 35m ago, status still running; no heartbeat for 40m (limit 30m)",
            "outranks stalled"
        );
    }

    #[test]
    fn settled_partials_orphans_and_missing_reports() {
        let mut v = view(&[
            ("1", vec![file("1/data.part", 5.0, true)]),
            ("2", vec![file("2/data.part", 1.0, true)]),
            ("77", vec![file("77/report.pdf", 10.0, false)]),
            ("78", vec![file("78/report.pdf", 0.5, false)]),
            ("9", vec![file("9/report.pdf", 60.0, false)]),
        ]);
        v.unknown = ["77".to_string(), "78".to_string()].into();
        v.succeeded = vec![
            ("8".into(), "completed".into(), NOW - 3600.0),
            ("9".into(), "completed".into(), NOW - 3600.0),
            ("10".into(), "completed".into(), NOW - 30.0),
        ];
        let mut s = scenario(vec![], vec![]);
        s.artifacts = vec![v];
        let got = check(
            s,
            &[
                ("1", Kind::IncompleteArtifact, "reports"),
                ("8", Kind::MissingArtifact, "reports"),
                ("77", Kind::OrphanArtifact, "reports"),
            ],
        );
        assert_eq!(
            got.findings[0].message,
            "partial file 1/data.part unchanged for 5m: its writer is gone"
        );
        assert_eq!(
            got.findings[1].message,
            "completed 1h ago without report.pdf"
        );
        assert_eq!(
            got.findings[2].message,
            "output for job 77, which the table does not have (1 file)"
        );
    }

    #[test]
    fn names_match_the_json() {
        for k in [
            Kind::Stalled,
            Kind::Overdue,
            Kind::DeadProcess,
            Kind::OrphanedChild,
            Kind::UnreportedArtifact,
            Kind::IncompleteArtifact,
            Kind::OrphanArtifact,
            Kind::MissingArtifact,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for o in [
            Outcome::None,
            Outcome::DryRun,
            Outcome::Applied,
            Outcome::Raced,
            Outcome::Limited,
            Outcome::Error,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for s in [Severity::Warning, Severity::Critical] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn counts_per_class_and_word() {
        let mut q = job("1", None);
        q.status = "queued".into();
        let c = count_active(&[q, job("2", None), job("3", None)], &statuses());
        assert_eq!(c.by_class.get(&StatusClass::Running), Some(&2));
        assert_eq!(c.by_class.get(&StatusClass::Pending), Some(&1));
        assert_eq!(c.by_status.get("queued"), Some(&1));
    }
}
