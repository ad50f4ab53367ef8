//! A person's action on many jobs at once (`POST /api/v1/jobs/fail`, `/requeue`, `/snooze`):
//! the jobs named by id, by incident, or by a selection of the latest scan's findings.
//!
//! A bulk action is the override of the scan's safety gate: a person looked at the count
//! (the dry run), repeated it (`expect`), and so the mass-stall guard and the per-scan cap do
//! not apply; the audit entries say so (`forced`, and one `batch` id shared by every row).
//! Everything else still does, row by row, as for one job: the row is read afresh and
//! planned by `core::plan::manual` (still active, a finding at least `min_age` old, unchanged
//! since the scan), and written by `actions::apply` through the guarded `UPDATE`, each with
//! its own intent and outcome in the audit trail. A pause holds every bulk write, as it
//! holds a single job's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Loop;
use crate::adapters::store::StoreError;
use crate::core::detect::{Finding, Kind, Outcome};
use crate::daemon::state::{Ask, BulkRequest, JobRefusal, Targets};

/// Ids shown in a dry run's `sample`.
pub const SAMPLE: usize = 10;
/// Refusal messages kept in a write's answer (`refused_sample`).
const REFUSALS_SHOWN: usize = 5;

/// The job ids a bulk action names, in the order of the latest scan's findings (or of the
/// request's ids), each once; `None` when it names an incident the scan does not know.
pub fn resolve(
    targets: &Targets,
    findings: &[Finding],
    incidents: &[crate::core::incident::View],
) -> Option<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<String> = match targets {
        Targets::Ids(ids) => ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect(),
        Targets::Incident(id) => {
            if !incidents.iter().any(|i| &i.id == id) {
                return None;
            }
            of_findings(findings, |f| f.incident.as_ref() == Some(id))
        }
        Targets::Select(select) => of_findings(findings, |f| select.matches(f)),
    };
    Some(ids)
}

/// The distinct job ids of the findings that `keep` (never the mass-stall finding, which
/// names no job).
fn of_findings(findings: &[Finding], keep: impl Fn(&Finding) -> bool) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    findings
        .iter()
        .filter(|f| f.kind != Kind::MassStall && !f.job_id.is_empty() && keep(f))
        .filter(|f| seen.insert(f.job_id.as_str()))
        .map(|f| f.job_id.clone())
        .collect()
}

/// A fresh batch id: the database time in milliseconds and a count within this process.
fn batch_id(now: f64) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "bulk-{}-{}",
        (now * 1000.0) as u64,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Loop {
    /// Handles a person's bulk action; whether a row was written.
    pub(super) async fn bulk_action(&mut self, request: BulkRequest) -> bool {
        let answer = self.answer_bulk(&request).await;
        let wrote = !matches!(request.ask, Ask::Snooze(_))
            && matches!(&answer, Ok(a) if a["outcomes"]["applied"].as_u64().unwrap_or(0) > 0);
        let _ = request.reply.send(answer);
        wrote
    }

    async fn answer_bulk(&mut self, r: &BulkRequest) -> Result<serde_json::Value, JobRefusal> {
        let config = self.config.clone();
        let Some((findings, incidents)) = self
            .shared
            .latest()
            .map(|report| (report.findings.clone(), report.incidents.clone()))
        else {
            return Err(JobRefusal::Unavailable(
                "no scan has completed yet: try again after the first scan".into(),
            ));
        };
        let ids = resolve(&r.targets, &findings, &incidents).ok_or_else(|| match &r.targets {
            Targets::Incident(id) => {
                JobRefusal::NotFound(format!("the latest scan has no incident {id:?}"))
            }
            _ => JobRefusal::NotFound("no such jobs".into()),
        })?;
        let count = ids.len();
        let max = config.safety.max_bulk;
        if count > max {
            return Err(JobRefusal::Invalid(format!(
                "{count} jobs is more than [safety] max_bulk ({max}) allows in one request: \
                 narrow the selection, or raise max_bulk"
            )));
        }
        let action = match r.ask {
            Ask::Fail => Some(crate::config::Action::Fail),
            Ask::Requeue => Some(crate::config::Action::Requeue),
            Ask::Snooze(_) => None,
        };
        let unavailable = |e: StoreError| JobRefusal::Unavailable(e.to_string());
        let store = self.scanner().await.map_err(unavailable)?.store().clone();
        let verb = match r.ask {
            Ask::Fail => "marked failed",
            Ask::Requeue => "re-queued",
            Ask::Snooze(_) => "snoozed",
        };
        let reason = r.reason.clone().unwrap_or_default();
        let note = match reason.trim() {
            "" => format!("{verb} by {} (bulk)", r.by),
            why => format!("{verb} by {} (bulk): {why}", r.by),
        };
        if r.dry_run {
            let statement = match (action, ids.first()) {
                (Some(action), Some(_)) => {
                    let now = store.clock().await.map_err(unavailable)?;
                    // The shape, from the first job of the sample that plans.
                    let mut statement = None;
                    for id in ids.iter().take(SAMPLE) {
                        let Some(row) = store.job(id).await.map_err(unavailable)? else {
                            continue;
                        };
                        let min_age = config.safety.min_age.as_secs();
                        let planned = crate::core::plan::manual(
                            &row,
                            &findings,
                            None,
                            action,
                            &config.jobs,
                            min_age,
                            &note,
                        );
                        if let Ok(p) = planned {
                            statement = Some(store.queries().write_inline(&p.write, now));
                            break;
                        }
                    }
                    statement
                }
                (None, Some(_)) => Some(match r.ask {
                    Ask::Snooze(span) if span.is_zero() => "end each job's snooze".to_string(),
                    Ask::Snooze(span) => format!(
                        "snooze each job for {}: no alerts and no writes",
                        humantime::format_duration(span)
                    ),
                    _ => String::new(),
                }),
                (_, None) => None,
            };
            return Ok(serde_json::json!({
                "action": r.ask.as_str(),
                "dry_run": true,
                "count": count,
                "sample": ids.iter().take(SAMPLE).collect::<Vec<_>>(),
                "statement": statement,
            }));
        }
        let Some(expect) = r.expect else {
            return Err(JobRefusal::Invalid(format!(
                "expect: missing: repeat the count the dry run showed, such as \
                 {{\"expect\": {count}}}"
            )));
        };
        if expect != count {
            return Err(JobRefusal::Conflict {
                message: format!(
                    "expect: {expect}, but {count} jobs match now: nothing was written; \
                     look again (dry run) and repeat the new count"
                ),
                detail: serde_json::json!({"count": count}),
            });
        }
        if !self.leadership.is_leader() {
            return Err(JobRefusal::Unavailable(
                "this replica is a standby: send job actions to the leader".into(),
            ));
        }
        if self.stop.is_set() {
            return Err(JobRefusal::Unavailable("jobwarden is stopping".into()));
        }
        let now = store.clock().await.map_err(unavailable)?;
        let batch = batch_id(now);
        let Some(action) = action else {
            let Ask::Snooze(span) = r.ask else {
                return Err(JobRefusal::Invalid("no such action".into()));
            };
            return self
                .bulk_snooze(r, &store, &ids, span, &reason, batch)
                .await;
        };
        self.may_write(&store)?;
        // Every row read before any is written: a database that fails half-way through the
        // reads leaves nothing half done.
        let mut findings = findings;
        let mut planned = Vec::with_capacity(count);
        let mut refused: Vec<String> = Vec::new();
        for id in &ids {
            let Some(row) = store.job(id).await.map_err(unavailable)? else {
                refused.push(format!("the table {} has no job {id:?}", config.jobs.table));
                continue;
            };
            match crate::core::plan::manual(
                &row,
                &findings,
                None,
                action,
                &config.jobs,
                config.safety.min_age.as_secs(),
                &note,
            ) {
                Ok(p) => planned.push(p),
                Err(e) => refused.push(e.to_string()),
            }
        }
        let dry_run = config.dry_run || self.dry_run;
        let asked = super::jobs::Asked {
            by: &r.by,
            reason: r.reason.as_deref(),
            batch: Some(batch.clone()),
        };
        let executed = self
            .apply_for_person(&store, &mut findings, planned, dry_run, now, asked)
            .await;
        let mut outcomes = serde_json::Map::new();
        for o in [
            Outcome::Applied,
            Outcome::Raced,
            Outcome::Limited,
            Outcome::Error,
        ] {
            outcomes.insert(o.as_str().into(), 0.into());
        }
        outcomes.insert("refused".into(), refused.len().into());
        let mut bump = |key: &str| {
            let n = outcomes.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
            outcomes.insert(key.into(), (n + 1).into());
        };
        for done in &executed.applied {
            bump(done.outcome.as_str());
        }
        for _ in &executed.limited {
            bump(Outcome::Limited.as_str());
        }
        let applied = outcomes["applied"].as_u64().unwrap_or(0);
        tracing::warn!(
            batch = batch.as_str(), by = %r.by, count, applied,
            "{applied} of {count} jobs {verb} by a person in one bulk action"
        );
        let mut answer = serde_json::json!({
            "action": r.ask.as_str(),
            "count": count,
            "outcomes": outcomes,
            "batch": batch,
        });
        if let Some((_, why)) = executed.limited.first() {
            answer["limited"] = why.to_string().into();
        }
        if !refused.is_empty() {
            refused.truncate(REFUSALS_SHOWN);
            answer["refused_sample"] = refused.into();
        }
        Ok(answer)
    }

    /// Snoozes (or, for zero, ends the snooze of) each active job among `ids`, in one save
    /// of the holds.
    async fn bulk_snooze(
        &mut self,
        r: &BulkRequest,
        store: &crate::adapters::store::Store,
        ids: &[String],
        span: Duration,
        reason: &str,
        batch: String,
    ) -> Result<serde_json::Value, JobRefusal> {
        let mut snoozed: Vec<String> = Vec::with_capacity(ids.len());
        let mut refused: Vec<String> = Vec::new();
        for id in ids {
            let row = store
                .job(id)
                .await
                .map_err(|e| JobRefusal::Unavailable(e.to_string()))?;
            // A snooze is ended whatever the row; a new one only on an active row. Each is
            // kept under the row's own spelling of the id.
            match row {
                Some(row) if span.is_zero() => snoozed.push(row.id),
                None if span.is_zero() => snoozed.push(id.clone()),
                Some(row) => {
                    match crate::core::plan::active_class(&row, &self.config.jobs, "snooze") {
                        Ok(_) => snoozed.push(row.id),
                        Err(e) => refused.push(e.to_string()),
                    }
                }
                None => refused.push(format!(
                    "the table {} has no job {id:?}",
                    self.config.jobs.table
                )),
            }
        }
        let names: Vec<&str> = snoozed.iter().map(String::as_str).collect();
        if !names.is_empty() {
            self.shared
                .snooze_all(&names, span, reason, &r.by)
                .await
                .map_err(|e| {
                    JobRefusal::Unavailable(format!(
                        "the snoozes could not be saved, so none was made: {e}"
                    ))
                })?;
        }
        tracing::info!(
            batch = batch.as_str(), by = %r.by, count = ids.len(), applied = names.len(),
            "bulk snooze by a person: {} of {} jobs", names.len(), ids.len()
        );
        let refused_count = refused.len();
        refused.truncate(REFUSALS_SHOWN);
        let mut answer = serde_json::json!({
            "action": "snooze",
            "count": ids.len(),
            "outcomes": {"applied": names.len(), "refused": refused_count},
            "batch": batch,
        });
        if !refused.is_empty() {
            answer["refused_sample"] = refused.into();
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::vocabulary::{Action, Severity};
    use crate::daemon::state::Select;

    fn finding(job: &str, kind: Kind, rule: &str, incident: Option<&str>) -> Finding {
        Finding {
            kind,
            rule: rule.into(),
            job_id: job.into(),
            status: "running".into(),
            phase: Some("designing".into()),
            age_seconds: 3000,
            threshold_seconds: 1800,
            since: 0.0,
            severity: Severity::Critical,
            action: Action::Fail,
            outcome: Outcome::None,
            message: String::new(),
            artifacts: Vec::new(),
            evidence: None,
            incident: incident.map(str::to_string),
            worker: None,
            host: None,
            pid: None,
            guard: Default::default(),
            progress: None,
            held: None,
        }
    }

    fn view(id: &str) -> crate::core::incident::View {
        crate::core::incident::View {
            id: id.into(),
            cause: String::new(),
            opened_at: 0.0,
            ended_at: None,
            jobs: 0,
            held_back: None,
            message: String::new(),
            ending: None,
        }
    }

    fn check(targets: Targets, expected: Option<&[&str]>) {
        let findings = [
            finding("", Kind::MassStall, "mass", None),
            finding("1", Kind::Stalled, "hb", Some("inc-1")),
            finding("1", Kind::DeadProcess, "pid", Some("inc-1")),
            finding("2", Kind::Stalled, "hb", Some("inc-1")),
            finding("3", Kind::Overdue, "old", None),
        ];
        let got = resolve(&targets, &findings, &[view("inc-1"), view("inc-2")]);
        let expected = expected.map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(got, expected, "{targets:?}");
    }

    #[test]
    fn targets_are_the_named_jobs_each_once() {
        check(Targets::Incident("inc-1".into()), Some(&["1", "2"]));
        check(Targets::Incident("inc-2".into()), Some(&[]));
        check(Targets::Incident("inc-9".into()), None);
        check(
            Targets::Ids(vec!["3".into(), "9".into(), "3".into()]),
            Some(&["3", "9"]),
        );
        let select = |kind: Option<&str>, rule: Option<&str>| Select {
            kind: kind.map(str::to_string),
            rule: rule.map(str::to_string),
            ..Select::default()
        };
        check(
            Targets::Select(select(Some("stalled"), None)),
            Some(&["1", "2"]),
        );
        check(
            Targets::Select(select(Some("stalled"), Some("old"))),
            Some(&[]),
        );
        check(Targets::Select(select(None, Some("old"))), Some(&["3"]));
        check(
            Targets::Select(Select {
                phase: Some("designing".into()),
                ..Select::default()
            }),
            Some(&["1", "2", "3"]),
        );
        check(Targets::Select(select(Some("mass_stall"), None)), Some(&[]));
    }
}
