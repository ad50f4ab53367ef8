//! The vocabulary jobwarden judges in: the classes of status words, what a rule measures,
//! what it does and how loud it is; the shape of a jobs table (its columns and status words);
//! the rules and the safety limits, resolved. `config` builds these from the file; the core
//! reads them.

use std::time::Duration;

use serde::Deserialize;

use crate::core::sql::{Field, TableName};

/// The class of a status word: what jobwarden makes of the table's own vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusClass {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// What a rule measures the age of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Time since the heartbeat column moved (or since `created_at` before the first beat).
    Heartbeat,
    /// Time since the progress value last changed.
    Progress,
    /// Time since `created_at`.
    Created,
}

/// What to do about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Alert,
    Fail,
    Requeue,
}

/// How loud a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

/// `[safety]`: the limits that keep a watchdog from failing every job at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Safety {
    /// At most this many writes in one scan. Default 10.
    pub max_actions_per_scan: usize,
    /// When more than this fraction of active jobs would be written in one scan, write
    /// nothing and raise one `mass_stall` finding. Default 0.5; 1.0 turns it off.
    pub max_stuck_fraction: f64,
    /// The fraction guard applies from this many active jobs up. Default 10.
    pub min_active: usize,
    /// No write for a finding younger than this, whatever the rules or `--older-than` say.
    /// Default 1m.
    pub min_age: Duration,
    /// After the daemon starts, it only reports for this long. Default: one `interval`.
    pub startup_grace: Duration,
    /// The daemon writes only when a finding held, with the row unchanged, on this many
    /// consecutive scans. Default 2.
    pub confirm_scans: u32,
    /// At most this many jobs in one bulk action by a person (`POST /api/v1/jobs/fail`, ...).
    /// Default 10,000.
    pub max_bulk: usize,
}

impl Safety {
    pub const DEFAULT_MAX_ACTIONS_PER_SCAN: usize = 10;
    pub const DEFAULT_MAX_STUCK_FRACTION: f64 = 0.5;
    pub const DEFAULT_MIN_ACTIVE: usize = 10;
    pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(60);
    pub const DEFAULT_CONFIRM_SCANS: u32 = 2;
    pub const DEFAULT_MAX_BULK: usize = 10_000;

    /// The limits when `[safety]` says nothing; the startup grace is one `interval`.
    pub fn defaults(interval: Duration) -> Safety {
        Safety {
            max_actions_per_scan: Safety::DEFAULT_MAX_ACTIONS_PER_SCAN,
            max_stuck_fraction: Safety::DEFAULT_MAX_STUCK_FRACTION,
            min_active: Safety::DEFAULT_MIN_ACTIVE,
            min_age: Safety::DEFAULT_MIN_AGE,
            startup_grace: interval,
            confirm_scans: Safety::DEFAULT_CONFIRM_SCANS,
            max_bulk: Safety::DEFAULT_MAX_BULK,
        }
    }
}

/// `[jobs]`: the table and what its columns mean.
#[derive(Debug, Clone)]
pub struct Jobs {
    pub table: TableName,
    pub id: Field,
    pub status: Field,
    pub created_at: Field,
    pub heartbeat_at: Option<Field>,
    /// When the row entered its current status (`status_since`), when the table records it.
    pub status_since: Option<Field>,
    pub progress: Option<Field>,
    pub finished_at: Option<Field>,
    pub error: Option<Field>,
    /// The job's input or options (a JSON column, say), shown on its page; never read by a
    /// scan.
    pub payload: Option<Field>,
    pub parent_id: Option<Field>,
    pub phase: Option<Field>,
    pub pid: Option<Field>,
    pub host: Option<Field>,
    /// The job's worker (`worker`): shown in its findings as its owner (a lock's holder,
    /// say); with `[workers]`, an id of it, whose heartbeat is the job's.
    pub worker: Option<Field>,
    /// `[workers]`: the registry of worker processes, with `worker`.
    pub workers: Option<Workers>,
    /// A counter `requeue` bumps; once it reaches `max_attempts`, `requeue` fails instead.
    pub attempts: Option<Field>,
    /// Default 3.
    pub max_attempts: u32,
    pub where_sql: Option<String>,
    pub statuses: Statuses,
    /// `[writes.fail]` and `[writes.requeue]`: more columns each writing action sets.
    pub writes: super::writes::Writes,
}

/// `[workers]`: a table of worker processes with their own heartbeat (procrastinate, Solid
/// Queue, GoodJob, Oban, ...). A job whose `[jobs] worker` names a row of it is alive while
/// that row beats.
#[derive(Debug, Clone, PartialEq)]
pub struct Workers {
    pub table: TableName,
    pub id: Field,
    pub heartbeat_at: Field,
    pub host: Option<Field>,
    pub pid: Option<Field>,
}

/// `[jobs.statuses]`: the table's own words per class.
#[derive(Debug, Clone, Default)]
pub struct Statuses {
    pub pending: Vec<String>,
    pub running: Vec<String>,
    pub succeeded: Vec<String>,
    pub failed: Vec<String>,
    pub cancelled: Vec<String>,
}

/// One `[[rules]]` entry with its `after` resolved for the environment in use.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub statuses: Vec<String>,
    pub signal: Signal,
    pub after: Duration,
    pub phases: Option<Vec<String>>,
    pub action: Action,
    pub severity: Severity,
}

impl StatusClass {
    pub const ALL: [StatusClass; 5] = [
        StatusClass::Pending,
        StatusClass::Running,
        StatusClass::Succeeded,
        StatusClass::Failed,
        StatusClass::Cancelled,
    ];

    /// Pending and running jobs are the ones a scan watches.
    pub fn is_active(self) -> bool {
        matches!(self, StatusClass::Pending | StatusClass::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Pending => "pending",
            StatusClass::Running => "running",
            StatusClass::Succeeded => "succeeded",
            StatusClass::Failed => "failed",
            StatusClass::Cancelled => "cancelled",
        }
    }
}

impl Jobs {
    /// `max_attempts` when the file says nothing.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

    /// A `jobs` table with the default column names and these statuses, and nothing optional.
    pub fn with_statuses(statuses: Statuses) -> Jobs {
        let plain = |c: &str| Field {
            column: c.to_string(),
            path: vec![],
        };
        Jobs {
            table: TableName {
                schema: None,
                name: "jobs".into(),
            },
            id: plain("id"),
            status: plain("status"),
            created_at: plain("created_at"),
            heartbeat_at: None,
            status_since: None,
            progress: None,
            finished_at: None,
            error: None,
            payload: None,
            parent_id: None,
            phase: None,
            pid: None,
            host: None,
            worker: None,
            workers: None,
            attempts: None,
            max_attempts: Jobs::DEFAULT_MAX_ATTEMPTS,
            where_sql: None,
            statuses,
            writes: Default::default(),
        }
    }
}

impl Statuses {
    /// The words of one class.
    pub fn words(&self, class: StatusClass) -> &[String] {
        match class {
            StatusClass::Pending => &self.pending,
            StatusClass::Running => &self.running,
            StatusClass::Succeeded => &self.succeeded,
            StatusClass::Failed => &self.failed,
            StatusClass::Cancelled => &self.cancelled,
        }
    }

    /// The class of a word, if the config lists it.
    pub fn class_of(&self, word: &str) -> Option<StatusClass> {
        StatusClass::ALL
            .into_iter()
            .find(|&c| self.words(c).iter().any(|w| w == word))
    }

    /// Every word of the pending and running classes.
    pub fn active(&self) -> impl Iterator<Item = &str> {
        self.pending.iter().chain(&self.running).map(String::as_str)
    }

    /// The words of a per-status count that no class lists, most rows first, each with the
    /// listed word it differs from only by case or spaces (`Running` for `running`), if any.
    pub fn unlisted(&self, counts: &std::collections::BTreeMap<String, u64>) -> Vec<Unlisted> {
        let squash = |w: &str| -> String {
            w.chars()
                .filter(|c| !c.is_whitespace())
                .flat_map(char::to_lowercase)
                .collect()
        };
        let mut out: Vec<Unlisted> = counts
            .iter()
            .filter(|(word, _)| self.class_of(word).is_none())
            .map(|(word, &rows)| Unlisted {
                word: word.clone(),
                rows,
                variant_of: StatusClass::ALL.into_iter().find_map(|c| {
                    self.words(c)
                        .iter()
                        .find(|listed| squash(listed) == squash(word))
                        .map(|listed| (c, listed.clone()))
                }),
            })
            .collect();
        out.sort_by(|a, b| b.rows.cmp(&a.rows).then_with(|| a.word.cmp(&b.word)));
        out
    }
}

/// A status word the table holds that no class of `[jobs.statuses]` lists: its rows are
/// never watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlisted {
    pub word: String,
    /// Rows holding it, over the whole table (within `where`).
    pub rows: u64,
    /// The listed word it differs from only by case or spaces, and that word's class.
    pub variant_of: Option<(StatusClass, String)>,
}

impl Unlisted {
    /// "`Running` (12 rows; `running` differs only by case or spaces)".
    pub fn describe(&self) -> String {
        let rows = format!("{} row{}", self.rows, if self.rows == 1 { "" } else { "s" });
        match &self.variant_of {
            Some((class, listed)) => format!(
                "`{}` ({rows}; the {} word `{listed}` differs only by case or spaces)",
                self.word.escape_debug(),
                class.as_str()
            ),
            None => format!("`{}` ({rows})", self.word.escape_debug()),
        }
    }
}

/// One warning for the words no class lists, naming at most `named` of them.
pub fn unlisted_warning(unlisted: &[Unlisted], named: usize) -> Option<String> {
    if unlisted.is_empty() {
        return None;
    }
    let mut words: Vec<String> = unlisted
        .iter()
        .take(named)
        .map(Unlisted::describe)
        .collect();
    if unlisted.len() > named {
        words.push(format!("and {} more", unlisted.len() - named));
    }
    Some(format!(
        "rows in statuses `[jobs.statuses]` does not list are never watched: {}",
        words.join(", ")
    ))
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Heartbeat => "heartbeat",
            Signal::Progress => "progress",
            Signal::Created => "created",
        }
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Fail => "fail",
            Action::Requeue => "requeue",
        }
    }
}

#[cfg(test)]
mod unlisted_tests {
    use super::*;

    fn statuses() -> Statuses {
        Statuses {
            pending: vec!["queued".into()],
            running: vec!["running".into()],
            succeeded: vec!["completed".into()],
            ..Statuses::default()
        }
    }

    #[test]
    fn words_no_class_lists_are_found_with_their_near_misses() {
        let counts = [
            ("running", 4),
            ("Running", 12),
            ("in_progress", 3),
            ("completed", 900),
            (" COMPLETED", 1),
        ]
        .into_iter()
        .map(|(w, n)| (w.to_string(), n))
        .collect();
        let got = statuses().unlisted(&counts);
        assert_eq!(
            got.iter()
                .map(|u| (u.word.as_str(), u.rows, u.variant_of.clone()))
                .collect::<Vec<_>>(),
            vec![
                (
                    "Running",
                    12,
                    Some((StatusClass::Running, "running".to_string()))
                ),
                ("in_progress", 3, None),
                (
                    " COMPLETED",
                    1,
                    Some((StatusClass::Succeeded, "completed".to_string()))
                ),
            ]
        );
        assert_eq!(
            unlisted_warning(&got, 2).as_deref(),
            Some(
                "rows in statuses `[jobs.statuses]` does not list are never watched: `Running` \
                 (12 rows; the running word `running` differs only by case or spaces), \
                 `in_progress` (3 rows), and 1 more"
            )
        );
        assert_eq!(unlisted_warning(&[], 2), None);
    }
}
