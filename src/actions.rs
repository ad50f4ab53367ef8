//! Turning findings into guarded writes, and recording what became of each.
//!
//! [`plan`] is pure: at most one write per job (a `fail` beats a `requeue`), with the reason
//! text that lands in the `error` column. [`apply`] runs the plan through the store, or only
//! describes it in a dry run, and sets every finding's `outcome`. A failed write is logged and
//! recorded as `error`; it never stops the other writes.

use crate::config::{Action, Statuses};
use crate::detect::{Finding, Outcome};
use crate::store::{Store, Write};

/// One write and the findings (by index) it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub write: Write,
    pub findings: Vec<usize>,
}

/// What [`apply`] did, for the caller to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub write: Write,
    pub outcome: Outcome,
    /// The SQL in words (dry run) or the error (error).
    pub detail: String,
}

/// Plans the writes for a scan's findings: one per job, `fail` before `requeue`.
pub fn plan(findings: &[Finding], statuses: &Statuses) -> Vec<Planned> {
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
                    reason: format!("jobwarden: {}: {}", f.rule, f.message),
                },
                findings: vec![i],
            });
        }
    }
    planned
}

/// Applies (or, with `dry_run`, describes) the planned writes and records each outcome on its
/// findings.
pub async fn apply(
    store: &Store,
    findings: &mut [Finding],
    planned: Vec<Planned>,
    dry_run: bool,
) -> Vec<Applied> {
    let mut done = Vec::with_capacity(planned.len());
    for p in planned {
        let (outcome, detail) = if dry_run {
            (Outcome::DryRun, store.queries().describe(&p.write))
        } else {
            match store.apply(&p.write).await {
                Ok(true) => (Outcome::Applied, store.queries().describe(&p.write)),
                Ok(false) => (
                    Outcome::Raced,
                    "the row changed since it was read; left alone".to_string(),
                ),
                Err(e) => (Outcome::Error, e.to_string()),
            }
        };
        for &i in &p.findings {
            findings[i].outcome = outcome;
        }
        let first = &findings[p.findings[0]];
        match outcome {
            Outcome::Error => tracing::error!(
                job_id = %p.write.job_id, kind = first.kind.as_str(), rule = %first.rule,
                age_seconds = first.age_seconds, outcome = "error", error = %detail,
                "could not {} job", p.write.action.as_str()
            ),
            _ => tracing::info!(
                job_id = %p.write.job_id, kind = first.kind.as_str(), rule = %first.rule,
                age_seconds = first.age_seconds, outcome = outcome.as_str(),
                "{} job: {} -> {}", p.write.action.as_str(), p.write.status_before, p.write.status_after
            ),
        }
        done.push(Applied {
            write: p.write,
            outcome,
            detail,
        });
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Severity;
    use crate::detect::Kind;
    use crate::job::Guard;

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
            },
            progress: None,
        }
    }

    fn statuses() -> Statuses {
        Statuses {
            pending: vec!["queued".into()],
            running: vec!["running".into()],
            failed: vec!["failed".into(), "error".into()],
            ..Statuses::default()
        }
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

/// How one scan's findings are acted on.
#[derive(Debug, Default)]
pub struct Execute<'a> {
    /// Print the writes instead of making them.
    pub dry_run: bool,
    /// `recover --force`.
    pub force: bool,
    /// The daemon is within its startup grace.
    pub grace: bool,
    /// The daemon's confirmation counts; `None` acts on one scan (`recover`).
    pub confirm: Option<&'a mut crate::safety::Confirmations>,
    /// `recover --only`: write only these job ids.
    pub only: Option<&'a [String]>,
    /// `recover --exclude`: never write these job ids.
    pub exclude: &'a [String],
}

/// What one scan's actions came to.
#[derive(Debug, Default)]
pub struct Executed {
    pub applied: Vec<Applied>,
    /// Writes held back, with why.
    pub limited: Vec<(Write, String)>,
}

/// Plans the writes of a scan, passes them through the safety gate (and, in the daemon, the
/// confirmation count), applies what is left, records every write in the audit trail, and
/// adds a `mass_stall` finding to the report when one held everything back.
pub async fn execute(
    store: &Store,
    config: &crate::config::Config,
    report: &mut crate::scan::Report,
    options: Execute<'_>,
) -> Executed {
    let mut planned = plan(&report.findings, &config.jobs.statuses);
    planned.retain(|p| {
        options.only.is_none_or(|ids| ids.contains(&p.write.job_id))
            && !options.exclude.contains(&p.write.job_id)
    });
    let mut waiting = Vec::new();
    if let Some(confirm) = options.confirm {
        let (ready, wait) = confirm.confirm(planned, &report.findings, config.safety.confirm_scans);
        planned = ready;
        waiting = wait;
    }
    let ctx = crate::safety::Context {
        safety: &config.safety,
        active: report.jobs.values().sum::<u64>() as usize,
        force: options.force,
        grace: options.grace,
        now: report.checked_at,
    };
    let mut gated = crate::safety::gate(planned, &report.findings, &ctx);
    gated.limited.extend(waiting);
    crate::safety::mark_limited(&mut report.findings, &gated);
    for (p, why) in &gated.limited {
        tracing::info!(job_id = %p.write.job_id, action = p.write.action.as_str(), outcome = "limited", "held back: {why}");
    }
    let applied = apply(
        store,
        &mut report.findings,
        std::mem::take(&mut gated.allowed),
        options.dry_run,
    )
    .await;
    let entries = crate::audit::entries(
        &applied,
        &report.findings,
        config.environment.as_deref(),
        report.checked_at,
        options.force,
    );
    crate::audit::record(&config.state_dir, &entries);
    if let Some(stall) = gated.mass_stall.take() {
        tracing::error!(outcome = "limited", "{}", stall.message);
        report.findings.push(stall);
    }
    Executed {
        applied,
        limited: gated
            .limited
            .into_iter()
            .map(|(p, why)| (p.write, why))
            .collect(),
    }
}
