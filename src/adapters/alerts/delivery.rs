//! Getting messages to one receiver: a bounded queue and a task per sink, so a slow or dead
//! receiver never delays a scan. Connection errors, timeouts, 408, 429 and 503 (honouring
//! `Retry-After`) and 5xx are retried with capped exponential backoff and jitter, for as long
//! as it takes: a receiver that is down for a while gets everything when it returns. Any other
//! 4xx is logged with the answer's body and not retried. A firing and its resolution that are
//! both still waiting cancel out (nobody needs to hear of it). When the queue is full, a
//! reminder or re-send is dropped first, then the oldest first firing; a resolution is never
//! dropped (the queue grows past its size for it). Drops are counted in
//! `jobwarden_alerts_dropped_total` and logged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGaugeVec};
use tokio::sync::{mpsc, Notify};

use super::book::State;
use crate::config::{AlertKind, AlertSink};
use crate::core::backoff::Backoff;

/// First retry delay; it doubles up to [`MAX_RETRY_DELAY`].
const MIN_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Longest wait between two attempts at a receiver that is down.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// One message for one receiver.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub body: Vec<u8>,
    /// The alerts it tells about, and what it tells.
    pub about: Vec<(String, State)>,
    /// For the `state` label of `jobwarden_alerts_sent_total`.
    pub state: State,
    /// A reminder or re-send: the first to go when the queue is full.
    pub droppable: bool,
}

/// A sink told (or gave up telling) something.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub sink: String,
    pub about: Vec<(String, State)>,
    pub delivered: bool,
}

/// The alert metrics a delivery task updates.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    pub sent: IntCounterVec,
    pub failures: IntCounterVec,
    pub depth: IntGaugeVec,
    pub dropped: IntCounterVec,
}

impl SinkMetrics {
    /// Starts a sink's series at 0, so rate() and alerts see them from the first scrape.
    pub fn register(&self, sink: &str) {
        for state in ["firing", "resolved"] {
            self.sent.with_label_values(&[sink, state]);
        }
        self.failures.with_label_values(&[sink]);
        self.depth.with_label_values(&[sink]).set(0);
        self.dropped.with_label_values(&[sink]);
    }
}

/// The sending side of a sink's queue.
#[derive(Debug)]
pub struct SinkQueue {
    name: String,
    waiting: Mutex<VecDeque<Outgoing>>,
    wake: Notify,
    capacity: usize,
    receipts: mpsc::UnboundedSender<Receipt>,
    metrics: SinkMetrics,
}

/// Which message a full queue gives up.
enum Victim {
    Nothing,
    Waiting(usize),
    Incoming,
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum Failure {
    /// Worth another try, after the given delay if the receiver named one.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// The receiver refused the message; trying again will not help.
    Refused { status: u16, body: String },
}

impl SinkQueue {
    /// Queues a message. A resolution whose firing is still waiting (both about one alert
    /// only) cancels it, and neither is sent. When full: drops a reminder or re-send, else the
    /// oldest first firing; never a resolution.
    pub fn push(&self, message: Outgoing) {
        let mut cancelled = None;
        let dropped = {
            let mut waiting = lock(&self.waiting);
            if let [(key, State::Resolved)] = message.about.as_slice() {
                let firing = waiting.iter().position(|m| {
                    matches!(m.about.as_slice(), [(k, State::Firing)] if k == key) && !m.droppable
                });
                if let Some(i) = firing {
                    cancelled = waiting.remove(i).map(|f| (f, message.clone()));
                }
            }
            let mut dropped = None;
            if cancelled.is_none() {
                let full = waiting.len() >= self.capacity;
                let waiting_at = |pred: &dyn Fn(&Outgoing) -> bool| waiting.iter().position(pred);
                let victim = if !full {
                    Victim::Nothing
                } else if let Some(i) = waiting_at(&|m| m.droppable) {
                    Victim::Waiting(i)
                } else if message.droppable {
                    Victim::Incoming
                } else if let Some(i) = waiting_at(&|m| m.state == State::Firing) {
                    Victim::Waiting(i)
                } else if message.state == State::Firing {
                    Victim::Incoming
                } else {
                    // Only resolutions: none is ever dropped; the queue grows for them.
                    Victim::Nothing
                };
                match victim {
                    Victim::Nothing => waiting.push_back(message),
                    Victim::Waiting(i) => {
                        dropped = waiting.remove(i);
                        waiting.push_back(message);
                    }
                    Victim::Incoming => dropped = Some(message),
                }
            }
            self.metrics
                .depth
                .with_label_values(&[&self.name])
                .set(waiting.len() as i64);
            dropped
        };
        if let Some((firing, resolved)) = cancelled {
            // Both are as good as told: the receiver needs to hear of neither.
            for m in [firing, resolved] {
                let _ = self.receipts.send(Receipt {
                    sink: self.name.clone(),
                    about: m.about,
                    delivered: true,
                });
            }
            return;
        }
        if let Some(old) = dropped {
            self.metrics.dropped.with_label_values(&[&self.name]).inc();
            tracing::error!(
                sink = %self.name,
                "alert queue full ({} waiting): dropped the oldest message, about {}",
                self.capacity,
                old.about.iter().map(|(k, s)| format!("{k} {}", s.as_str())).collect::<Vec<_>>().join(", ")
            );
            let _ = self.receipts.send(Receipt {
                sink: self.name.clone(),
                about: old.about,
                delivered: false,
            });
        }
        self.wake.notify_one();
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        lock(&self.waiting).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn pop(&self) -> Outgoing {
        loop {
            if let Some(m) = {
                let mut waiting = lock(&self.waiting);
                let m = waiting.pop_front();
                self.metrics
                    .depth
                    .with_label_values(&[&self.name])
                    .set(waiting.len() as i64);
                m
            } {
                return m;
            }
            self.wake.notified().await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts a sink's delivery task; returns its queue and the task.
pub fn spawn(
    sink: AlertSink,
    client: reqwest::Client,
    metrics: SinkMetrics,
    receipts: mpsc::UnboundedSender<Receipt>,
) -> (Arc<SinkQueue>, tokio::task::JoinHandle<()>) {
    let queue = Arc::new(SinkQueue {
        name: sink.name.clone(),
        waiting: Mutex::new(VecDeque::new()),
        wake: Notify::new(),
        capacity: sink.queue,
        receipts,
        metrics,
    });
    let task = tokio::spawn(deliver_forever(sink, client, queue.clone()));
    (queue, task)
}

async fn deliver_forever(sink: AlertSink, client: reqwest::Client, queue: Arc<SinkQueue>) {
    let mut backoff = Backoff::new(MIN_RETRY_DELAY, MAX_RETRY_DELAY);
    loop {
        let message = queue.pop().await;
        let mut failed_before = false;
        let delivered = loop {
            match send(&client, &sink, &message.body).await {
                Ok(()) => {
                    if failed_before {
                        tracing::info!(sink = %sink.name, "alert receiver is back");
                    }
                    break true;
                }
                Err(Failure::Refused { status, body }) => {
                    queue
                        .metrics
                        .failures
                        .with_label_values(&[&sink.name])
                        .inc();
                    tracing::error!(sink = %sink.name, status, "alert receiver refused the message, not retrying: {body}");
                    break false;
                }
                Err(Failure::Retry { error, after }) => {
                    queue
                        .metrics
                        .failures
                        .with_label_values(&[&sink.name])
                        .inc();
                    let wait =
                        after.unwrap_or_else(|| backoff.next(MAX_RETRY_DELAY, fastrand::f64()));
                    if failed_before {
                        tracing::debug!(sink = %sink.name, "alert delivery failed again: {error}");
                    } else {
                        tracing::warn!(sink = %sink.name, "alert delivery failed, retrying with backoff: {error}");
                    }
                    failed_before = true;
                    tokio::time::sleep(wait).await;
                }
            }
        };
        backoff.reset();
        if delivered {
            queue
                .metrics
                .sent
                .with_label_values(&[&sink.name, message.state.as_str()])
                .inc();
        }
        let _ = queue.receipts.send(Receipt {
            sink: sink.name.clone(),
            about: message.about,
            delivered,
        });
    }
}

/// The URL a sink posts to: Alertmanager's alerts API under its base URL, else the URL itself.
pub fn endpoint(sink: &AlertSink) -> String {
    match sink.kind {
        AlertKind::Alertmanager => format!("{}/api/v2/alerts", sink.url.trim_end_matches('/')),
        AlertKind::Webhook | AlertKind::Slack => sink.url.clone(),
    }
}

/// One attempt: POST the body, judge the answer.
pub async fn send(client: &reqwest::Client, sink: &AlertSink, body: &[u8]) -> Result<(), Failure> {
    let mut request = client
        .post(endpoint(sink))
        .timeout(sink.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    for (name, value) in &sink.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if let Some(secret) = &sink.hmac_secret {
        request = request.header(
            "X-Jobwarden-Signature",
            super::payload::signature(secret, body),
        );
    }
    // The client's error text carries the URL, whose path may be the secret: drop it.
    let response = request.send().await.map_err(|e| Failure::Retry {
        error: format!(
            "{} ({})",
            e.without_url(),
            crate::config::redact_alert_url(sink.kind, &sink.url)
        ),
        after: None,
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
    let text: String = response
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect();
    let code = status.as_u16();
    if code == 429 || code == 408 || status.is_server_error() {
        Err(Failure::Retry {
            error: format!("{status}: {text}"),
            // Both say when to come back (RFC 9110, 10.2.3): a receiver that is busy or
            // in maintenance is not hammered at the backoff's pace meanwhile.
            after: if code == 429 || code == 503 {
                after
            } else {
                None
            },
        })
    } else {
        Err(Failure::Refused {
            status: code,
            body: text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(capacity: usize) -> (SinkQueue, mpsc::UnboundedReceiver<Receipt>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let metrics = SinkMetrics {
            sent: IntCounterVec::new(prometheus::Opts::new("s", "s"), &["sink", "state"]).unwrap(),
            failures: IntCounterVec::new(prometheus::Opts::new("f", "f"), &["sink"]).unwrap(),
            depth: IntGaugeVec::new(prometheus::Opts::new("d", "d"), &["sink"]).unwrap(),
            dropped: IntCounterVec::new(prometheus::Opts::new("x", "x"), &["sink"]).unwrap(),
        };
        let q = SinkQueue {
            name: "hook".into(),
            waiting: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            capacity,
            receipts: tx,
            metrics,
        };
        (q, rx)
    }

    fn msg(key: &str, state: State, droppable: bool) -> Outgoing {
        Outgoing {
            body: key.as_bytes().to_vec(),
            about: vec![(key.to_string(), state)],
            state,
            droppable,
        }
    }

    fn waiting(q: &SinkQueue) -> Vec<(String, State)> {
        lock(&q.waiting)
            .iter()
            .map(|m| m.about[0].clone())
            .collect()
    }

    #[test]
    fn a_firing_and_its_resolution_both_waiting_cancel_out() {
        let (q, mut rx) = queue(10);
        q.push(msg("a", State::Firing, false));
        q.push(msg("b", State::Firing, false));
        q.push(msg("a", State::Resolved, false));
        assert_eq!(waiting(&q), [("b".to_string(), State::Firing)]);
        let receipts: Vec<(String, bool)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|r| {
                (
                    format!("{} {}", r.about[0].0, r.about[0].1.as_str()),
                    r.delivered,
                )
            })
            .collect();
        assert_eq!(
            receipts,
            [
                ("a firing".to_string(), true),
                ("a resolved".to_string(), true)
            ]
        );
    }

    #[test]
    fn a_full_queue_drops_reminders_then_firings_and_never_a_resolution() {
        let (q, _rx) = queue(3);
        q.push(msg("r1", State::Resolved, false));
        q.push(msg("f1", State::Firing, false));
        q.push(msg("again", State::Firing, true));
        // Full: the reminder goes first.
        q.push(msg("r2", State::Resolved, false));
        assert_eq!(
            waiting(&q),
            [
                ("r1".to_string(), State::Resolved),
                ("f1".to_string(), State::Firing),
                ("r2".to_string(), State::Resolved)
            ]
        );
        // Then the oldest first firing.
        q.push(msg("r3", State::Resolved, false));
        assert_eq!(waiting(&q).len(), 3);
        assert!(!waiting(&q).contains(&("f1".to_string(), State::Firing)));
        // Only resolutions: a new one is kept, past the size; a new firing or re-send is not.
        q.push(msg("r4", State::Resolved, false));
        q.push(msg("f2", State::Firing, false));
        q.push(msg("again2", State::Firing, true));
        let states: Vec<State> = waiting(&q).into_iter().map(|(_, s)| s).collect();
        assert_eq!(states, [State::Resolved; 4]);
    }
}
