//! The writes a scan's findings call for: one per job, planned as plain values before any of
//! them runs. `safety` then decides which may go ahead; the app applies them under the guard.

use crate::core::detect::{Finding, Kind};
use crate::core::job::{Guard, JobRow};
use crate::core::vocabulary::{Action, Jobs, StatusClass};

/// A guarded write jobwarden wants to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub job_id: String,
    pub action: Action,
    /// The status as read: the write happens only if it is still this.
    pub status_before: String,
    /// The status written.
    pub status_after: String,
    pub guard: Guard,
    /// Written into the `error` column when failing.
    pub reason: String,
    /// The rule whose finding asked for the write (`{rule}` in `[writes]` values).
    pub rule: String,
    /// A requeue that also adds one to the `attempts` column.
    pub bump_attempts: bool,
}

impl Write {
    /// What the placeholders of `[writes]` values stand for in this write; `now` is the
    /// database's clock.
    pub fn fill(&self, now: f64) -> crate::core::writes::Fill<'_> {
        crate::core::writes::Fill {
            reason: &self.reason,
            rule: &self.rule,
            job_id: &self.job_id,
            now,
        }
    }
}

/// One write and the findings (by index) it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub write: Write,
    pub findings: Vec<usize>,
}

/// Plans the writes for a scan's findings: one per job, `fail` before `requeue`. With an
/// `attempts` column, a requeue bumps it, and a job that has used `max_attempts` is failed
/// instead, so a poison job is not re-queued forever.
pub fn plan(findings: &[Finding], jobs: &Jobs) -> Vec<Planned> {
    let statuses = &jobs.statuses;
    let mut planned: Vec<Planned> = Vec::new();
    for action in [Action::Fail, Action::Requeue] {
        let target = match action {
            Action::Fail => statuses.failed.first(),
            Action::Requeue => statuses.pending.first(),
            Action::Alert => None,
        };
        let Some(target) = target else { continue };
        for (i, f) in findings.iter().enumerate() {
            if f.action != action {
                continue;
            }
            if let Some(p) = planned.iter_mut().find(|p| p.write.job_id == f.job_id) {
                p.findings.push(i);
                continue;
            }
            let used = f
                .guard
                .attempts
                .as_deref()
                .and_then(|a| a.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let exhausted = action == Action::Requeue
                && jobs.attempts.is_some()
                && used >= u64::from(jobs.max_attempts);
            let (action, target, reason) = match (exhausted, statuses.failed.first()) {
                (true, Some(failed)) => (
                    Action::Fail,
                    failed,
                    format!(
                        "jobwarden: {}: {}; gave up after {used} attempts",
                        f.rule, f.message
                    ),
                ),
                _ => (
                    action,
                    target,
                    format!("jobwarden: {}: {}", f.rule, f.message),
                ),
            };
            if action == Action::Requeue && f.status == *target {
                // Already where a requeue would put it.
                continue;
            }
            planned.push(Planned {
                write: Write {
                    job_id: f.job_id.clone(),
                    action,
                    status_before: f.status.clone(),
                    status_after: target.clone(),
                    guard: f.guard.clone(),
                    reason,
                    rule: f.rule.clone(),
                    bump_attempts: action == Action::Requeue && jobs.attempts.is_some(),
                },
                findings: vec![i],
            });
        }
    }
    planned
}

/// The row as a page (or an API caller) saw it: a manual action is refused when the row read
/// now differs. Fields left out are compared as absent (`null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    pub status: String,
    #[serde(default)]
    pub heartbeat: Option<String>,
    #[serde(default)]
    pub progress: Option<String>,
    #[serde(default)]
    pub attempts: Option<String>,
}

impl Seen {
    /// What a finding's row looked like when it was read.
    pub fn of(finding: &Finding) -> Seen {
        Seen {
            status: finding.status.clone(),
            heartbeat: finding.guard.heartbeat.clone(),
            progress: finding.guard.progress.clone(),
            attempts: finding.guard.attempts.clone(),
        }
    }

    fn of_row(row: &JobRow) -> Seen {
        Seen {
            status: row.status.clone(),
            heartbeat: row.guard.heartbeat.clone(),
            progress: row.guard.progress.clone(),
            attempts: row.guard.attempts.clone(),
        }
    }

    /// How `now` differs from this, in words (`None`: it does not).
    fn change(&self, now: &Seen) -> Option<String> {
        let fields = [
            ("status", Some(&self.status), Some(&now.status)),
            ("heartbeat", self.heartbeat.as_ref(), now.heartbeat.as_ref()),
            ("progress", self.progress.as_ref(), now.progress.as_ref()),
            ("attempts", self.attempts.as_ref(), now.attempts.as_ref()),
        ];
        let show = |v: Option<&String>| v.map_or_else(|| "empty".to_string(), |v| format!("{v:?}"));
        let changes: Vec<String> = fields
            .iter()
            .filter(|(_, a, b)| a != b)
            .map(|(name, a, b)| format!("{name} was {}, is {}", show(*a), show(*b)))
            .collect();
        (!changes.is_empty()).then(|| changes.join(", "))
    }
}

/// Why a person's fail or re-queue of one job is refused; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManualRefusal {
    #[error("job {id} is {status:?}, not pending or running: there is nothing to {action}")]
    NotActive {
        id: String,
        status: String,
        action: &'static str,
    },
    #[error("job {id} has no finding in the latest scan: jobwarden fails or re-queues only jobs it found stuck")]
    NoFinding { id: String },
    #[error("job {id} changed since {since} ({change}): reload and look again")]
    Changed {
        id: String,
        since: &'static str,
        change: String,
    },
    #[error("job {id} is already {status:?}, where a re-queue would put it")]
    AlreadyPending { id: String, status: String },
    #[error(
        "job {id}'s finding is younger than min_age ({age}s < {min_age}s): wait, or look again"
    )]
    TooYoung { id: String, age: u64, min_age: u64 },
    #[error("[jobs.statuses] {class} is empty: there is no status to {action} a job to")]
    NoTarget {
        class: &'static str,
        action: &'static str,
    },
}

/// The class of a row a person acts on (`action`: what they asked), refused unless it is
/// `pending` or `running`.
pub fn active_class(
    row: &JobRow,
    jobs: &Jobs,
    action: &'static str,
) -> Result<StatusClass, ManualRefusal> {
    jobs.statuses
        .class_of(&row.status)
        .filter(|c| c.is_active())
        .ok_or_else(|| ManualRefusal::NotActive {
            id: row.id.clone(),
            status: row.status.clone(),
            action,
        })
}

/// What the console may offer a person on a finding's job, from the latest scan alone: the
/// checks of [`manual`] that a finding can answer (a job id, an active status, no younger
/// than `min_age`, a status to write to, not already pending for a re-queue). A button
/// only where the action can work; the write itself is still planned by [`manual`] from the
/// row read afresh.
#[derive(Debug, Clone, Default)]
pub struct Offers {
    pub statuses: crate::core::vocabulary::Statuses,
    /// `[safety] min_age`, in seconds.
    pub min_age: u64,
}

impl Offers {
    /// Whether `action` (fail or re-queue) could work on the job of `f`.
    pub fn allows(&self, f: &Finding, action: Action) -> bool {
        if f.job_id.is_empty() || f.kind == Kind::MassStall || f.age_seconds < self.min_age {
            return false;
        }
        let Some(class) = self.statuses.class_of(&f.status).filter(|c| c.is_active()) else {
            return false;
        };
        match action {
            Action::Requeue => class != StatusClass::Pending && !self.statuses.pending.is_empty(),
            _ => !self.statuses.failed.is_empty(),
        }
    }
}

/// Plans a person's `fail` or `requeue` of one job from its row read now: refused unless the
/// row is active, has a finding among the latest scan's `findings` (the first of the job's,
/// whose kind and rule the audit records) at least `min_age` seconds old (`min_age` has no
/// override, for a person either), is as that scan read it, and is as the person saw it
/// (`seen`, when given). The write is guarded like every other, so a row that changes after
/// this read is not touched either. `note` goes into the `error` column after the finding's
/// rule.
pub fn manual(
    row: &JobRow,
    findings: &[Finding],
    seen: Option<&Seen>,
    action: Action,
    jobs: &Jobs,
    min_age: u64,
    note: &str,
) -> Result<Planned, ManualRefusal> {
    let id = row.id.clone();
    let verb = action.as_str();
    let class = active_class(row, jobs, verb)?;
    let Some(index) = findings
        .iter()
        .position(|f| f.job_id == row.id && f.kind != Kind::MassStall)
    else {
        return Err(ManualRefusal::NoFinding { id });
    };
    let finding = &findings[index];
    if finding.age_seconds < min_age {
        return Err(ManualRefusal::TooYoung {
            id,
            age: finding.age_seconds,
            min_age,
        });
    }
    let now = Seen::of_row(row);
    if let Some(change) = Seen::of(finding).change(&now) {
        return Err(ManualRefusal::Changed {
            id,
            since: "the last scan",
            change,
        });
    }
    if let Some(change) = seen.and_then(|s| s.change(&now)) {
        return Err(ManualRefusal::Changed {
            id,
            since: "the page was drawn",
            change,
        });
    }
    let (target, target_class) = match action {
        Action::Requeue => (jobs.statuses.pending.first(), "pending"),
        _ => (jobs.statuses.failed.first(), "failed"),
    };
    let Some(target) = target else {
        return Err(ManualRefusal::NoTarget {
            class: target_class,
            action: verb,
        });
    };
    if action == Action::Requeue && class == StatusClass::Pending {
        return Err(ManualRefusal::AlreadyPending {
            id,
            status: row.status.clone(),
        });
    }
    let action = if action == Action::Requeue {
        Action::Requeue
    } else {
        Action::Fail
    };
    Ok(Planned {
        write: Write {
            job_id: id,
            action,
            status_before: row.status.clone(),
            status_after: target.clone(),
            guard: row.guard.clone(),
            reason: format!("jobwarden: {}: {note}", finding.rule),
            rule: finding.rule.clone(),
            bump_attempts: action == Action::Requeue && jobs.attempts.is_some(),
        },
        findings: vec![index],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::detect::{Kind, Outcome};
    use crate::core::vocabulary::{Severity, Statuses};

    fn finding(job: &str, status: &str, action: Action, rule: &str) -> Finding {
        Finding {
            kind: Kind::Stalled,
            rule: rule.into(),
            job_id: job.into(),
            status: status.into(),
            phase: None,
            age_seconds: 100,
            threshold_seconds: 60,
            since: 0.0,
            severity: Severity::Critical,
            action,
            outcome: Outcome::None,
            message: "no heartbeat for 1m 40s (limit 1m)".into(),
            artifacts: vec![],
            evidence: None,
            incident: None,
            worker: None,
            host: None,
            pid: None,
            guard: Guard {
                heartbeat: Some("hb".into()),
                progress: None,
                ..Guard::default()
            },
            progress: None,
            held: None,
        }
    }

    fn statuses() -> Jobs {
        Jobs::with_statuses(Statuses {
            pending: vec!["queued".into()],
            running: vec!["running".into()],
            failed: vec!["failed".into(), "error".into()],
            ..Statuses::default()
        })
    }

    #[test]
    fn the_console_offers_only_what_can_work() {
        let offers = Offers {
            statuses: statuses().statuses,
            min_age: 60,
        };
        let can = |f: &Finding| {
            (
                offers.allows(f, Action::Fail),
                offers.allows(f, Action::Requeue),
            )
        };
        let running = finding("1", "running", Action::Alert, "hb");
        assert_eq!(can(&running), (true, true));
        // Already pending: failing can work, a re-queue would change nothing.
        assert_eq!(
            can(&finding("2", "queued", Action::Alert, "hb")),
            (true, false)
        );
        // A finished job (a succeeded job's missing report) and a job the table lacks.
        assert_eq!(
            can(&finding("3", "done", Action::Alert, "hb")),
            (false, false)
        );
        assert_eq!(can(&finding("4", "", Action::Alert, "hb")), (false, false));
        // Younger than min_age, and the mass stall (no job).
        let mut young = running.clone();
        young.age_seconds = 59;
        assert_eq!(can(&young), (false, false));
        let mut mass = running.clone();
        mass.kind = Kind::MassStall;
        assert_eq!(can(&mass), (false, false));
        // No status to write to.
        let none = Offers::default();
        assert!(!none.allows(&running, Action::Fail) && !none.allows(&running, Action::Requeue));
    }

    #[test]
    fn requeue_counts_attempts_and_gives_up() {
        let mut jobs = statuses();
        jobs.attempts = Some(crate::core::sql::parse_field("attempts").unwrap());
        jobs.max_attempts = 3;
        let mut fresh = finding("1", "running", Action::Requeue, "rq");
        fresh.guard.attempts = Some("2".into());
        let mut poison = finding("2", "running", Action::Requeue, "rq");
        poison.guard.attempts = Some("3".into());
        let p = plan(&[fresh, poison], &jobs);
        assert_eq!(
            (
                p[0].write.action,
                p[0].write.bump_attempts,
                p[0].write.status_after.as_str()
            ),
            (Action::Requeue, true, "queued")
        );
        assert_eq!(
            (
                p[1].write.action,
                p[1].write.bump_attempts,
                p[1].write.status_after.as_str()
            ),
            (Action::Fail, false, "failed")
        );
        assert!(
            p[1].write.reason.ends_with("; gave up after 3 attempts"),
            "{}",
            p[1].write.reason
        );
    }

    #[test]
    fn one_write_per_job_and_fail_wins() {
        let findings = vec![
            finding("1", "running", Action::Requeue, "rq"),
            finding("1", "running", Action::Fail, "hb"),
            finding("2", "running", Action::Alert, "a"),
            finding("3", "running", Action::Requeue, "rq"),
            finding("4", "queued", Action::Requeue, "rq"),
        ];
        let p = plan(&findings, &statuses());
        let summary: Vec<_> = p
            .iter()
            .map(|p| {
                (
                    p.write.job_id.as_str(),
                    p.write.status_after.as_str(),
                    p.findings.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![("1", "failed", vec![1, 0]), ("3", "queued", vec![3])]
        );
        assert_eq!(
            p[0].write.reason,
            "jobwarden: hb: no heartbeat for 1m 40s (limit 1m)"
        );
        assert_eq!(p[0].write.guard.heartbeat.as_deref(), Some("hb"));
    }

    fn row(id: &str, status: &str, heartbeat: &str) -> JobRow {
        let mut row = JobRow::new(id, status);
        row.guard.heartbeat = Some(heartbeat.into());
        row
    }

    #[test]
    fn a_manual_fail_writes_the_row_as_read_now() {
        let f = finding("1", "running", Action::Alert, "hb");
        let scan = [finding("2", "running", Action::Fail, "hb"), f.clone()];
        let p = manual(
            &row("1", "running", "hb"),
            &scan,
            Some(&Seen::of(&f)),
            Action::Fail,
            &statuses(),
            60,
            "marked failed by http 127.0.0.1:9",
        )
        .unwrap();
        assert_eq!(p.findings, [1], "the job's own finding, not another's");
        let w = p.write;
        assert_eq!(
            (w.action, w.status_before.as_str(), w.status_after.as_str()),
            (Action::Fail, "running", "failed"),
            "an alert-only finding can still be failed by a person"
        );
        assert_eq!(w.guard.heartbeat.as_deref(), Some("hb"));
        assert_eq!(w.reason, "jobwarden: hb: marked failed by http 127.0.0.1:9");
    }

    #[test]
    fn a_manual_action_is_refused_on_a_changed_or_finished_row() {
        let jobs = statuses();
        let f = finding("1", "running", Action::Fail, "hb");
        let refuse = |row: &JobRow, f: &[Finding], seen: Option<&Seen>, action| {
            manual(row, f, seen, action, &jobs, 60, "x")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refuse(
                &row("1", "done", "hb"),
                std::slice::from_ref(&f),
                None,
                Action::Fail
            ),
            "job 1 is \"done\", not pending or running: there is nothing to fail"
        );
        assert_eq!(
            refuse(&row("1", "running", "hb2"), std::slice::from_ref(&f), None, Action::Fail),
            "job 1 changed since the last scan (heartbeat was \"hb\", is \"hb2\"): reload and look again"
        );
        let page = Seen {
            status: "queued".into(),
            heartbeat: Some("hb".into()),
            ..Seen::default()
        };
        assert_eq!(
            refuse(&row("1", "running", "hb"), std::slice::from_ref(&f), Some(&page), Action::Fail),
            "job 1 changed since the page was drawn (status was \"queued\", is \"running\"): reload and look again"
        );
        assert_eq!(
            refuse(&row("1", "running", "hb"), &[], None, Action::Requeue),
            "job 1 has no finding in the latest scan: jobwarden fails or re-queues only jobs it found stuck"
        );
        assert_eq!(
            manual(
                &row("1", "running", "hb"),
                std::slice::from_ref(&f),
                None,
                Action::Fail,
                &jobs,
                101,
                "x"
            )
            .unwrap_err()
            .to_string(),
            "job 1's finding is younger than min_age (100s < 101s): wait, or look again"
        );
        let pending = finding("1", "queued", Action::Requeue, "rq");
        assert_eq!(
            refuse(
                &row("1", "queued", "hb"),
                std::slice::from_ref(&pending),
                None,
                Action::Requeue
            ),
            "job 1 is already \"queued\", where a re-queue would put it"
        );
    }
}
