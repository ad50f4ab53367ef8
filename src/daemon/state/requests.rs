//! The requests the web side sends to the scan loop, which handles them between scans (so
//! a person's write never overlaps a scan's): `recover`, a person's action on one job, and
//! a bulk action. Each carries the channel its answer comes back on.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::oneshot;

use crate::app::scan::Report;

/// A `POST /api/v1/recover`, handled by the loop between scans.
#[derive(Debug)]
pub struct RecoverRequest {
    pub older_than: Option<Duration>,
    pub dry_run: bool,
    pub reply: oneshot::Sender<Result<Report, String>>,
}

/// A person's action on one job (`POST /api/v1/jobs/{id}/...`), handled by the loop between
/// scans.
#[derive(Debug)]
pub struct JobRequest {
    pub job_id: String,
    pub ask: Ask,
    /// Only say what would be written (or held).
    pub dry_run: bool,
    /// The row as the page showed it: refused when it changed since.
    pub seen: Option<crate::core::plan::Seen>,
    /// The person's words, kept with the write (`error` column) or the snooze.
    pub reason: Option<String>,
    /// Who asked: `http` and the client's address.
    pub by: String,
    pub reply: oneshot::Sender<Result<serde_json::Value, JobRefusal>>,
}

/// What a person asks of one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    Fail,
    Requeue,
    /// No alerts and no writes for the job for this long (zero: ends a snooze).
    Snooze(Duration),
}

/// Why a job action was not done; nothing was written.
#[derive(Debug, Clone, PartialEq)]
pub enum JobRefusal {
    /// The table has no such job.
    NotFound(String),
    /// The job is not in a state to act on (finished, changed, already pending, writes
    /// paused...); `detail` adds fields to the answer (the outcome, the statement).
    Conflict {
        message: String,
        detail: serde_json::Value,
    },
    /// The daemon cannot act now (a standby, the database down, stopping).
    Unavailable(String),
    /// The request itself is wrong (a bulk action over `[safety] max_bulk`, without
    /// `expect`): 400.
    Invalid(String),
}

impl Ask {
    /// The action's name in the API's paths and answers.
    pub fn as_str(&self) -> &'static str {
        match self {
            Ask::Fail => "fail",
            Ask::Requeue => "requeue",
            Ask::Snooze(_) => "snooze",
        }
    }
}

impl JobRefusal {
    pub(crate) fn conflict(message: impl Into<String>) -> JobRefusal {
        JobRefusal::Conflict {
            message: message.into(),
            detail: serde_json::Value::Null,
        }
    }
}

/// A person's action on many jobs, handled by the loop between scans.
#[derive(Debug)]
pub struct BulkRequest {
    pub ask: Ask,
    pub targets: Targets,
    /// Only say how many jobs, which, and the statement.
    pub dry_run: bool,
    /// The count the person was shown: required for a write; a different count now is
    /// refused (409) and nothing is written.
    pub expect: Option<usize>,
    /// The person's words, kept with each write or snooze.
    pub reason: Option<String>,
    /// Who asked: `http` and the client's address.
    pub by: String,
    pub reply: oneshot::Sender<Result<serde_json::Value, JobRefusal>>,
}

/// Which jobs a bulk action names.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// These ids (duplicates counted once).
    Ids(Vec<String>),
    /// The jobs of this incident in the latest scan.
    Incident(String),
    /// The jobs whose findings in the latest scan match every given field.
    Select(Select),
}

/// A selection of the latest scan's findings: each given field must match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    pub kind: Option<String>,
    pub rule: Option<String>,
    pub status: Option<String>,
    pub phase: Option<String>,
}

impl Select {
    pub(crate) fn matches(&self, f: &crate::core::detect::Finding) -> bool {
        let is = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == have)
        };
        is(&self.kind, Some(f.kind.as_str()))
            && is(&self.rule, Some(&f.rule))
            && is(&self.status, Some(&f.status))
            && is(&self.phase, f.phase.as_deref())
    }

    /// Whether it names nothing (which would select every finding).
    pub fn is_empty(&self) -> bool {
        self == &Select::default()
    }
}
