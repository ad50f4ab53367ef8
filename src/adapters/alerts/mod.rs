//! Alerts: one per finding key (kind, rule, job id), sent when it appears, not again while it
//! stays (unless a sink asks for reminders), and resolved when it clears, saying why.
//!
//! - [`book`] decides (pure): what is firing, what resolved, what each sink still has to hear;
//!   findings in an incident are told to webhook and Slack as the incident (one message when
//!   it opens, one when it ends), and to Alertmanager one by one with an `incident` label.
//! - [`payload`] formats (pure): the webhook, Slack and Alertmanager bodies.
//! - [`delivery`] sends: a queue and a task per sink, retrying with backoff.
//!
//! [`Alerter`] ties them to the daemon: it feeds the book each scan, queues what is due,
//! records receipts, and saves the book atomically to `alerts.json` in the state directory
//! after every change. A corrupt or unreadable state file is reported and replaced, never a
//! crash. Alertmanager gets the whole set of open alerts every [`ALERTMANAGER_RESEND`], with
//! `endsAt` a few periods ahead, as Prometheus does; resolved ones are re-sent for
//! [`book::RESOLVED_KEEP`] with `endsAt` in the past.

pub mod book;
pub mod delivery;
pub mod payload;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::adapters::clock::Clock;
use crate::config::{AlertKind, AlertSink, Config};
use crate::core::detect::{Finding, FindingKey};
use crate::core::incident::View;
use book::{Book, Due, Entry, State};
use delivery::SinkMetrics;
use delivery::{Outgoing, Receipt, SinkQueue};
use payload::Context;

/// How often the open alerts are re-sent to Alertmanager.
pub const ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);
/// More new alerts than this for one sink in one scan go out as one digest message.
pub const DIGEST_THRESHOLD: usize = 20;
/// The state file, in the state directory.
pub const STATE_FILE: &str = "alerts.json";

/// A running sink.
struct Sink {
    spec: AlertSink,
    queue: Arc<SinkQueue>,
    task: tokio::task::JoinHandle<()>,
}

/// The daemon's alerting.
pub struct Alerter {
    book: Book,
    path: PathBuf,
    sinks: Vec<Sink>,
    ctx: Context,
    /// Messages queued and not yet receipted: (sink, key, state).
    in_flight: HashSet<(String, String, State)>,
    /// When each Alertmanager sink was last sent the set.
    last_set: HashMap<String, f64>,
    receipts_tx: mpsc::UnboundedSender<Receipt>,
    receipts_rx: mpsc::UnboundedReceiver<Receipt>,
    client: reqwest::Client,
    metrics: delivery::SinkMetrics,
    /// The alerts' timestamps.
    clock: Clock,
    /// Receipts recorded in the book since the last save.
    dirty: bool,
    /// When the book was last saved.
    saved_at: Option<tokio::time::Instant>,
    /// Where a failed save is counted (the daemon's).
    save_errors: Option<crate::adapters::state::SaveErrors>,
}

/// Receipts are saved at most this often (and at every scan, and at shutdown): a burst of
/// thousands of deliveries costs a few saves, not one each.
pub const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Alerter {
    /// Loads the book from the state directory and starts a task per sink.
    pub fn start(config: &Config, metrics: &SinkMetrics, clock: Clock) -> Alerter {
        let path = config.state_dir.join(STATE_FILE);
        let book = load_book(&path);
        let (receipts_tx, receipts_rx) = mpsc::unbounded_channel();
        let client = reqwest::Client::builder()
            .user_agent(concat!("jobwarden/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let mut alerter = Alerter {
            book,
            path,
            sinks: Vec::new(),
            ctx: context(config),
            in_flight: HashSet::new(),
            last_set: HashMap::new(),
            receipts_tx,
            receipts_rx,
            client,
            metrics: metrics.clone(),
            clock,
            dirty: false,
            saved_at: None,
            save_errors: None,
        };
        for spec in &config.alerts {
            metrics.register(&spec.name);
        }
        alerter.start_sinks(&config.alerts);
        alerter
    }

    /// Counts each failed save of the book in `errors` (and clears it after a good one).
    pub fn reporting_to(mut self, errors: crate::adapters::state::SaveErrors) -> Alerter {
        self.save_errors = Some(errors);
        self
    }

    fn start_sinks(&mut self, specs: &[AlertSink]) {
        for spec in specs {
            let (queue, task) = delivery::spawn(
                spec.clone(),
                self.client.clone(),
                self.metrics.clone(),
                self.receipts_tx.clone(),
            );
            self.sinks.push(Sink {
                spec: spec.clone(),
                queue,
                task,
            });
        }
    }

    /// Takes a new config (SIGHUP): restarts the sinks; what they had queued is due again.
    pub fn reconfigure(&mut self, config: &Config) {
        self.stop_sinks();
        self.ctx = context(config);
        for spec in &config.alerts {
            self.metrics.register(&spec.name);
        }
        let new_path = config.state_dir.join(STATE_FILE);
        if new_path != self.path {
            self.path = new_path;
            self.save();
        }
        self.start_sinks(&config.alerts);
    }

    fn stop_sinks(&mut self) {
        for sink in self.sinks.drain(..) {
            sink.task.abort();
        }
        self.in_flight.clear();
        self.last_set.clear();
    }

    /// Takes in one completed scan: new alerts fire, cleared ones resolve; the alerts of
    /// `snoozed` jobs hold still (see [`book::Book::observe`]); incidents open and end (see
    /// [`book::Book::observe_incidents`]).
    pub fn observe(
        &mut self,
        findings: &[Finding],
        incidents: &[View],
        active: &HashSet<impl book::Id>,
        snoozed: &HashSet<&str>,
    ) {
        if self.sinks.is_empty() {
            return;
        }
        let now = self.clock.now();
        self.book.observe(findings, active, snoozed, now);
        self.book.observe_incidents(incidents, findings, now);
        self.dispatch(now);
        self.save();
    }

    /// Records the findings a scan is about to write as firing, and saves the book, before
    /// the writes (see [`Book::fire`]). Sends nothing: the scan's [`Alerter::observe`] does,
    /// with the writes' outcomes.
    pub fn before_writes(&mut self, findings: &[Finding], snoozed: &HashSet<&str>) {
        if self.sinks.is_empty() {
            return;
        }
        let writing: Vec<Finding> = findings
            .iter()
            .filter(|f| f.action != crate::config::Action::Alert)
            .cloned()
            .collect();
        if writing.is_empty() {
            return;
        }
        let open = |book: &Book| {
            let resolved = book
                .entries
                .values()
                .filter(|e| e.resolved.is_some())
                .count();
            (book.entries.len(), resolved)
        };
        let before = open(&self.book);
        self.book.fire(&writing, snoozed, self.clock.now());
        if open(&self.book) != before {
            self.save();
        }
    }

    /// Records writes made between scans (see [`Book::acted`]): each job id with what was
    /// done to it, then saves the book once (a bulk action writes thousands of jobs).
    pub fn acted<'a>(&mut self, done: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let done: HashMap<&str, &str> = done.into_iter().collect();
        if !done.is_empty() {
            self.book.acted(&done);
            self.save();
        }
    }

    /// Every cycle, whether or not the database answered: reminders, Alertmanager resends,
    /// and forgetting what no sink needs any more.
    pub fn tick(&mut self) {
        if self.sinks.is_empty() {
            return;
        }
        let now = self.clock.now();
        self.dispatch(now);
        let before = self.book.entries.len();
        let specs: Vec<AlertSink> = self.sinks.iter().map(|s| s.spec.clone()).collect();
        let in_flight: HashSet<&str> = self.in_flight.iter().map(|(_, k, _)| k.as_str()).collect();
        self.book.prune(&specs, &in_flight, now);
        if self.book.entries.len() != before {
            self.save();
        }
    }

    /// The next delivery receipt (for the daemon's `select!`).
    pub async fn next_receipt(&mut self) -> Option<Receipt> {
        self.receipts_rx.recv().await
    }

    /// Records a receipt in the book; saved at most every [`SAVE_EVERY`] (see [`Alerter::flush`]).
    pub fn receipt(&mut self, receipt: Receipt) -> Vec<(FindingKey, Delivered)> {
        let now = self.clock.now();
        let mut told = Vec::with_capacity(receipt.about.len());
        for (key, state) in &receipt.about {
            self.in_flight
                .remove(&(receipt.sink.clone(), key.clone(), *state));
            self.book.told(&receipt.sink, key, *state, now);
            if let Some(e) = self.book.entries.get(key) {
                told.push((
                    e.key(),
                    Delivered {
                        sink: receipt.sink.clone(),
                        state: *state,
                        delivered: receipt.delivered,
                        reason: e.resolved.as_ref().map(|r| r.reason.clone()),
                    },
                ));
            }
        }
        self.dirty = true;
        if self.saved_at.is_none_or(|at| at.elapsed() >= SAVE_EVERY) {
            self.save();
        }
        told
    }

    /// Whether receipts wait to be saved.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Saves receipts recorded since the last save.
    pub fn flush(&mut self) {
        if self.dirty {
            self.save();
        }
    }

    /// Alerts firing now.
    pub fn firing(&self) -> usize {
        self.book.firing()
    }

    /// Records the receipts already in, then stops the sinks and says how many messages were
    /// still waiting. Delivery is at least once: a message a receiver accepted in the very
    /// moment of the stop is sent again after the restart.
    pub fn shutdown(&mut self) {
        while let Ok(receipt) = self.receipts_rx.try_recv() {
            self.receipt(receipt);
        }
        for sink in &self.sinks {
            let waiting = sink.queue.len();
            if waiting > 0 {
                tracing::warn!(sink = %sink.spec.name, waiting, "stopping with undelivered alerts; they are sent after the restart");
            }
        }
        self.flush();
        self.stop_sinks();
    }

    fn dispatch(&mut self, now: f64) {
        for i in 0..self.sinks.len() {
            let spec = self.sinks[i].spec.clone();
            let messages = match spec.kind {
                AlertKind::Alertmanager => self.alertmanager_messages(&spec, now),
                AlertKind::Webhook | AlertKind::Slack => self.event_messages(&spec, now),
            };
            for m in messages {
                for (key, state) in &m.about {
                    self.in_flight
                        .insert((spec.name.clone(), key.clone(), *state));
                }
                self.sinks[i].queue.push(m);
            }
        }
    }

    fn event_messages(&self, spec: &AlertSink, now: f64) -> Vec<Outgoing> {
        let due: Vec<Due> = self
            .book
            .due(spec, now)
            .into_iter()
            .filter(|d| {
                !self
                    .in_flight
                    .contains(&(spec.name.clone(), d.key.clone(), d.state))
            })
            .collect();
        let entry = |key: &str| self.book.entries.get(key);
        let mut out = Vec::new();
        // Incidents first: their opening says what the findings after it are about.
        for d in self.book.incidents_due(spec, now) {
            if self
                .in_flight
                .contains(&(spec.name.clone(), d.key.clone(), d.state))
            {
                continue;
            }
            let Some(i) = self.book.incident(&d.key) else {
                continue;
            };
            let body = match spec.kind {
                AlertKind::Slack => payload::slack_incident(i, d.state, d.reminder, &self.ctx),
                _ => payload::webhook_incident(i, d.state, d.reminder, &self.ctx),
            };
            out.push(outgoing(
                &body,
                vec![(d.key.clone(), d.state)],
                d.state,
                d.reminder,
            ));
        }
        // Many new firings, or many resolutions (after a mass failure), go out as one digest
        // each, so a burst never floods the queue.
        let mut digested: HashSet<(&str, State)> = HashSet::new();
        for state in [State::Firing, State::Resolved] {
            let batch: Vec<&Due> = due
                .iter()
                .filter(|d| d.state == state && !d.reminder)
                .collect();
            if batch.len() <= DIGEST_THRESHOLD {
                continue;
            }
            let entries: Vec<&Entry> = batch.iter().filter_map(|d| entry(&d.key)).collect();
            let body = match spec.kind {
                AlertKind::Slack => payload::slack_digest(&entries, state, &self.ctx),
                _ => payload::webhook_digest(&entries, state, &self.ctx),
            };
            digested.extend(batch.iter().map(|d| (d.key.as_str(), state)));
            out.push(outgoing(
                &body,
                batch.iter().map(|d| (d.key.clone(), d.state)).collect(),
                state,
                false,
            ));
        }
        for d in &due {
            if digested.contains(&(d.key.as_str(), d.state)) {
                continue;
            }
            let Some(e) = entry(&d.key) else { continue };
            let body = match spec.kind {
                AlertKind::Slack => payload::slack(e, d.state, d.reminder, &self.ctx),
                _ => payload::webhook(e, d.state, d.reminder, &self.ctx),
            };
            out.push(outgoing(
                &body,
                vec![(d.key.clone(), d.state)],
                d.state,
                d.reminder,
            ));
        }
        out
    }

    fn alertmanager_messages(&mut self, spec: &AlertSink, now: f64) -> Vec<Outgoing> {
        let (set, changed) = self.book.alertmanager_set(spec);
        if set.is_empty() {
            return Vec::new();
        }
        let busy = self.in_flight.iter().any(|(s, _, _)| *s == spec.name);
        let resend_due = self
            .last_set
            .get(&spec.name)
            .is_none_or(|t| now - t >= ALERTMANAGER_RESEND.as_secs_f64());
        if busy || !(changed || resend_due) {
            return Vec::new();
        }
        let body = payload::alertmanager(&set, now, ALERTMANAGER_RESEND, &self.ctx);
        let about: Vec<(String, State)> = set
            .iter()
            .map(|e| {
                let state = if e.resolved.is_some() {
                    State::Resolved
                } else {
                    State::Firing
                };
                (e.key().to_string(), state)
            })
            .collect();
        let state = if about.iter().any(|(_, s)| *s == State::Firing) {
            State::Firing
        } else {
            State::Resolved
        };
        self.last_set.insert(spec.name.clone(), now);
        // A re-send of an unchanged set may be dropped when the queue is full; a change not.
        vec![outgoing(&body, about, state, !changed)]
    }

    /// Writes the book atomically: a temporary file, flushed, then renamed over the old one.
    fn save(&mut self) {
        self.saved_at = Some(tokio::time::Instant::now());
        let saved = save_book(&self.path, &self.book);
        match &saved {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::error!(path = %self.path.display(), "cannot save the alert state: {e}")
            }
        }
        if let Some(errors) = &self.save_errors {
            errors.record(crate::adapters::state::StateFile::Alerts, &saved);
        }
    }
}

fn outgoing(
    body: &serde_json::Value,
    about: Vec<(String, State)>,
    state: State,
    droppable: bool,
) -> Outgoing {
    Outgoing {
        body: serde_json::to_vec(body).unwrap_or_default(),
        about,
        state,
        droppable,
    }
}

fn context(config: &Config) -> Context {
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    Context {
        environment: config.environment.clone(),
        console_url: config.http.external_url.clone().unwrap_or_else(|| {
            format!("{scheme}://{}{}", config.http.listen, config.http.base_path)
        }),
        external_url: config.http.external_url.clone(),
    }
}

/// What a sink was told about one alert (a receipt), for the console.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub sink: String,
    pub state: State,
    /// `false`: the receiver refused it for good and jobwarden gave up.
    pub delivered: bool,
    /// Why it resolved, for a resolution.
    pub reason: Option<String>,
}

/// One job's alerts as last saved in the state directory's book, read only (for the
/// console: a missing, unreadable or corrupt file is no alerts, and is left as it is).
pub fn saved_alerts_of(state_dir: &Path, job_id: &str) -> Vec<Entry> {
    crate::adapters::state::read_state(&state_dir.join(STATE_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Book>(&bytes).ok())
        .map(|book| {
            book.entries
                .into_values()
                .filter(|e| e.job_id == job_id)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the book; a missing file is an empty book, an unreadable or corrupt one is reported,
/// moved aside (`alerts.json.corrupt`, or `.corrupt.1`, ... beside earlier copies) and
/// replaced by an empty book.
pub fn load_book(path: &Path) -> Book {
    // A temporary file left by a save that was cut short holds nothing the book lacks.
    crate::adapters::state::remove_stale_temporaries(path);
    let problem = match crate::adapters::state::read_state(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Book::new(),
        Err(e) => format!("cannot be read ({e})"),
        Ok(bytes) => match std::str::from_utf8(&bytes) {
            Err(_) => "is not UTF-8".to_string(),
            Ok(text) => match serde_json::from_str::<Book>(text) {
                Ok(book) if book.version == Book::VERSION => return book,
                Ok(book) => format!("has an unknown version {}", book.version),
                Err(e) => format!("is not a valid alert state ({e})"),
            },
        },
    };
    // Whatever it is (a directory, garbage), it is kept aside (never over an earlier copy),
    // and the state saved beside it.
    let moved = crate::adapters::state::move_aside(path);
    tracing::error!(
        path = %path.display(),
        "the alert state file is corrupt: it {problem}; starting afresh{}",
        match moved {
            Ok(aside) => format!(", the old one is kept as {}", aside.display()),
            Err(e) => format!(" (it cannot be moved aside: {e})"),
        }
    );
    Book::new()
}

/// Writes the book atomically (a full disk, say, leaves no half-written temporary file).
pub fn save_book(path: &Path, book: &Book) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(book).map_err(std::io::Error::other)?;
    crate::adapters::state::write_whole(path, &bytes)
}

/// What `jobwarden alert test` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tested {
    NoSinks,
    AllAccepted,
    SomeFailed,
}

/// `jobwarden alert test`: sends a sample firing and resolved alert through every sink, once,
/// and reports each answer.
pub async fn test_sinks(config: &Config, out: &mut dyn std::io::Write) -> std::io::Result<Tested> {
    if config.alerts.is_empty() {
        writeln!(out, "no [[alerts]] sinks are configured")?;
        return Ok(Tested::NoSinks);
    }
    let ctx = context(config);
    let client = reqwest::Client::new();
    let now = Clock::System.now();
    let mut sample = Entry {
        kind: crate::core::detect::Kind::Stalled,
        rule: "jobwarden-test".into(),
        job_id: "jobwarden-test".into(),
        severity: crate::config::Severity::Critical,
        finding: serde_json::json!({
            "kind": "stalled", "rule": "jobwarden-test", "job_id": "jobwarden-test",
            "status": "running", "phase": null, "age_seconds": 1900, "threshold_seconds": 1800,
            "since": crate::core::job::rfc3339(now - 1900.0), "severity": "critical", "action": "alert",
            "outcome": "none", "message": "test alert from `jobwarden alert test`", "artifacts": [],
        }),
        fired_at: now,
        resolved: None,
        acted: None,
        told: Default::default(),
        held: false,
        incident: None,
    };
    let mut all_ok = true;
    for state in [State::Firing, State::Resolved] {
        if state == State::Resolved {
            sample.resolved = Some(book::Resolution {
                at: Clock::System.now(),
                reason: "this was a test".into(),
            });
        }
        for sink in &config.alerts {
            let body = match sink.kind {
                AlertKind::Webhook => payload::webhook(&sample, state, false, &ctx),
                AlertKind::Slack => payload::slack(&sample, state, false, &ctx),
                AlertKind::Alertmanager => {
                    payload::alertmanager(&[&sample], now, ALERTMANAGER_RESEND, &ctx)
                }
            };
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let answer = match delivery::send(&client, sink, &bytes).await {
                Ok(()) => "accepted".to_string(),
                Err(delivery::Failure::Refused { status, body }) => {
                    all_ok = false;
                    format!("refused: {status} {body}")
                }
                Err(delivery::Failure::Retry { error, .. }) => {
                    all_ok = false;
                    format!("failed: {error}")
                }
            };
            writeln!(
                out,
                "{} ({}, {}): {}: {answer}",
                sink.name,
                crate::config::kind_name(sink.kind),
                crate::config::redact_alert_url(sink.kind, &delivery::endpoint(sink)),
                state.as_str()
            )?;
        }
    }
    Ok(if all_ok {
        Tested::AllAccepted
    } else {
        Tested::SomeFailed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips_and_corruption_is_survived() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(STATE_FILE);
        assert!(load_book(&path).entries.is_empty());
        let mut book = Book::new();
        book.entries.insert(
            "k".into(),
            Entry {
                kind: crate::core::detect::Kind::Stalled,
                rule: "r".into(),
                job_id: "1".into(),
                severity: crate::config::Severity::Warning,
                finding: serde_json::json!({}),
                fired_at: 1.0,
                resolved: None,
                acted: None,
                told: Default::default(),
                held: false,
                incident: None,
            },
        );
        save_book(&path, &book).unwrap();
        assert_eq!(load_book(&path).entries.len(), 1);
        std::fs::write(&path, "{not json").unwrap();
        assert!(load_book(&path).entries.is_empty());
        assert!(path.with_extension("json.corrupt").exists());
        assert!(!path.exists());
        // Not UTF-8, and a directory: each moved aside too, and the state saved beside it.
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        assert!(load_book(&path).entries.is_empty());
        assert!(!path.exists());
        std::fs::create_dir_all(path.join("inner")).unwrap();
        assert!(load_book(&path).entries.is_empty());
        assert_eq!(
            std::fs::read_to_string(path.with_extension("json.corrupt")).unwrap(),
            "{not json",
            "the first copy is never overwritten"
        );
        assert!(path.with_extension("json.corrupt.1").is_file());
        assert!(path.with_extension("json.corrupt.2").is_dir());
        save_book(&path, &book).unwrap();
        assert_eq!(
            load_book(&path).entries.len(),
            1,
            "saved beside the corrupt one"
        );
        // A failed save leaves no temporary file (see adapters::state's tests).
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, "a file where a folder should be").unwrap();
        assert!(save_book(&blocked.join("alerts.json"), &book).is_err());
    }
}
