//! The alert book: which findings are firing, which resolved, and what each sink has been
//! told. Pure and serializable: the daemon feeds it scans and delivery receipts, asks it what
//! is due for each sink, and saves it to the state directory after every change, so a restart
//! neither re-fires an open alert nor forgets to resolve one.
//!
//! The book is also the outbox: a message counts as told only when its sink reports it
//! delivered (or given up on, for a receiver that refuses it). Anything not yet told is due
//! again, after a restart too.
//!
//! Incidents (`core::incident`) are told to event sinks (webhook, Slack) as one: an
//! [`IncidentEntry`] opens and ends, and the alerts of its findings stay in the book (for
//! Alertmanager, the console and the outbox before a write) without being told one by one,
//! unless a sink already heard of one before it joined the incident: that sink then hears
//! its resolution too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{AlertKind, AlertSink, Severity};
use crate::core::detect::{Finding, FindingKey, Kind, Outcome};
use crate::core::incident::View;

/// A job id as a set of ids holds it: the scanner's own `String`s, or a test's `&str`s.
pub trait Id: std::borrow::Borrow<str> + Eq + std::hash::Hash {}

impl<T: std::borrow::Borrow<str> + Eq + std::hash::Hash> Id for T {}

/// How long a resolved alert stays in the book so Alertmanager hears the resolution again
/// (a lost request must not leave it open).
pub const RESOLVED_KEEP: Duration = Duration::from_secs(300);
/// Job ids an incident's messages name; the rest are counted.
pub const SAMPLE: usize = 10;
/// The prefix of an incident's key among the book's keys (a finding key starts with its
/// kind, never this).
pub const INCIDENT_KEY: &str = "incident/";

/// The book, as saved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Book {
    pub version: u32,
    /// By alert key: `kind/rule/job_id`.
    pub entries: BTreeMap<String, Entry>,
    /// Incidents, by incident id (absent from books saved before incidents).
    #[serde(default)]
    pub incidents: BTreeMap<String, IncidentEntry>,
}

/// One incident as the event sinks hear of it: one message when it opens, one when it ends.
/// Growth sends nothing (the count and sample are kept current for the ending and for a
/// message still waiting).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncidentEntry {
    pub id: String,
    /// The cause in words.
    pub cause: String,
    /// Database time it opened.
    pub opened_at: f64,
    /// Database time it ended.
    pub ended_at: Option<f64>,
    /// Jobs that have been in it.
    pub jobs: usize,
    /// The first few of its jobs, in the scan's order.
    pub sample: Vec<String>,
    pub held_back: Option<String>,
    pub message: String,
    /// How it ended, once it has (`core::incident::Incident::ending`).
    pub ending: Option<String>,
    /// The highest severity among its findings, for `min_severity`.
    pub severity: Severity,
    /// What each event sink has been told, by sink name.
    pub told: BTreeMap<String, Told>,
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
    /// The incident the finding is in (kept once set, until the alert fires anew): event
    /// sinks hear of the incident instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
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
    /// Whether `sink` hears of this alert by itself: its severity is enough, and it is
    /// outside any incident or the sink heard of it before it joined one.
    fn heard_by(&self, sink: &AlertSink) -> bool {
        self.severity >= sink.min_severity
            && (self.incident.is_none() || self.told.contains_key(&sink.name))
    }

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
            incidents: BTreeMap::new(),
        }
    }

    /// Takes in one scan's incidents (`views`) and its findings (each carrying its incident):
    /// an open incident not in the book opens, one in it takes the latest count, sample and
    /// message, and ends when the view says so. One the book has open that the views no
    /// longer hold (the job memory was reset) ends saying so. An incident first seen already
    /// ended is not announced.
    pub fn observe_incidents(&mut self, views: &[View], findings: &[Finding], now: f64) {
        for view in views {
            let members = || {
                findings
                    .iter()
                    .filter(|f| f.incident.as_deref() == Some(&view.id))
            };
            let severity = members().map(|f| f.severity).max();
            let mut sample: Vec<String> = Vec::new();
            for f in members().filter(|f| !f.job_id.is_empty()) {
                if sample.len() == SAMPLE {
                    break;
                }
                if !sample.contains(&f.job_id) {
                    sample.push(f.job_id.clone());
                }
            }
            let same = self
                .incidents
                .get(&view.id)
                .is_some_and(|e| e.opened_at == view.opened_at);
            if !same {
                if view.ended_at.is_some() {
                    continue;
                }
                // New, or an id used again after the memory was reset: a new incident.
                self.incidents.insert(
                    view.id.clone(),
                    IncidentEntry {
                        id: view.id.clone(),
                        cause: view.cause.clone(),
                        opened_at: view.opened_at,
                        ended_at: None,
                        jobs: view.jobs,
                        sample: Vec::new(),
                        held_back: None,
                        message: String::new(),
                        ending: None,
                        severity: Severity::Warning,
                        told: BTreeMap::new(),
                    },
                );
            }
            let Some(entry) = self.incidents.get_mut(&view.id) else {
                continue;
            };
            if entry.ended_at.is_some() {
                continue;
            }
            entry.jobs = view.jobs;
            entry.message.clone_from(&view.message);
            entry.held_back.clone_from(&view.held_back);
            entry.severity = entry.severity.max(severity.unwrap_or(Severity::Warning));
            if !sample.is_empty() {
                entry.sample = sample;
            }
            if let Some(at) = view.ended_at {
                entry.ended_at = Some(at);
                entry.ending.clone_from(&view.ending);
            }
        }
        for entry in self.incidents.values_mut() {
            if entry.ended_at.is_none() && !views.iter().any(|v| v.id == entry.id) {
                entry.ended_at = Some(now);
                entry.held_back = None;
                entry.ending = Some("unknown: jobwarden's job memory no longer holds it".into());
            }
        }
    }

    /// Takes in one scan: new findings fire, cleared ones resolve (saying why), findings that
    /// come back after resolving fire anew. `active` holds the ids of the scan's active rows;
    /// the alerts of `snoozed` jobs are held as they are: a snoozed job's new finding does not
    /// fire and its cleared one does not resolve until the snooze is over.
    pub fn observe(
        &mut self,
        findings: &[Finding],
        active: &HashSet<impl Id>,
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
                incident: None,
            });
            if entry.resolved.is_some() {
                // Back after clearing: a new alert.
                entry.resolved = None;
                entry.fired_at = now;
                entry.acted = None;
                entry.told.clear();
                entry.incident = None;
            }
            if f.incident.is_some() {
                entry.incident.clone_from(&f.incident);
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
        active: &HashSet<impl Id>,
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

    /// What an event sink (webhook, Slack) should be told now about single findings (see
    /// [`Book::incidents_due`] for incidents).
    pub fn due(&self, sink: &AlertSink, now: f64) -> Vec<Due> {
        self.entries
            .iter()
            .filter(|(_, e)| e.heard_by(sink) && !e.held)
            .filter_map(|(key, e)| {
                next_message(e.resolved.is_some(), e.told.get(&sink.name), sink, now).map(
                    |(state, reminder)| Due {
                        key: key.clone(),
                        state,
                        reminder,
                    },
                )
            })
            .collect()
    }

    /// What an event sink should be told now about incidents, keyed [`incident_key`].
    pub fn incidents_due(&self, sink: &AlertSink, now: f64) -> Vec<Due> {
        self.incidents
            .values()
            .filter(|i| i.severity >= sink.min_severity)
            .filter_map(|i| {
                next_message(i.ended_at.is_some(), i.told.get(&sink.name), sink, now).map(
                    |(state, reminder)| Due {
                        key: incident_key(&i.id),
                        state,
                        reminder,
                    },
                )
            })
            .collect()
    }

    /// The incident an [`incident_key`] names.
    pub fn incident(&self, key: &str) -> Option<&IncidentEntry> {
        key.strip_prefix(INCIDENT_KEY)
            .and_then(|id| self.incidents.get(id))
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
        if let Some(id) = key.strip_prefix(INCIDENT_KEY) {
            if let Some(i) = self.incidents.get_mut(id) {
                if state == State::Resolved && i.ended_at.is_none() {
                    return;
                }
                i.told.insert(sink.to_string(), Told { state, at });
            }
            return;
        }
        if let Some(e) = self.entries.get_mut(key) {
            // A stale receipt for an alert that has since fired anew is ignored.
            if state == State::Resolved && e.resolved.is_none() {
                return;
            }
            e.told.insert(sink.to_string(), Told { state, at });
        }
    }

    /// Forgets resolved alerts and ended incidents that no sink still needs: no message
    /// about them is on its way (`in_flight`), every event sink that hears of them has been
    /// told the end, and (for alerts) Alertmanager's resend window is over.
    pub fn prune(&mut self, sinks: &[AlertSink], in_flight: &HashSet<&str>, now: f64) {
        let keep_for = if sinks.iter().any(|s| s.kind == AlertKind::Alertmanager) {
            RESOLVED_KEEP.as_secs_f64()
        } else {
            0.0
        };
        let events = || sinks.iter().filter(|s| s.kind != AlertKind::Alertmanager);
        let unfinished = |told: &BTreeMap<String, Told>, s: &AlertSink| {
            told.get(&s.name).is_none_or(|t| t.state == State::Firing)
        };
        self.entries.retain(|key, e| {
            let Some(r) = &e.resolved else { return true };
            if in_flight.contains(key.as_str()) {
                return true;
            }
            let pending = events().any(|s| e.heard_by(s) && unfinished(&e.told, s));
            pending || now - r.at < keep_for
        });
        self.incidents.retain(|id, i| {
            i.ended_at.is_none()
                || in_flight.contains(incident_key(id).as_str())
                || events().any(|s| i.severity >= s.min_severity && unfinished(&i.told, s))
        });
    }

    /// Records that jobwarden wrote to jobs between scans (a person's action; each job id
    /// with what was done): their open alerts resolve saying so. One pass over the book,
    /// whatever the number of jobs (a bulk action writes thousands).
    pub fn acted(&mut self, done: &HashMap<&str, &str>) {
        for e in self.entries.values_mut() {
            if e.resolved.is_some() {
                continue;
            }
            if let Some(what) = done.get(e.job_id.as_str()) {
                e.acted = Some((*what).to_string());
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

/// An incident's key among the book's keys (in receipts and deliveries).
pub fn incident_key(id: &str) -> String {
    format!("{INCIDENT_KEY}{id}")
}

/// What a sink should hear next about an alert or an incident, from whether it is over and
/// what the sink was last told: the firing (also when it ended before the sink heard of it,
/// its firing message lost with a restart: the end follows its receipt), a reminder
/// (`repeat_every`), the end, or nothing.
fn next_message(
    over: bool,
    told: Option<&Told>,
    sink: &AlertSink,
    now: f64,
) -> Option<(State, bool)> {
    match (over, told) {
        (_, None) => Some((State::Firing, false)),
        (false, Some(t)) if t.state == State::Firing => sink
            .repeat_every
            .filter(|every| now - t.at >= every.as_secs_f64())
            .map(|_| (State::Firing, true)),
        (true, Some(t)) if t.state == State::Firing => Some((State::Resolved, false)),
        _ => None,
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
            worker: None,
            host: None,
            pid: None,
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
        book.observe(std::slice::from_ref(&mass), &none(), &none(), 0.0);
        book.told("hook", "mass_stall/hb/", State::Firing, 0.5);
        // Before the writes: job 1's finding is recorded, and nothing else changes (the mass
        // stall, not among the findings yet, stays open).
        let fired = book.fire(&[finding("1", Severity::Critical)], &none(), 1.0);
        assert_eq!(fired, ["stalled/hb/1".to_string()].into());
        assert!(book.entries["mass_stall/hb/"].resolved.is_none());
        // Killed after the write: the saved book is all a restart has, and job 1 is gone.
        let text = serde_json::to_string(&book).unwrap();
        let mut restarted: Book = serde_json::from_str(&text).unwrap();
        restarted.observe(&[], &none(), &none(), 20.0);
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
        book.observe(&[], &none(), &none(), 1.0);
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
        book.observe(&[stall], &none(), &none(), 0.0);
        book.observe(&[], &none(), &none(), 1.0);
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

    fn view(id: &str, jobs: usize, ended: Option<&str>) -> View {
        View {
            id: id.into(),
            cause: "the jobs of rule hb stopped together".into(),
            opened_at: 100.0,
            ended_at: ended.map(|_| 200.0),
            jobs,
            held_back: None,
            message: format!("the jobs of rule hb stopped together: {jobs} jobs"),
            ending: ended.map(str::to_string),
        }
    }

    /// `n` findings of jobs 1..=n in incident `id`.
    fn members(n: usize, id: &str) -> Vec<Finding> {
        (1..=n)
            .map(|i| {
                let mut f = finding(&i.to_string(), Severity::Critical);
                f.incident = Some(id.into());
                f
            })
            .collect()
    }

    fn scan(book: &mut Book, findings: &[Finding], views: &[View], now: f64) {
        let ids: Vec<String> = (1..=400).map(|i| i.to_string()).collect();
        let active: HashSet<&str> = ids.iter().map(String::as_str).collect();
        book.observe(findings, &active, &none(), now);
        book.observe_incidents(views, findings, now);
    }

    #[test]
    fn an_incident_is_told_once_when_it_opens_and_once_when_it_ends() {
        let hook = sink("hook", AlertKind::Webhook);
        let am = sink("am", AlertKind::Alertmanager);
        let mut book = Book::new();
        scan(
            &mut book,
            &members(300, "inc-1"),
            &[view("inc-1", 300, None)],
            0.0,
        );
        assert!(book.due(&hook, 0.0).is_empty(), "no finding told by itself");
        assert_eq!(
            states(&book.incidents_due(&hook, 0.0)),
            [("incident/inc-1", State::Firing, false)]
        );
        let told = &book.incidents["inc-1"];
        assert_eq!((told.jobs, told.sample.len()), (300, SAMPLE));
        assert_eq!(told.sample[..3], ["1", "2", "3"]);
        assert_eq!(told.severity, Severity::Critical);
        assert_eq!(
            book.alertmanager_set(&am).0.len(),
            300,
            "Alertmanager: one alert per finding"
        );
        // Restarted before it was told: the saved book still has it due.
        let text = serde_json::to_string(&book).unwrap();
        let mut book: Book = serde_json::from_str(&text).unwrap();
        assert_eq!(book.incidents_due(&hook, 1.0).len(), 1);
        book.told("hook", "incident/inc-1", State::Firing, 1.0);
        // It grows: nothing more is said, the count is kept for its end.
        scan(
            &mut book,
            &members(310, "inc-1"),
            &[view("inc-1", 310, None)],
            2.0,
        );
        assert!(book.incidents_due(&hook, 2.0).is_empty());
        assert!(book.due(&hook, 2.0).is_empty());
        // Its jobs are failed by hand: it ends, saying how; the findings resolve silently.
        let ending = "310 finished by a person or the application";
        book.observe(&[], &none(), &none(), 3.0);
        book.observe_incidents(&[view("inc-1", 310, Some(ending))], &[], 3.0);
        assert!(book.due(&hook, 3.0).is_empty());
        assert_eq!(
            states(&book.incidents_due(&hook, 3.0)),
            [("incident/inc-1", State::Resolved, false)]
        );
        assert_eq!(book.incidents["inc-1"].ending.as_deref(), Some(ending));
        assert_eq!(book.incidents["inc-1"].jobs, 310);
        book.told("hook", "incident/inc-1", State::Resolved, 4.0);
        book.prune(&[hook], &HashSet::new(), 4.0);
        assert!(book.incidents.is_empty() && book.entries.is_empty());
    }

    #[test]
    fn a_finding_told_before_it_joined_an_incident_resolves_by_itself() {
        let hook = sink("hook", AlertKind::Webhook);
        let mut book = Book::new();
        observe_one(&mut book, 0.0);
        book.told("hook", "stalled/hb/1", State::Firing, 0.0);
        scan(
            &mut book,
            &members(5, "inc-1"),
            &[view("inc-1", 5, None)],
            1.0,
        );
        assert!(book.due(&hook, 1.0).is_empty());
        assert_eq!(
            book.entries["stalled/hb/1"].incident.as_deref(),
            Some("inc-1")
        );
        // Before the next scan's writes, its finding has no incident yet: it stays in it.
        book.fire(&[finding("1", Severity::Critical)], &none(), 2.0);
        assert_eq!(
            book.entries["stalled/hb/1"].incident.as_deref(),
            Some("inc-1")
        );
        scan(
            &mut book,
            &members(5, "inc-1")[1..],
            &[view("inc-1", 5, None)],
            3.0,
        );
        assert_eq!(
            states(&book.due(&hook, 3.0)),
            [("stalled/hb/1", State::Resolved, false)],
            "the sink that heard it fire hears it resolve"
        );
    }

    #[test]
    fn an_incident_seen_only_ended_is_not_told_and_one_forgotten_ends() {
        let hook = sink("hook", AlertKind::Webhook);
        let mut book = Book::new();
        scan(
            &mut book,
            &[],
            &[view("inc-1", 5, Some("5 came back"))],
            0.0,
        );
        assert!(book.incidents.is_empty());
        scan(
            &mut book,
            &members(5, "inc-2"),
            &[view("inc-2", 5, None)],
            1.0,
        );
        book.told("hook", "incident/inc-2", State::Firing, 1.0);
        // The job memory was reset: the incident is gone from the report.
        scan(&mut book, &[], &[], 2.0);
        let i = &book.incidents["inc-2"];
        assert_eq!(i.ended_at, Some(2.0));
        assert!(i.ending.as_deref().unwrap_or("").starts_with("unknown"));
        assert_eq!(book.incidents_due(&hook, 2.0).len(), 1);
        // A sink for critical alerts only hears nothing of an incident of warnings.
        let mut critical = sink("pager", AlertKind::Slack);
        critical.min_severity = Severity::Critical;
        let mut warn = members(5, "inc-3");
        for f in &mut warn {
            f.severity = Severity::Warning;
        }
        scan(&mut book, &warn, &[view("inc-3", 5, None)], 3.0);
        assert!(book
            .incidents_due(&critical, 3.0)
            .iter()
            .all(|d| d.key != "incident/inc-3"));
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
