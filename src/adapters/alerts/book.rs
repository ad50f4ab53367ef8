//! The alert book: which findings are firing, which resolved, and what each sink has been
//! told. Pure and serializable: the daemon feeds it scans and delivery receipts, asks it what
//! is due for each sink, and saves it to the state directory after every change, so a restart
//! neither re-fires an open alert nor forgets to resolve one.
//!
//! The book is also the outbox: a message counts as told only when its sink reports it
//! delivered (or given up on, for a receiver that refuses it). Anything not yet told is due
//! again, after a restart too.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{AlertKind, AlertSink, Severity};
use crate::core::detect::{Finding, FindingKey, Kind, Outcome};

/// How long a resolved alert stays in the book so Alertmanager hears the resolution again
/// (a lost request must not leave it open).
pub const RESOLVED_KEEP: Duration = Duration::from_secs(300);

/// The book, as saved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Book {
    pub version: u32,
    /// By alert key: `kind/rule/job_id`.
    pub entries: BTreeMap<String, Entry>,
}

/// One alert: a finding key over its life.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    pub rule: String,
    pub job_id: String,
    pub severity: Severity,
    /// The latest finding, as its JSON (what receivers get).
    pub finding: serde_json::Value,
    /// Unix time the finding appeared.
    pub fired_at: f64,
    /// Set when the finding cleared.
    pub resolved: Option<Resolution>,
    /// What jobwarden wrote to the job, if it did (`failed`, `requeued`).
    pub acted: Option<String>,
    /// What each sink has been told, by sink name.
    pub told: BTreeMap<String, Told>,
    /// The job is snoozed: nothing about this alert is sent (no reminder, no resend, no
    /// resolution) until the snooze ends, when it carries on from what is true then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// Why and when an alert resolved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resolution {
    pub at: f64,
    pub reason: String,
}

/// The last thing a sink was told about an alert.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Told {
    pub state: State,
    pub at: f64,
}

/// An alert's state, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Firing,
    Resolved,
}

/// Something a sink should be told.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub key: String,
    pub state: State,
    /// A reminder of an alert still firing (`repeat_every`).
    pub reminder: bool,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

impl Entry {
    /// The finding it is about.
    pub fn key(&self) -> FindingKey {
        FindingKey {
            kind: self.kind,
            rule: self.rule.clone(),
            job_id: self.job_id.clone(),
        }
    }
}

impl Book {
    pub const VERSION: u32 = 1;

    pub fn new() -> Book {
        Book {
            version: Book::VERSION,
            entries: BTreeMap::new(),
        }
    }

    /// Takes in one scan: new findings fire, cleared ones resolve (saying why), findings that
    /// come back after resolving fire anew. `active` holds the ids of the scan's active rows;
    /// the alerts of `snoozed` jobs are held as they are: a snoozed job's new finding does not
    /// fire and its cleared one does not resolve until the snooze is over.
    pub fn observe(
        &mut self,
        findings: &[Finding],
        active: &HashSet<&str>,
        snoozed: &HashSet<&str>,
        now: f64,
    ) {
        let current = self.fire(findings, snoozed, now);
        self.resolve_cleared(&current, active, snoozed, now);
    }

    /// Records `findings` as firing (new ones, and ones back after clearing), and returns
    /// their keys; resolves nothing. The daemon calls it with the findings it is about to
    /// write, and saves the book, before the writes: a kill between a write and the scan's
    /// own [`Book::observe`] must not lose the alert of a job that is no longer active.
    pub fn fire(
        &mut self,
        findings: &[Finding],
        snoozed: &HashSet<&str>,
        now: f64,
    ) -> HashSet<String> {
        let mut current = HashSet::with_capacity(findings.len());
        for f in findings {
            let key = f.key().to_string();
            if snoozed.contains(f.job_id.as_str()) && !self.entries.contains_key(&key) {
                continue;
            }
            let value = serde_json::to_value(f).unwrap_or(serde_json::Value::Null);
            let acted = match (f.outcome, f.action) {
                (Outcome::Applied, crate::config::Action::Fail) => Some("failed".to_string()),
                (Outcome::Applied, crate::config::Action::Requeue) => Some("re-queued".to_string()),
                _ => None,
            };
            let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
                kind: f.kind,
                rule: f.rule.clone(),
                job_id: f.job_id.clone(),
                severity: f.severity,
                finding: value.clone(),
                fired_at: now,
                resolved: None,
                acted: None,
                told: BTreeMap::new(),
                held: false,
            });
            if entry.resolved.is_some() {
                // Back after clearing: a new alert.
                entry.resolved = None;
                entry.fired_at = now;
                entry.acted = None;
                entry.told.clear();
            }
            entry.finding = value;
            entry.severity = f.severity;
            if acted.is_some() {
                entry.acted = acted;
            }
            current.insert(key);
        }
        current
    }

    /// Resolves the open alerts whose findings are not in `current` (saying why), and holds
    /// those of snoozed jobs as they are.
    fn resolve_cleared(
        &mut self,
        current: &HashSet<String>,
        active: &HashSet<&str>,
        snoozed: &HashSet<&str>,
        now: f64,
    ) {
        for (key, entry) in &mut self.entries {
            entry.held = snoozed.contains(entry.job_id.as_str());
            if entry.resolved.is_none() && !current.contains(key) && !entry.held {
                let about_files = matches!(
                    entry.kind,
                    Kind::IncompleteArtifact | Kind::OrphanArtifact | Kind::MissingArtifact
                );
                let reason = match &entry.acted {
                    Some(what) => format!("jobwarden {what} the job"),
                    // About the table as a whole, not a job.
                    None if entry.kind == Kind::MassStall => {
                        "fewer jobs look stuck at once: the mass stall is over".to_string()
                    }
                    None if about_files => {
                        "the condition cleared: the output or the row changed".to_string()
                    }
                    None if !active.contains(entry.job_id.as_str()) => {
                        "the job finished: it is no longer pending or running".to_string()
                    }
                    None => "the job came back to life: the condition cleared".to_string(),
                };
                entry.resolved = Some(Resolution { at: now, reason });
            }
        }
    }

    /// What an event sink (webhook, Slack) should be told now.
    pub fn due(&self, sink: &AlertSink, now: f64) -> Vec<Due> {
        let mut out = Vec::new();
        for (key, e) in &self.entries {
            if e.severity < sink.min_severity || e.held {
                continue;
            }
            let told = e.told.get(&sink.name);
            match (&e.resolved, told) {
                (None, None) => out.push(Due {
                    key: key.clone(),
                    state: State::Firing,
                    reminder: false,
                }),
                (None, Some(t)) if t.state == State::Firing => {
                    if let Some(every) = sink.repeat_every {
                        if now - t.at >= every.as_secs_f64() {
                            out.push(Due {
                                key: key.clone(),
                                state: State::Firing,
                                reminder: true,
                            });
                        }
                    }
                }
                // Resolved before this sink heard of it (its firing message was lost with
                // a restart): announce it anyway, the resolution follows its receipt.
                (Some(_), None) => out.push(Due {
                    key: key.clone(),
                    state: State::Firing,
                    reminder: false,
                }),
                (Some(_), Some(t)) if t.state == State::Firing => out.push(Due {
                    key: key.clone(),
                    state: State::Resolved,
                    reminder: false,
                }),
                _ => {}
            }
        }
        out
    }

    /// The alerts Alertmanager should hold now: every firing one, and those resolved within
    /// [`RESOLVED_KEEP`] (sent with `endsAt` in the past so they close). `changed` is true
    /// when one of them differs from what the sink was last told, so the set goes out at once
    /// rather than at the next resend.
    pub fn alertmanager_set(&self, sink: &AlertSink) -> (Vec<&Entry>, bool) {
        let mut changed = false;
        let set: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| e.severity >= sink.min_severity && !e.held)
            .inspect(|e| {
                let state = if e.resolved.is_some() {
                    State::Resolved
                } else {
                    State::Firing
                };
                if e.told.get(&sink.name).map(|t| t.state) != Some(state) {
                    changed = true;
                }
            })
            .collect();
        (set, changed)
    }

    /// Records that a sink was told (or gave up telling) `state` about `key`.
    pub fn told(&mut self, sink: &str, key: &str, state: State, at: f64) {
        if let Some(e) = self.entries.get_mut(key) {
            // A stale receipt for an alert that has since fired anew is ignored.
            if state == State::Resolved && e.resolved.is_none() {
                return;
            }
            e.told.insert(sink.to_string(), Told { state, at });
        }
    }

    /// Forgets resolved alerts that no sink still needs: no message about them is on its way
    /// (`in_flight`), every event sink has been told the resolution (or never heard of the
    /// alert), and Alertmanager's resend window is over.
    pub fn prune(&mut self, sinks: &[AlertSink], in_flight: &HashSet<&str>, now: f64) {
        let keep_for = if sinks.iter().any(|s| s.kind == AlertKind::Alertmanager) {
            RESOLVED_KEEP.as_secs_f64()
        } else {
            0.0
        };
        self.entries.retain(|key, e| {
            let Some(r) = &e.resolved else { return true };
            if in_flight.contains(key.as_str()) {
                return true;
            }
            let pending = sinks.iter().any(|s| {
                s.kind != AlertKind::Alertmanager
                    && e.severity >= s.min_severity
                    && e.told.get(&s.name).is_none_or(|t| t.state == State::Firing)
            });
            pending || now - r.at < keep_for
        });
    }

    /// Records that jobwarden wrote to a job between scans (a person's action): its open
    /// alerts resolve saying so.
    pub fn acted(&mut self, job_id: &str, what: &str) {
        for e in self.entries.values_mut() {
            if e.job_id == job_id && e.resolved.is_none() {
                e.acted = Some(what.to_string());
            }
        }
    }

    /// Alerts firing now.
    pub fn firing(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.resolved.is_none())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Action, AlertSink};
    use crate::core::detect::Kind;
    use crate::core::job::Guard;

    fn finding(job: &str, severity: Severity) -> Finding {
        Finding {
            kind: Kind::Stalled,
            rule: "hb".into(),
            job_id: job.into(),
            status: "running".into(),
            phase: None,
            age_seconds: 100,
            threshold_seconds: 60,
            since: 0.0,
            severity,
            action: Action::Alert,
            outcome: Outcome::None,
            message: "no heartbeat".into(),
            artifacts: vec![],
            evidence: None,
            incident: None,
            guard: Guard::default(),
            progress: None,
            held: None,
        }
    }

    fn sink(name: &str, kind: AlertKind) -> AlertSink {
        AlertSink {
            name: name.into(),
            kind,
            url: "http://127.0.0.1:1".into(),
            min_severity: Severity::Warning,
            headers: vec![],
            hmac_secret: None,
            repeat_every: None,
            timeout: Duration::from_secs(1),
            queue: 10,
        }
    }

    /// No job is snoozed.
    fn none() -> HashSet<&'static str> {
        HashSet::new()
    }

    /// A scan in which job 1, active, has one critical finding.
    fn observe_one(book: &mut Book, now: f64) {
        book.observe(
            &[finding("1", Severity::Critical)],
            &["1"].into(),
            &none(),
            now,
        );
    }

    fn states(due: &[Due]) -> Vec<(&str, State, bool)> {
        due.iter()
            .map(|d| (d.key.as_str(), d.state, d.reminder))
            .collect()
    }

    #[test]
    fn fires_once_resolves_once() {
        let mut book = Book::new();
        let hook = sink("hook", AlertKind::Webhook);
        let active: HashSet<&str> = ["1"].into();
        book.observe(&[finding("1", Severity::Critical)], &active, &none(), 0.0);
        assert_eq!(
            states(&book.due(&hook, 0.0)),
            [("stalled/hb/1", State::Firing, false)]
        );
        book.told("hook", "stalled/hb/1", State::Firing, 1.0);
        // Still there on the next scans: nothing more to say.
        for t in 2..5 {
            book.observe(
                &[finding("1", Severity::Critical)],
                &active,
                &none(),
                f64::from(t),
            );
            assert!(book.due(&hook, f64::from(t)).is_empty());
        }
        book.observe(&[], &active, &none(), 10.0);
        assert_eq!(
            states(&book.due(&hook, 10.0)),
            [("stalled/hb/1", State::Resolved, false)]
        );
        assert_eq!(
            book.entries["stalled/hb/1"]
                .resolved
                .as_ref()
                .map(|r| r.reason.as_str()),
            Some("the job came back to life: the condition cleared")
        );
        book.told("hook", "stalled/hb/1", State::Resolved, 11.0);
        assert!(book.due(&hook, 11.0).is_empty());
        book.prune(&[hook], &HashSet::new(), 11.0);
        assert!(book.entries.is_empty());
    }

    #[test]
    fn an_alert_recorded_before_its_write_survives_a_kill_after_the_write() {
        let hook = sink("hook", AlertKind::Webhook);
        let mut mass = finding("", Severity::Critical);
        mass.kind = Kind::MassStall;
        let mut book = Book::new();
        book.observe(std::slice::from_ref(&mass), &HashSet::new(), &none(), 0.0);
        book.told("hook", "mass_stall/hb/", State::Firing, 0.5);
        // Before the writes: job 1's finding is recorded, and nothing else changes (the mass
        // stall, not among the findings yet, stays open).
        let fired = book.fire(&[finding("1", Severity::Critical)], &none(), 1.0);
        assert_eq!(fired, ["stalled/hb/1".to_string()].into());
        assert!(book.entries["mass_stall/hb/"].resolved.is_none());
        // Killed after the write: the saved book is all a restart has, and job 1 is gone.
        let text = serde_json::to_string(&book).unwrap();
        let mut restarted: Book = serde_json::from_str(&text).unwrap();
        restarted.observe(&[], &HashSet::new(), &none(), 20.0);
        assert_eq!(
            states(&restarted.due(&hook, 20.0)),
            [
                ("mass_stall/hb/", State::Resolved, false),
                ("stalled/hb/1", State::Firing, false)
            ],
            "the firing alert goes out, then its resolution"
        );
        restarted.told("hook", "stalled/hb/1", State::Firing, 21.0);
        assert_eq!(
            states(&restarted.due(&hook, 21.0)),
            [
                ("mass_stall/hb/", State::Resolved, false),
                ("stalled/hb/1", State::Resolved, false)
            ]
        );
    }

    #[test]
    fn resolution_says_why() {
        let mut book = Book::new();
        let mut failed = finding("1", Severity::Critical);
        failed.outcome = Outcome::Applied;
        failed.action = Action::Fail;
        book.observe(
            &[failed, finding("2", Severity::Warning)],
            &["1", "2"].into(),
            &none(),
            0.0,
        );
        book.observe(&[], &HashSet::new(), &none(), 1.0);
        let reason = |k: &str| book.entries[k].resolved.clone().map(|r| r.reason);
        assert_eq!(
            reason("stalled/hb/1").as_deref(),
            Some("jobwarden failed the job")
        );
        assert_eq!(
            reason("stalled/hb/2").as_deref(),
            Some("the job finished: it is no longer pending or running")
        );
    }

    #[test]
    fn a_mass_stall_resolves_as_one_not_as_a_job() {
        let mut book = Book::new();
        let mut stall = finding("", Severity::Critical);
        stall.kind = crate::core::detect::Kind::MassStall;
        stall.rule = "safety".into();
        book.observe(&[stall], &HashSet::new(), &none(), 0.0);
        book.observe(&[], &HashSet::new(), &none(), 1.0);
        assert_eq!(
            book.entries["mass_stall/safety/"]
                .resolved
                .as_ref()
                .map(|r| r.reason.as_str()),
            Some("fewer jobs look stuck at once: the mass stall is over")
        );
    }

    #[test]
    fn an_alert_that_resolved_before_any_delivery_is_still_announced_then_resolved() {
        let mut book = Book::new();
        let hook = sink("hook", AlertKind::Webhook);
        observe_one(&mut book, 0.0);
        assert_eq!(book.due(&hook, 0.0).len(), 1);
        assert_eq!(book.due(&hook, 5.0).len(), 1, "still due until told");
        // It clears before the receiver heard of it (its message was lost with a restart).
        book.observe(&[], &["1"].into(), &none(), 6.0);
        assert_eq!(
            states(&book.due(&hook, 6.0)),
            [("stalled/hb/1", State::Firing, false)]
        );
        book.prune(std::slice::from_ref(&hook), &HashSet::new(), 6.0);
        assert_eq!(book.entries.len(), 1, "kept until the sink has heard both");
        book.told("hook", "stalled/hb/1", State::Firing, 7.0);
        assert_eq!(
            states(&book.due(&hook, 7.0)),
            [("stalled/hb/1", State::Resolved, false)]
        );
        book.told("hook", "stalled/hb/1", State::Resolved, 8.0);
        book.prune(&[hook], &HashSet::new(), 8.0);
        assert!(book.entries.is_empty());
    }

    #[test]
    fn severity_filter_and_reminders() {
        let mut book = Book::new();
        let mut critical_only = sink("pager", AlertKind::Slack);
        critical_only.min_severity = Severity::Critical;
        critical_only.repeat_every = Some(Duration::from_secs(60));
        book.observe(
            &[
                finding("1", Severity::Warning),
                finding("2", Severity::Critical),
            ],
            &["1", "2"].into(),
            &none(),
            0.0,
        );
        assert_eq!(
            states(&book.due(&critical_only, 0.0)),
            [("stalled/hb/2", State::Firing, false)]
        );
        book.told("pager", "stalled/hb/2", State::Firing, 0.0);
        assert!(book.due(&critical_only, 59.0).is_empty());
        assert_eq!(
            states(&book.due(&critical_only, 60.0)),
            [("stalled/hb/2", State::Firing, true)]
        );
    }

    #[test]
    fn a_finding_that_returns_fires_anew() {
        let mut book = Book::new();
        let hook = sink("hook", AlertKind::Webhook);
        observe_one(&mut book, 0.0);
        book.told("hook", "stalled/hb/1", State::Firing, 0.0);
        book.observe(&[], &["1"].into(), &none(), 1.0);
        observe_one(&mut book, 2.0);
        assert_eq!(
            states(&book.due(&hook, 2.0)),
            [("stalled/hb/1", State::Firing, false)]
        );
        // A late receipt of the old resolution does not cancel the new firing.
        book.told("hook", "stalled/hb/1", State::Resolved, 3.0);
        assert_eq!(book.due(&hook, 3.0).len(), 1);
    }

    #[test]
    fn alertmanager_keeps_resolved_alerts_for_a_while() {
        let mut book = Book::new();
        let am = sink("am", AlertKind::Alertmanager);
        observe_one(&mut book, 0.0);
        let (set, changed) = book.alertmanager_set(&am);
        assert!(changed && set.len() == 1);
        book.told("am", "stalled/hb/1", State::Firing, 0.0);
        assert!(!book.alertmanager_set(&am).1);
        book.observe(&[], &["1"].into(), &none(), 10.0);
        assert!(book.alertmanager_set(&am).1, "resolution goes out at once");
        book.prune(std::slice::from_ref(&am), &HashSet::new(), 100.0);
        assert_eq!(book.entries.len(), 1);
        book.prune(&[am], &HashSet::new(), 10.0 + RESOLVED_KEEP.as_secs_f64());
        assert!(book.entries.is_empty());
    }

    #[test]
    fn round_trips_through_json() {
        let mut book = Book::new();
        observe_one(&mut book, 0.0);
        book.told("hook", "stalled/hb/1", State::Firing, 1.0);
        let text = serde_json::to_string(&book).unwrap();
        let back: Book = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back.entries["stalled/hb/1"].told["hook"],
            Told {
                state: State::Firing,
                at: 1.0
            }
        );
    }

    #[test]
    fn a_snoozed_job_is_silent_and_carries_on_after() {
        let mut book = Book::new();
        let mut hook = sink("hook", AlertKind::Webhook);
        hook.repeat_every = Some(Duration::from_secs(10));
        let snoozed: HashSet<&str> = ["1", "2"].into();
        // Job 1 fired before its snooze; job 2's finding appears during its snooze.
        observe_one(&mut book, 0.0);
        book.told("hook", "stalled/hb/1", State::Firing, 0.0);
        let both = [
            finding("1", Severity::Critical),
            finding("2", Severity::Critical),
        ];
        book.observe(&both, &["1", "2"].into(), &snoozed, 5.0);
        assert!(
            book.due(&hook, 50.0).is_empty(),
            "no reminder, no new alert"
        );
        // Job 1 clears while snoozed: not resolved (nor "came back to life") yet.
        book.observe(&both[1..], &["1", "2"].into(), &snoozed, 60.0);
        assert!(book.entries["stalled/hb/1"].resolved.is_none());
        assert!(book.due(&hook, 60.0).is_empty());
        let am = sink("am", AlertKind::Alertmanager);
        assert!(
            book.alertmanager_set(&am).0.is_empty(),
            "Alertmanager hears nothing"
        );
        // The snooze ends: job 1 resolves, job 2 fires, from what is true then.
        book.observe(&both[1..], &["1", "2"].into(), &none(), 70.0);
        assert_eq!(
            states(&book.due(&hook, 70.0)),
            [
                ("stalled/hb/1", State::Resolved, false),
                ("stalled/hb/2", State::Firing, false)
            ]
        );
    }
}
