//! Getting messages to one receiver: a bounded queue and a task per sink, so a slow or dead
//! receiver never delays a scan. Connection errors, timeouts, 408, 429 (honouring
//! `Retry-After`) and 5xx are retried with capped exponential backoff and jitter, for as long
//! as it takes: a receiver that is down for a while gets everything when it returns. Any other
//! 4xx is logged with the answer's body and not retried. When the queue is full the oldest
//! waiting message is dropped, counted in `jobwarden_alerts_dropped_total` and logged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGaugeVec};
use tokio::sync::{mpsc, Notify};

use super::book::State;
use crate::backoff::Backoff;
use crate::config::{AlertKind, AlertSink};

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
    /// Queues a message; when full, drops the oldest waiting one (counted and logged).
    pub fn push(&self, message: Outgoing) {
        let dropped = {
            let mut waiting = lock(&self.waiting);
            let dropped = if waiting.len() >= self.capacity {
                waiting.pop_front()
            } else {
                None
            };
            waiting.push_back(message);
            self.metrics
                .depth
                .with_label_values(&[&self.name])
                .set(waiting.len() as i64);
            dropped
        };
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
                    let wait = after.unwrap_or_else(|| backoff.next(MAX_RETRY_DELAY));
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
    let response = request.send().await.map_err(|e| Failure::Retry {
        error: crate::config::redact_url(&e.to_string()),
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
            after: if code == 429 { after } else { None },
        })
    } else {
        Err(Failure::Refused {
            status: code,
            body: text,
        })
    }
}
