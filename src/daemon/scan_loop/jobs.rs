//! A person's action on one job (`POST /api/v1/jobs/{id}/fail`, `/requeue`, `/snooze`), as
//! the scan loop handles it between scans: the row read afresh, the write planned by
//! `core::plan::manual` and made by `actions::apply` like any other, or the snooze saved in
//! the holds.

use std::time::Duration;

use super::Loop;
use crate::adapters::store::{Store, StoreError};
use crate::app::actions;
use crate::daemon::state::{Ask, JobRefusal, JobRequest};

/// Who asked for a person's writes, and why.
pub(super) struct Asked<'a> {
    pub by: &'a str,
    pub reason: Option<&'a str>,
    /// The bulk action they are part of.
    pub batch: Option<String>,
}

impl Loop {
    /// Why a person's write (one job or many) cannot be made now: a pause, lost holds, or a
    /// table whose timestamps' zone cannot be known.
    pub(super) fn may_write(&self, store: &Store) -> Result<(), JobRefusal> {
        match self.shared.every_write_held() {
            Some(why @ crate::core::safety::HeldBack::Paused { .. }) => {
                return Err(JobRefusal::conflict(format!(
                    "{why}: end the pause first (jobwarden pause --for 0s)"
                )));
            }
            Some(why) => return Err(JobRefusal::conflict(why.to_string())),
            None => {}
        }
        match store.refusal() {
            Some(why) => Err(JobRefusal::conflict(format!(
                "jobwarden will not write to this table: {why}"
            ))),
            None => Ok(()),
        }
    }

    /// Handles a person's action on one job; whether a row was written.
    pub(super) async fn job_action(&mut self, request: JobRequest) -> bool {
        let answer = self.answer_job(&request).await;
        let wrote = matches!(&answer, Ok(a) if a["outcome"] == "applied" && request.ask != Ask::Snooze(Duration::ZERO));
        let _ = request.reply.send(answer);
        wrote
    }

    async fn answer_job(&mut self, r: &JobRequest) -> Result<serde_json::Value, JobRefusal> {
        let dry_run = r.dry_run || self.config.dry_run || self.dry_run;
        let outcome = if dry_run { "dry_run" } else { "applied" };
        let reason = r.reason.clone().unwrap_or_default();
        let snoozed_answer = |job_id: &str, until: Option<f64>| {
            serde_json::json!({
                "job_id": job_id, "action": "snooze", "outcome": outcome,
                "snoozed_until": until.map(crate::core::job::rfc3339), "reason": reason,
            })
        };
        if r.ask == Ask::Snooze(Duration::ZERO) {
            // Ending a snooze needs no row: the job may be long gone. When the row is there,
            // its own spelling is the snooze's key (a case-insensitive collation matches
            // `job-a` to the row `JOB-A`).
            let job_id = match self.scanner().await {
                Ok(scanner) => match scanner.store().job(&r.job_id).await {
                    Ok(Some(row)) => row.id,
                    _ => r.job_id.clone(),
                },
                Err(_) => r.job_id.clone(),
            };
            if dry_run {
                return Ok(snoozed_answer(&job_id, None));
            }
            return match self.shared.snooze(&job_id, Duration::ZERO, "", &r.by).await {
                Ok(_) => Ok(snoozed_answer(&job_id, None)),
                Err(e) => Err(JobRefusal::Unavailable(format!(
                    "the snooze could not be saved, so it still holds: {e}"
                ))),
            };
        }
        if !self.leadership.is_leader() {
            return Err(JobRefusal::Unavailable(
                "this replica is a standby: send job actions to the leader".into(),
            ));
        }
        if self.stop.is_set() {
            return Err(JobRefusal::Unavailable("jobwarden is stopping".into()));
        }
        let config = self.config.clone();
        let unavailable = |e: StoreError| JobRefusal::Unavailable(e.to_string());
        let store = self.scanner().await.map_err(unavailable)?.store().clone();
        let row = store
            .job(&r.job_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                JobRefusal::NotFound(format!(
                    "the table {} has no job {:?}",
                    config.jobs.table, r.job_id
                ))
            })?;
        // The id as the row spells it: what scans, findings and holds know it by, whatever
        // the request's spelling that the column's collation matched.
        let job_id = row.id.clone();
        let action = match r.ask {
            Ask::Snooze(span) => {
                crate::core::plan::active_class(&row, &config.jobs, "snooze")
                    .map_err(|e| JobRefusal::conflict(e.to_string()))?;
                if dry_run {
                    return Ok(snoozed_answer(
                        &job_id,
                        Some(self.clock.now() + span.as_secs_f64()),
                    ));
                }
                return match self.shared.snooze(&job_id, span, &reason, &r.by).await {
                    Ok(until) => Ok(snoozed_answer(&job_id, until)),
                    Err(e) => Err(JobRefusal::Unavailable(format!(
                        "the snooze could not be saved, so it was not made: {e}"
                    ))),
                };
            }
            Ask::Fail => crate::config::Action::Fail,
            Ask::Requeue => crate::config::Action::Requeue,
        };
        // The job's own findings of the latest scan: all that its plan and write look at
        // (not a copy of every finding, which is thousands after a restart).
        let mut findings: Vec<_> = self
            .shared
            .latest()
            .map(|r| {
                r.findings
                    .iter()
                    .filter(|f| f.job_id == job_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let verb = match action {
            crate::config::Action::Requeue => "re-queued",
            _ => "marked failed",
        };
        let note = match reason.trim() {
            "" => format!("{verb} by {}", r.by),
            why => format!("{verb} by {}: {why}", r.by),
        };
        let planned = crate::core::plan::manual(
            &row,
            &findings,
            r.seen.as_ref(),
            action,
            &config.jobs,
            config.safety.min_age.as_secs(),
            &note,
        )
        .map_err(|e| JobRefusal::conflict(e.to_string()))?;
        if !dry_run {
            self.may_write(&store)?;
        }
        let now = store.clock().await.map_err(unavailable)?;
        let statement = store.queries().write_inline(&planned.write, now);
        let asked = Asked {
            by: &r.by,
            reason: r.reason.as_deref(),
            batch: None,
        };
        let executed = self
            .apply_for_person(&store, &mut findings, vec![planned], dry_run, now, asked)
            .await;
        if let Some((_, why)) = executed.limited.first() {
            return Err(JobRefusal::Unavailable(format!("not written: {why}")));
        }
        let Some(done) = executed.applied.first() else {
            return Err(JobRefusal::Unavailable("not written".into()));
        };
        let answer = serde_json::json!({
            "job_id": job_id,
            "action": done.write.action.as_str(),
            "outcome": done.outcome.as_str(),
            "status_before": done.write.status_before,
            "status_after": done.write.status_after,
            "statement": statement,
        });
        match done.outcome {
            crate::core::detect::Outcome::Applied => {
                tracing::warn!(job_id = job_id.as_str(), by = %r.by, "job {verb} by a person: {statement}");
                Ok(answer)
            }
            crate::core::detect::Outcome::DryRun => Ok(answer),
            crate::core::detect::Outcome::Raced => Err(JobRefusal::Conflict {
                message: format!("job {job_id} changed as it was written: nothing was written"),
                detail: answer,
            }),
            _ => Err(JobRefusal::Unavailable(format!(
                "the write failed: {}",
                done.detail
            ))),
        }
    }

    /// Takes in what a person's writes came to (one job's or a bulk action's): counted,
    /// remembered, the audit trail's health, and each written job told to the alerts and to
    /// its incident.
    /// Makes a person's planned writes, each row its own guarded write with its audit intent
    /// and outcome naming who asked and why, and takes in what came of them.
    pub(super) async fn apply_for_person(
        &mut self,
        store: &Store,
        findings: &mut [crate::core::detect::Finding],
        planned: Vec<crate::core::plan::Planned>,
        dry_run: bool,
        now: f64,
        asked: Asked<'_>,
    ) -> actions::Executed {
        let config = self.config.clone();
        let applying = actions::apply(
            store,
            findings,
            planned,
            dry_run,
            &crate::adapters::audit::Context {
                environment: config.environment.clone(),
                now,
                // A bulk action's confirmed count lifted the guard and the per-scan cap.
                forced: asked.batch.is_some(),
                requested_by: Some(asked.by.to_string()),
                reason: asked
                    .reason
                    .filter(|why| !why.trim().is_empty())
                    .map(str::to_string),
                batch: asked.batch,
            },
            actions::Trail {
                state_dir: &config.state_dir,
                audit_max_size: config.audit_max_size,
                stop: Some(&self.stop),
                dry_seen: None,
            },
        )
        .await;
        self.settle(applying)
    }

    fn settle(&mut self, applying: actions::Applying) -> actions::Executed {
        let executed = actions::Executed {
            applied: applying.applied,
            limited: applying
                .held
                .into_iter()
                .map(|(p, why)| (p.write, why))
                .collect(),
            audit_error: applying.audit_error,
            ..actions::Executed::default()
        };
        self.count_actions(&executed);
        self.remember(&executed);
        self.audit_health(&executed);
        let written = executed
            .applied
            .iter()
            .filter(|done| done.outcome == crate::core::detect::Outcome::Applied);
        self.alerter.acted(written.clone().map(|done| {
            let what = match done.write.action {
                crate::config::Action::Requeue => "re-queued",
                _ => "failed",
            };
            (done.write.job_id.as_str(), what)
        }));
        if let Some(scanner) = &mut self.scanner {
            for done in written {
                scanner.written(&done.write.job_id, done.write.action);
            }
        }
        executed
    }
}
