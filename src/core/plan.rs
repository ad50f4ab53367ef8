//! The writes a scan's findings call for: one per job, planned as plain values before any of
//! them runs. `safety` then decides which may go ahead; the app applies them under the guard.

use crate::core::detect::Finding;
use crate::core::job::Guard;
use crate::core::vocabulary::{Action, Jobs};

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
    /// A requeue that also adds one to the `attempts` column.
    pub bump_attempts: bool,
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
                    bump_attempts: action == Action::Requeue && jobs.attempts.is_some(),
                },
                findings: vec![i],
            });
        }
    }
    planned
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
            guard: Guard {
                heartbeat: Some("hb".into()),
                progress: None,
                attempts: None,
            },
            progress: None,
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
}
