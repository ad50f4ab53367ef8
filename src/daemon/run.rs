//! `jobwarden run`: the long-running sidecar.
//!
//! One task owns the scan loop and everything scans touch (the store, the progress memory,
//! the config), so scans never overlap: the HTTP `recover` endpoint and SIGHUP reach the loop
//! as messages and are handled between scans. The loop scans at once at start (the startup
//! reconciliation that catches every job left `running` by the crash that restarted
//! everything), then every `interval` on a fixed schedule: a slow scan delays the next tick
//! rather than piling ticks up, and a fast one does not drift it.
//!
//! The database may be down at start or go away later. The daemon never waits for it to come
//! up: it serves `/healthz`, answers `/readyz` 503, sets `jobwarden_database_up 0`, and retries
//! with capped exponential backoff and jitter. The progress memory survives an outage (it lives
//! in the scanner, which keeps its pool and lets sqlx reconnect).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use crate::adapters::alerts::Alerter;
use crate::adapters::artifacts;
use crate::adapters::clock::Clock;
use crate::adapters::leader::Leadership;
use crate::adapters::notify::{self, Notifier};
use crate::adapters::state::StateFile;
use crate::adapters::store::{Store, StoreError};
use crate::app::actions;
use crate::app::scan::{Report, Scanner};
use crate::config::{Config, ConfigError, StatusClass};
use crate::core::backoff::Backoff;
use crate::core::detect::{FindingKey, Kind, OlderThan, Warning};
use crate::core::memory::Memory;
use crate::core::safety::HeldBack;
use crate::daemon::metrics::Metrics;

mod bulk;
mod jobs;
pub use bulk::{BulkRequest, Select, Targets};
pub use jobs::{Ask, JobRefusal, JobRequest};

/// First retry delay after a failed scan; it doubles up to [`MAX_BACKOFF`] (or `interval`, if
/// shorter).
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between retries while the database is down.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a scan in flight may run on after SIGTERM before it is abandoned.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// The job memory is saved at most this often (and at once after a re-queue, and at exit).
const MEMORY_SAVE_EVERY: Duration = Duration::from_secs(30);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Tls(#[from] crate::adapters::tls::TlsError),
}

impl DaemonError {
    /// `run`'s exit code: 2 for what the config names (certificate and key files that cannot
    /// be read or are not a pair), 3 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Tls(_) => crate::app::commands::EXIT_USAGE,
            DaemonError::Bind { .. } | DaemonError::Metrics(_) => {
                crate::app::commands::EXIT_UNAVAILABLE
            }
        }
    }
}

/// Reloads the config (SIGHUP).
pub type Reloader = Box<dyn Fn() -> Result<Config, ConfigError> + Send>;

/// How the daemon was started.
pub struct Options {
    /// `run --dry-run`: never write, whatever the file says.
    pub dry_run: bool,
    /// Reads the config again on SIGHUP.
    pub reload: Reloader,
    pub notifier: Notifier,
    /// Wall-clock time for alerts, file ages and the last-success metric
    /// ([`Clock::following_tokio`] in tests on paused time).
    pub clock: Clock,
}

/// A `POST /api/v1/recover`, handled by the loop between scans.
#[derive(Debug)]
pub struct RecoverRequest {
    pub older_than: Option<Duration>,
    pub dry_run: bool,
    pub reply: oneshot::Sender<Result<Report, String>>,
}

/// What the HTTP side reads: the latest scan, readiness, metrics, the token.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    /// The latest completed scan, shared with every request that reads it (never copied:
    /// a 10,000-finding report is megabytes).
    latest: RwLock<Option<Arc<Report>>>,
    ready: AtomicBool,
    last_error: RwLock<Option<String>>,
    /// Set while the audit trail cannot be written (writes are held back meanwhile).
    audit_error: RwLock<Option<String>>,
    /// When the last scan succeeded, and how old that may be before readiness is lost.
    last_success: RwLock<Option<Instant>>,
    stale_after: RwLock<Duration>,
    token: RwLock<Option<String>>,
    /// The `[http]` section, for the Host check.
    http: RwLock<crate::config::Http>,
    /// Whether the leader lock was checked yet, and its answer.
    role_known: AtomicBool,
    leader: AtomicBool,
    /// Who holds the leader lock while this replica stands by, when the database tells.
    leader_holder: RwLock<Option<String>>,
    pub recover: mpsc::Sender<RecoverRequest>,
    /// Per-job actions, for the loop.
    pub jobs: mpsc::Sender<JobRequest>,
    /// Bulk actions by people, for the loop.
    pub bulk: mpsc::Sender<BulkRequest>,
    /// The listener's TLS acceptor, when `[http] tls_cert` is set; re-read on SIGHUP.
    pub tls: Arc<crate::adapters::tls::Tls>,
    /// What the console shows besides the latest scan.
    console: RwLock<ConsoleInfo>,
    /// How long the last successful scan took.
    last_scan: RwLock<Option<Duration>>,
    /// The operator's pause (`holds.json` in the state directory), and the clock it runs on.
    holds: RwLock<crate::core::holds::Holds>,
    /// Serializes changes of the holds (each is saved before it takes effect).
    holds_change: tokio::sync::Mutex<()>,
    /// Failed saves of the state files (the alerter holds a clone).
    save_errors: crate::adapters::state::SaveErrors,
    clock: Clock,
    /// The scanner's store, for the job page's read of one row (`None` until connected).
    store: RwLock<Option<Store>>,
    /// The artifact roots' indexes, for the job page's files.
    indexes: RwLock<Vec<artifacts::Shared>>,
    /// Findings appearing and clearing, newest last (the last [`HISTORY`] of them, since
    /// this process started).
    history: RwLock<std::collections::VecDeque<Change>>,
    /// The warning about status words no class lists, from the last status count.
    unlisted: RwLock<Option<String>>,
}

/// How many finding changes the job pages can show, across all jobs.
const HISTORY: usize = 5_000;
/// How long the job page waits for its row.
const ROW_TIMEOUT: Duration = Duration::from_secs(3);

/// Something that happened to a finding, for the job pages.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Unix time (the scan that saw it, or the receipt).
    pub at: f64,
    pub key: FindingKey,
    pub what: What,
}

/// What happened to a finding.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// It appeared, with this message.
    Appeared(String),
    Cleared,
    /// A sink was told of its alert (or gave up telling).
    Told(crate::adapters::alerts::Delivered),
}

/// The row of the job page, as read now.
#[derive(Debug, Clone, PartialEq)]
pub enum RowRead {
    Row(Box<crate::core::job::JobRow>),
    /// The table has no such row (within `[jobs] where`).
    Missing,
    /// Not read: why.
    Unread(String),
}

/// The config's part of the console: set at start and on reload.
#[derive(Debug, Clone, Default)]
pub struct ConsoleInfo {
    pub environment: Option<String>,
    pub dry_run: bool,
    pub sinks: Vec<String>,
    pub state_dir: std::path::PathBuf,
    pub job_url: Option<String>,
    /// The resolved config with its secrets redacted (`validate`'s JSON).
    pub config: serde_json::Value,
    /// The rules in precedence order (the first match per job and signal wins).
    pub rules: Vec<crate::config::Rule>,
    /// The configured columns: config key and column name.
    pub columns: Vec<(String, String)>,
}

impl ConsoleInfo {
    fn of(config: &Config, dry_run: bool) -> ConsoleInfo {
        ConsoleInfo {
            environment: config.environment.clone(),
            dry_run: dry_run || config.dry_run,
            sinks: config.alerts.iter().map(|a| a.name.clone()).collect(),
            state_dir: config.state_dir.clone(),
            job_url: config.http.job_url.clone(),
            config: crate::config::redacted_json(config),
            rules: config.rules.clone(),
            columns: crate::adapters::store::configured_columns(&config.jobs)
                .into_iter()
                .map(|(key, field)| (key.to_string(), field.to_string()))
                .collect(),
        }
    }
}

impl Shared {
    /// The latest completed scan (a cheap clone of a shared pointer).
    pub fn latest(&self) -> Option<Arc<Report>> {
        read(&self.latest).clone()
    }

    /// Whether the daemon does its job, and why not: the last scan reached the database, it
    /// is recent (no older than two intervals plus the query timeout, whatever stalls the
    /// loop), and the audit trail takes writes.
    pub fn readiness(&self) -> (bool, Option<String>) {
        if let Some(e) = read(&self.audit_error).clone() {
            return (false, Some(e));
        }
        if let Some(why) = self.holds_lost() {
            return (false, Some(HeldBack::HoldsLost(why).to_string()));
        }
        if !self.ready.load(Ordering::Relaxed) {
            return (false, read(&self.last_error).clone());
        }
        let stale_after = *read(&self.stale_after);
        match *read(&self.last_success) {
            Some(at) if at.elapsed() > stale_after => (
                false,
                Some(format!(
                    "the last successful scan was {} ago, longer than two intervals and the query timeout ({})",
                    humantime::format_duration(Duration::from_secs(at.elapsed().as_secs())),
                    humantime::format_duration(stale_after)
                )),
            ),
            _ => (true, None),
        }
    }

    /// `leader`, `standby`, or `unknown` before the lock could first be checked (the
    /// database was never reached).
    pub fn role(&self) -> &'static str {
        if !self.role_known.load(Ordering::Relaxed) {
            "unknown"
        } else if self.leader.load(Ordering::Relaxed) {
            "leader"
        } else {
            "standby"
        }
    }

    /// Who leads, as the database tells, while this replica stands by.
    pub fn leader_holder(&self) -> Option<String> {
        read(&self.leader_holder).clone()
    }

    /// Whether a request's `Host` is one this listener answers.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        read(&self.http).host_allowed(host)
    }

    /// The console's health strip, as of now.
    pub fn health(&self) -> crate::daemon::console::Health {
        let info = read(&self.console).clone();
        let (ready, not_ready) = self.readiness();
        let m = &self.metrics;
        crate::daemon::console::Health {
            base: self.base_path(),
            environment: info.environment,
            database_up: m.database_up.get() == 1,
            ready,
            not_ready,
            role: self.role(),
            leader: self.leader_holder(),
            dry_run: info.dry_run,
            last_scan_age: read(&self.last_success).map(|at| at.elapsed().as_secs_f64()),
            last_scan_seconds: read(&self.last_scan).map(|d| d.as_secs_f64()),
            sinks: info
                .sinks
                .iter()
                .map(|s| {
                    (
                        s.clone(),
                        m.alert_queue_depth.with_label_values(&[s]).get(),
                        m.alert_failures.with_label_values(&[s]).get(),
                    )
                })
                .collect(),
            job_url: info.job_url,
            paused_until: self.paused_until(),
            holds_lost: self.holds_lost(),
            state_errors: self.state_errors(),
            snoozes: self.snoozes(),
            actions: self.token().is_some(),
        }
    }

    /// `[http] base_path` (fixed at start, like the listen address).
    pub fn base_path(&self) -> String {
        read(&self.http).base_path.clone()
    }

    /// The state directory, for the audit trail the console reads.
    pub fn state_dir(&self) -> std::path::PathBuf {
        read(&self.console).state_dir.clone()
    }

    /// The redacted config and the rules in precedence order, for `GET /config`.
    pub fn config_view(&self) -> (serde_json::Value, Vec<crate::config::Rule>) {
        let info = read(&self.console);
        (info.config.clone(), info.rules.clone())
    }

    /// Until when every write is paused, if it is now.
    pub fn paused_until(&self) -> Option<f64> {
        read(&self.holds).paused(self.clock.now())
    }

    /// Each state file whose last save failed, in words (scans go on; `/readyz` stays 200).
    pub fn state_errors(&self) -> Vec<String> {
        self.save_errors.current()
    }

    /// Why the operator's holds were lost, while they are (every write is held meanwhile).
    pub fn holds_lost(&self) -> Option<String> {
        read(&self.holds).lost.clone()
    }

    /// Sets `jobwarden_holds_lost` (the holds are lost only at load, and found again only by a
    /// change: it is set then).
    fn publish_holds_lost(&self) {
        self.metrics
            .holds_lost
            .set(i64::from(self.holds_lost().is_some()));
    }

    /// Why every write is held back now, if it is: the holds were lost, or a pause.
    pub fn every_write_held(&self) -> Option<HeldBack> {
        read(&self.holds).every_write_held(self.clock.now())
    }

    /// The snoozes in force now, by job id.
    pub fn snoozes(&self) -> std::collections::BTreeMap<String, crate::core::holds::Snooze> {
        read(&self.holds).snoozes(self.clock.now())
    }

    /// Changes the operator's holds, one change at a time: the new holds are saved to the
    /// state directory before they take effect (and before the change is answered), so a
    /// restart keeps them; a change that cannot be saved is not made. Returns the time of
    /// the change and the holds after it.
    async fn change_holds(
        &self,
        change: impl FnOnce(&mut crate::core::holds::Holds, f64),
    ) -> std::io::Result<(f64, crate::core::holds::Holds)> {
        let _one_at_a_time = self.holds_change.lock().await;
        let now = self.clock.now();
        let mut next = read(&self.holds).clone();
        change(&mut next, now);
        next.expire(now);
        let dir = self.state_dir();
        let saved = next.clone();
        let saved =
            tokio::task::spawn_blocking(move || crate::adapters::state::save_holds(&dir, &saved))
                .await
                .map_err(std::io::Error::other)
                .and_then(|saved| saved);
        self.save_errors.record(StateFile::Holds, &saved);
        saved?;
        *write(&self.holds) = next.clone();
        self.publish_holds_lost();
        Ok((now, next))
    }

    /// Pauses every write for `span` from now (zero: ends the pause). Returns when writes
    /// resume. Any pause also ends the hold of lost holds: the operator has said what holds.
    pub async fn pause(&self, span: Duration) -> std::io::Result<Option<f64>> {
        let mut ended = None;
        let (now, holds) = self
            .change_holds(|h, now| {
                h.paused_until = (!span.is_zero()).then_some(now + span.as_secs_f64());
                ended = h.lost.take();
            })
            .await?;
        if let Some(why) = ended {
            tracing::warn!("the hold of lost holds ({why}) was ended by an operator's pause");
        }
        let until = holds.paused(now);
        match until {
            Some(until) => tracing::warn!(
                "writes paused until {} (POST /api/v1/pause); alerts go on",
                crate::core::job::rfc3339(until)
            ),
            None => tracing::info!("writes resumed (POST /api/v1/pause)"),
        }
        Ok(until)
    }

    /// Snoozes one job for `span` from now (zero: ends its snooze). Returns when it ends.
    pub async fn snooze(
        &self,
        job_id: &str,
        span: Duration,
        reason: &str,
        by: &str,
    ) -> std::io::Result<Option<f64>> {
        self.snooze_all(&[job_id], span, reason, by).await
    }

    /// [`Shared::snooze`] for many jobs at once (a bulk action): one save of the holds, one
    /// log line. Returns when the snoozes end.
    pub async fn snooze_all(
        &self,
        job_ids: &[&str],
        span: Duration,
        reason: &str,
        by: &str,
    ) -> std::io::Result<Option<f64>> {
        let (now, holds) = self
            .change_holds(|h, now| {
                for job_id in job_ids {
                    if span.is_zero() {
                        h.snoozed.remove(*job_id);
                    } else {
                        h.snoozed.insert(
                            job_id.to_string(),
                            crate::core::holds::Snooze {
                                until: now + span.as_secs_f64(),
                                reason: reason.to_string(),
                                by: by.to_string(),
                            },
                        );
                    }
                }
            })
            .await?;
        let until = job_ids
            .first()
            .and_then(|id| holds.snooze(id, now))
            .map(|s| s.until);
        match (job_ids, until) {
            ([job_id], Some(until)) => tracing::warn!(
                job_id,
                by,
                reason,
                "job snoozed until {}: no alerts and no writes for it",
                crate::core::job::rfc3339(until)
            ),
            ([job_id], None) => tracing::info!(job_id, by, "job snooze ended"),
            (_, Some(until)) => tracing::warn!(
                jobs = job_ids.len(),
                by,
                reason,
                "{} jobs snoozed until {}: no alerts and no writes for them",
                job_ids.len(),
                crate::core::job::rfc3339(until)
            ),
            (_, None) => tracing::info!(
                jobs = job_ids.len(),
                by,
                "snoozes of {} jobs ended",
                job_ids.len()
            ),
        }
        Ok(until)
    }

    /// One job's row, read now (for its page), within [`ROW_TIMEOUT`].
    pub async fn read_row(&self, job_id: &str) -> RowRead {
        let Some(store) = read(&self.store).clone() else {
            return RowRead::Unread("jobwarden has not connected to the database yet".into());
        };
        match tokio::time::timeout(ROW_TIMEOUT, store.job(job_id)).await {
            Ok(Ok(Some(row))) => RowRead::Row(Box::new(row)),
            Ok(Ok(None)) => RowRead::Missing,
            Ok(Err(e)) => RowRead::Unread(e.to_string()),
            Err(_) => RowRead::Unread("the database did not answer in time".into()),
        }
    }

    /// One job's files under each artifact root: the root's name and the files.
    pub fn files_of(&self, job_id: &str) -> Vec<(String, Vec<crate::core::pattern::ArtifactFile>)> {
        let now = self.clock.now();
        read(&self.indexes)
            .iter()
            .map(|index| {
                let index = artifacts::lock(index);
                (index.spec.name.clone(), index.files_of(job_id, now))
            })
            .collect()
    }

    /// One job's alerts, as the alert book was last saved (read off the runtime).
    pub async fn alerts_of(&self, job_id: &str) -> Vec<crate::adapters::alerts::book::Entry> {
        let (dir, job_id) = (self.state_dir(), job_id.to_string());
        tokio::task::spawn_blocking(move || crate::adapters::alerts::saved_alerts_of(&dir, &job_id))
            .await
            .unwrap_or_default()
    }

    /// Records changes of findings for the job pages, keeping the last [`HISTORY`].
    fn record(&self, changes: impl IntoIterator<Item = Change>) {
        let mut history = write(&self.history);
        history.extend(changes);
        let excess = history.len().saturating_sub(HISTORY);
        history.drain(..excess);
    }

    /// One job's findings appearing and clearing, and their alerts told, oldest first.
    pub fn history_of(&self, job_id: &str) -> Vec<Change> {
        read(&self.history)
            .iter()
            .filter(|c| c.key.job_id == job_id)
            .cloned()
            .collect()
    }

    /// The configured columns: config key and column name.
    pub fn columns(&self) -> Vec<(String, String)> {
        read(&self.console).columns.clone()
    }

    /// The bearer token POST endpoints require, if one is configured.
    pub fn token(&self) -> Option<String> {
        read(&self.token).clone()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the daemon until `shutdown` completes. `reloads` yields one item per SIGHUP.
/// Binds the config's listen address (port 0: the system picks one; the start line and
/// [`tokio::net::TcpListener::local_addr`] say which).
pub async fn bind(config: &Config) -> Result<tokio::net::TcpListener, DaemonError> {
    tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: config.http.listen.to_string(),
            source,
        })
}

/// Runs the daemon on a bound `listener` until `shutdown` completes. `reloads` yields one
/// item per SIGHUP.
pub async fn run(
    config: Config,
    registry: Registry,
    listener: tokio::net::TcpListener,
    options: Options,
    mut reloads: mpsc::Receiver<()>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let metrics = Metrics::new(registry)?;
    let tls = load_tls(&config)?;
    let (recover_tx, mut recover_rx) = mpsc::channel(8);
    let (jobs_tx, mut jobs_rx) = mpsc::channel(8);
    let (bulk_tx, mut bulk_rx) = mpsc::channel(2);
    let shared = Arc::new(Shared {
        save_errors: metrics.save_errors(),
        metrics,
        latest: RwLock::new(None),
        ready: AtomicBool::new(false),
        last_error: RwLock::new(None),
        audit_error: RwLock::new(None),
        last_success: RwLock::new(None),
        stale_after: RwLock::new(stale_after(&config)),
        token: RwLock::new(config.http.token.clone()),
        http: RwLock::new(crate::config::Http {
            // The bound address (a port 0 in the file becomes the real one).
            listen: listener.local_addr().unwrap_or(config.http.listen),
            ..config.http.clone()
        }),
        role_known: AtomicBool::new(false),
        leader: AtomicBool::new(false),
        leader_holder: RwLock::new(None),
        recover: recover_tx,
        jobs: jobs_tx,
        bulk: bulk_tx,
        tls: Arc::new(crate::adapters::tls::Tls::new(tls)),
        console: RwLock::new(ConsoleInfo::of(&config, options.dry_run)),
        last_scan: RwLock::new(None),
        holds: RwLock::new(crate::adapters::state::load_holds(&config.state_dir)),
        holds_change: tokio::sync::Mutex::new(()),
        clock: options.clock,
        store: RwLock::new(None),
        indexes: RwLock::new(Vec::new()),
        history: RwLock::new(std::collections::VecDeque::new()),
        unlisted: RwLock::new(None),
    });
    shared.publish_holds_lost();
    let local = listener
        .local_addr()
        .map_or_else(|_| config.http.listen.to_string(), |a| a.to_string());
    tracing::info!(listen = %local, tls = shared.tls.get().is_some(), environment = ?config.environment, dry_run = config.dry_run || options.dry_run, "jobwarden started");
    if let Some(period) = notify::watchdog_period() {
        if config.interval + config.database.query_timeout * 3 >= period {
            tracing::warn!(
                "the systemd watchdog period ({}) is not much longer than interval + query timeouts; raise WatchdogSec",
                humantime::format_duration(period)
            );
        }
    }
    let (http_stop_tx, http_stop_rx) = oneshot::channel::<()>();
    let limits = crate::daemon::server::Limits::for_process();
    tracing::debug!(
        max_connections = limits.max_connections,
        "http limits: header timeout {:?}, idle timeout {:?}",
        limits.header_timeout,
        limits.idle_timeout
    );
    let server = tokio::spawn(crate::daemon::http::serve(
        listener,
        shared.clone(),
        limits,
        async {
            let _ = http_stop_rx.await;
        },
    ));

    let alerter = Alerter::start(&config, &shared.metrics.sink_metrics(), options.clock)
        .reporting_to(shared.save_errors.clone());
    let mut scan_loop = Loop {
        clock: options.clock,
        leadership: Leadership::new(&config),
        alerter,
        started: Instant::now(),
        confirmations: crate::core::safety::Confirmations::default(),
        watched: Vec::new(),
        config: Arc::new(config),
        scanner: None,
        carried: None,
        shared: shared.clone(),
        dry_run: options.dry_run,
        notifier: options.notifier.clone(),
        backoff: Backoff::new(MIN_BACKOFF, MAX_BACKOFF),
        seen: BTreeMap::new(),
        terminal: None,
        memory_saved: None,
        suspicion: None,
        holding: BTreeSet::new(),
        failing: false,
        stop: actions::Stop::default(),
        dry_seen: Default::default(),
    };
    let stop = scan_loop.stop.clone();
    let grace = SHUTDOWN_GRACE.max(scan_loop.config.database.query_timeout * 2);
    scan_loop.watch_artifacts().await;
    tokio::pin!(shutdown);
    let mut next = Instant::now();
    let mut first = true;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = sleep_until(next) => {
                let finished = {
                    let cycle = scan_loop.cycle();
                    tokio::pin!(cycle);
                    tokio::select! {
                        ok = &mut cycle => Some(ok),
                        _ = &mut shutdown => {
                            // No write starts from now on; the one in flight finishes and is
                            // recorded, and the cycle ends (alerts for what it wrote queued
                            // and saved) within the grace.
                            stop.set();
                            let _ = tokio::time::timeout(grace, cycle).await;
                            None
                        }
                    }
                };
                let Some(ok) = finished else { break };
                release_memory();
                if first {
                    options.notifier.ready(&scan_loop.status_line());
                    first = false;
                }
                next = scan_loop.next_deadline(next, ok);
            }
            Some(request) = recover_rx.recv() => scan_loop.recover(request).await,
            Some(request) = jobs_rx.recv() => {
                if scan_loop.job_action(request).await {
                    // A person's write: the next scan shows it now, not an interval later.
                    next = Instant::now();
                }
            }
            Some(request) = bulk_rx.recv() => {
                if scan_loop.bulk_action(request).await {
                    next = Instant::now();
                }
            }
            Some(receipt) = scan_loop.alerter.next_receipt() => {
                let at = scan_loop.clock.now();
                let told = scan_loop.alerter.receipt(receipt);
                shared.record(told.into_iter().map(|(key, d)| Change { at, key, what: What::Told(d) }));
            }
            // Receipts that came in a burst are saved within a second.
            _ = tokio::time::sleep(crate::adapters::alerts::SAVE_EVERY), if scan_loop.alerter.is_dirty() => {
                scan_loop.alerter.flush();
            }
            Some(()) = reloads.recv() => {
                options.notifier.reloading();
                match (options.reload)() {
                    Ok(new) => match prove(&new).await {
                        Ok(tls) => {
                            tracing::info!("config reloaded");
                            shared.tls.set(tls);
                            scan_loop.replace_config(new).await;
                            next = Instant::now();
                        }
                        Err(e) => tracing::error!("config reload refused, keeping the old config: {e}"),
                    },
                    Err(e) => tracing::error!("config reload failed, keeping the old config: {e}"),
                }
                options.notifier.ready(&scan_loop.status_line());
            }
        }
    }
    options.notifier.stopping();
    tracing::info!("shutting down");
    let _ = http_stop_tx.send(());
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, server).await;
    scan_loop.close().await;
    Ok(())
}

/// The state the scan loop owns.
struct Loop {
    leadership: Leadership,
    alerter: Alerter,
    clock: Clock,
    /// When the daemon started, for `startup_grace`.
    started: Instant,
    /// How long each write-worthy finding has held (`confirm_scans`).
    confirmations: crate::core::safety::Confirmations,
    /// The artifact roots' indexes and the tasks that keep them current.
    watched: Vec<(artifacts::Shared, tokio::task::JoinHandle<()>)>,
    config: Arc<Config>,
    scanner: Option<Scanner>,
    /// Progress memory kept across a reload, for the next scanner.
    carried: Option<Memory>,
    shared: Arc<Shared>,
    dry_run: bool,
    notifier: Notifier,
    backoff: Backoff,
    /// Finding keys of the last scan, to log appearances and clearances once; `true` for a
    /// finding in an incident, whose own lines (opened, grew, ended) say it instead: a
    /// restart that kills 5,000 jobs is one line, not 5,000.
    seen: BTreeMap<FindingKey, bool>,
    /// The periodic terminal-status count, running beside the loop.
    terminal: Option<tokio::task::JoinHandle<()>>,
    /// When the job memory was last saved.
    memory_saved: Option<Instant>,
    /// The last scan's suspicion, to log it once when it appears.
    suspicion: Option<String>,
    /// The guards that held writes back at the last scan (by label), to log each once when it
    /// starts and once when it stops holding.
    holding: BTreeSet<&'static str>,
    /// Scans have been failing since the last success (logged once when it starts).
    failing: bool,
    /// Set on SIGTERM/SIGINT: no write starts after it.
    stop: actions::Stop,
    /// The dry-run writes of the last scan (logged and audited once, counted every scan).
    dry_seen: std::collections::HashSet<String>,
}

impl Loop {
    /// One scan cycle: connect if needed, scan, act, publish. Returns whether the database
    /// was reached.
    async fn cycle(&mut self) -> bool {
        let started = Instant::now();
        let result = self.scan_and_act().await;
        let elapsed = started.elapsed();
        let m = &self.shared.metrics;
        match result {
            Ok(report) => {
                m.scans.inc();
                m.scan_duration.observe(elapsed.as_secs_f64());
                m.database_up.set(1);
                m.last_scan_success.set(self.clock.now());
                *write(&self.shared.last_success) = Some(Instant::now());
                *write(&self.shared.last_scan) = Some(elapsed);
                m.observe_report(&report, &self.config.jobs.statuses);
                if let Some(seconds) = report.artifact_seconds {
                    m.artifact_scan_duration.observe(seconds);
                }
                let host_now = self.clock.now();
                for (index, _) in &self.watched {
                    m.observe_artifacts(&artifacts::lock(index), host_now);
                }
                self.log_changes(&report);
                if std::mem::take(&mut self.failing) {
                    tracing::info!("scans succeed again");
                }
                self.shared.ready.store(true, Ordering::Relaxed);
                *write(&self.shared.last_error) = None;
                if self.leadership.is_leader() {
                    if let Some(scanner) = &self.scanner {
                        let snoozed = self.shared.snoozes();
                        let snoozed = snoozed.keys().map(String::as_str).collect();
                        self.alerter.observe(
                            &report.findings,
                            &report.incidents,
                            &scanner.active_ids(),
                            &snoozed,
                        );
                    }
                    self.alerter.tick();
                }
                self.notifier.cycle(&summary(&report, Some(elapsed)));
                let mut report = report;
                if let Some(w) = read(&self.shared.unlisted).clone() {
                    report.warnings.push(Warning {
                        job_id: None,
                        message: w,
                    });
                }
                *write(&self.shared.latest) = Some(Arc::new(report));
                true
            }
            Err(e @ StoreError::Stopped { .. }) => {
                tracing::info!("scan ended early: {e}");
                false
            }
            Err(e) => {
                // A database that answered with an error is up: the query (the config) is
                // what failed, and monitoring must not page anyone for an outage.
                let answered = e.database_answered();
                let source = if answered { "query" } else { "database" };
                m.scan_errors.with_label_values(&[source]).inc();
                m.database_up.set(i64::from(answered));
                if !self.failing {
                    tracing::error!(source, "scan failed, retrying with backoff: {e}");
                    self.failing = true;
                } else {
                    tracing::debug!(source, "scan failed again: {e}");
                }
                self.shared.ready.store(false, Ordering::Relaxed);
                *write(&self.shared.last_error) = Some(e.to_string());
                if answered {
                    // The lock still works: report the real role.
                    self.lead().await;
                }
                if self.leadership.is_leader() {
                    self.alerter.tick();
                }
                let what = if answered {
                    "scan query rejected"
                } else {
                    "database unavailable"
                };
                self.notifier.cycle(&format!("{what}: {e}"));
                false
            }
        }
    }

    async fn scanner(&mut self) -> Result<&mut Scanner, StoreError> {
        if self.scanner.is_none() {
            // A stop ends a connect that hangs as it ends a read that does.
            let halt = self.stop.halt();
            let store = tokio::select! {
                store = Store::connect(&self.config) => store?.with_halt(halt),
                _ = halt.halted() => return Err(StoreError::Stopped { what: "connecting" }),
            };
            tracing::info!(database = %self.config.redacted_url(), "connected");
            if let Some(why) = store.refusal() {
                tracing::error!("jobwarden will not fail or re-queue any job: {why}");
            }
            crate::app::actions::resolve_pending(
                &store,
                &self.config.state_dir,
                self.config.audit_max_size,
            )
            .await;
            *write(&self.shared.store) = Some(store.clone());
            self.start_terminal_counts(store.clone());
            let indexes = self.watched.iter().map(|(i, _)| i.clone()).collect();
            let scanner = match self.carried.take() {
                Some(memory) => Scanner::with_memory(store, memory),
                None => Scanner::for_config(store, &self.config),
            };
            self.scanner = Some(scanner.with_artifacts(indexes).with_clock(self.clock));
        }
        self.scanner.as_mut().ok_or(StoreError::Query {
            what: "connecting",
            message: "no connection".into(),
        })
    }

    async fn scan_and_act(&mut self) -> Result<Report, StoreError> {
        let config = self.config.clone();
        let dry_run = config.dry_run || self.dry_run;
        let grace = self.started.elapsed() < config.safety.startup_grace;
        let held = self.shared.every_write_held();
        self.shared
            .metrics
            .writes_paused
            .set(i64::from(self.shared.paused_until().is_some()));
        let snoozed = self.snoozed();
        self.shared.metrics.jobs_snoozed.set(snoozed.len() as i64);
        let scanner = self.scanner().await?;
        let mut report = scanner.scan(&config, None).await?;
        let store = scanner.store().clone();
        self.log_suspicion(&report);
        if !self.lead().await {
            self.save_memory(false);
            return Ok(report);
        }
        self.alert_before_writes(&report, &snoozed, dry_run);
        let mut executed = actions::execute(
            &store,
            &config,
            &mut report,
            actions::Execute {
                dry_run,
                grace,
                confirm: Some(&mut self.confirmations),
                stop: Some(&self.stop),
                dry_seen: Some(&self.dry_seen),
                held,
                snoozed: &snoozed,
                ..actions::Execute::default()
            },
        )
        .await;
        self.count_actions(&executed);
        self.log_holding(&executed);
        self.incidents(&mut report, &executed);
        self.remember(&executed);
        if dry_run {
            self.dry_seen = std::mem::take(&mut executed.dry_keys);
        }
        self.audit_health(&executed);
        Ok(report)
    }

    /// Groups the scan's findings into incidents, logs each change once (opened, grew,
    /// ended) and publishes the counts.
    fn incidents(&mut self, report: &mut Report, executed: &actions::Executed) {
        let Some(scanner) = &mut self.scanner else {
            return;
        };
        let changes = scanner.incidents(report, Some(executed));
        let view = |id: &str| report.incidents.iter().find(|i| i.id == id);
        for id in &changes.opened {
            if let Some(i) = view(id) {
                tracing::warn!(incident = %i.id, jobs = i.jobs, "incident opened: {}", i.message);
            }
        }
        for (id, more) in &changes.grew {
            if let Some(i) = view(id) {
                tracing::warn!(incident = %i.id, jobs = i.jobs, "incident grew by {more}: {}", i.message);
            }
        }
        for id in &changes.ended {
            if let Some(i) = view(id) {
                tracing::info!(incident = %i.id, jobs = i.jobs, "incident ended: {}", i.message);
            }
        }
        let open: Vec<_> = report
            .incidents
            .iter()
            .filter(|i| i.ended_at.is_none())
            .collect();
        let m = &self.shared.metrics;
        m.incidents_open.set(open.len() as i64);
        m.incident_jobs
            .set(open.iter().map(|i| i.jobs).sum::<usize>() as i64);
        // An incident that opened or ended is saved with this scan's memory, not up to
        // MEMORY_SAVE_EVERY later: after a restart its id must not name another incident in
        // the alert book.
        if !changes.opened.is_empty() || !changes.ended.is_empty() {
            self.memory_saved = None;
        }
    }

    /// Makes the alerts of the findings about to be written durable first (see
    /// [`Alerter::before_writes`]): a kill mid-way through the writes still alerts on them
    /// after the restart.
    fn alert_before_writes(&mut self, report: &Report, snoozed: &[(String, f64)], dry_run: bool) {
        if dry_run {
            return;
        }
        let held = snoozed.iter().map(|(id, _)| id.as_str()).collect();
        self.alerter.before_writes(&report.findings, &held);
    }

    /// Publishes whether the audit trail takes writes: an error makes `/readyz` 503 and is
    /// counted; it clears when the trail can be opened again.
    fn audit_health(&mut self, executed: &actions::Executed) {
        let mut error = write(&self.shared.audit_error);
        match &executed.audit_error {
            Some(e) => {
                self.shared.metrics.audit_errors.inc();
                self.shared
                    .save_errors
                    .record(StateFile::Audit, &Err::<(), _>(e));
                *error = Some(e.clone());
            }
            None if error.is_some()
                && crate::adapters::audit::writable(&self.config.state_dir).is_ok() =>
            {
                tracing::info!("the audit trail takes writes again");
                self.shared
                    .save_errors
                    .record(StateFile::Audit, &Ok::<(), String>(()));
                *error = None;
            }
            None => {}
        }
    }

    /// Records this scan's re-queues in the job memory and saves it: at once after a
    /// re-queue, else at most every [`MEMORY_SAVE_EVERY`].
    fn remember(&mut self, executed: &actions::Executed) {
        let requeued = executed.requeued().next().is_some();
        if let Some(scanner) = &mut self.scanner {
            scanner.record(executed);
        }
        self.save_memory(requeued);
    }

    fn save_memory(&mut self, now: bool) {
        let due = now
            || self
                .memory_saved
                .is_none_or(|at| at.elapsed() >= MEMORY_SAVE_EVERY);
        if let (true, Some(scanner)) = (due, &mut self.scanner) {
            let saved = scanner.save_memory(&self.config);
            self.shared.save_errors.record(StateFile::Memory, &saved);
            self.memory_saved = Some(Instant::now());
        }
    }

    /// Logs a suspicion (a likely zone or clock problem) once when it appears, and once when
    /// it clears.
    fn log_suspicion(&mut self, report: &Report) {
        if report.suspicion == self.suspicion {
            return;
        }
        match &report.suspicion {
            Some(s) => tracing::error!("{s}"),
            None => tracing::info!("the timestamps look right again"),
        }
        self.suspicion.clone_from(&report.suspicion);
    }

    /// Handles `POST /api/v1/recover`: one scan with the request's options, acted on at once.
    async fn recover(&mut self, request: RecoverRequest) {
        let config = self.config.clone();
        let dry_run = request.dry_run || config.dry_run || self.dry_run;
        if !self.leadership.is_leader() {
            let _ = request.reply.send(Err(
                "this replica is a standby: send recover to the leader".into(),
            ));
            return;
        }
        let held = self.shared.every_write_held();
        let snoozed = self.snoozed();
        let result = async {
            let scanner = self.scanner().await?;
            let older_than = request.older_than.map(|after| OlderThan {
                after,
                force: false,
            });
            let mut report = scanner.scan(&config, older_than).await?;
            let store = scanner.store().clone();
            self.alert_before_writes(&report, &snoozed, dry_run);
            let executed = actions::execute(
                &store,
                &config,
                &mut report,
                actions::Execute {
                    dry_run,
                    stop: Some(&self.stop),
                    held,
                    snoozed: &snoozed,
                    ..actions::Execute::default()
                },
            )
            .await;
            Ok::<_, StoreError>((report, executed))
        }
        .await;
        let reply = match result {
            Ok((mut report, executed)) => {
                self.count_actions(&executed);
                self.incidents(&mut report, &executed);
                self.remember(&executed);
                tracing::info!(
                    findings = report.findings.len(),
                    writes = executed.applied.len(),
                    dry_run,
                    "recover requested over HTTP"
                );
                Ok(report)
            }
            Err(e) => Err(e.to_string()),
        };
        let _ = request.reply.send(reply);
    }

    /// The snoozed jobs and when each snooze ends, for the writes of a scan.
    fn snoozed(&self) -> Vec<(String, f64)> {
        self.shared
            .snoozes()
            .into_iter()
            .map(|(id, s)| (id, s.until))
            .collect()
    }

    /// Checks the leader lock, and publishes the role.
    async fn lead(&mut self) -> bool {
        let leader = self.leadership.check().await;
        self.shared.leader.store(leader, Ordering::Relaxed);
        *write(&self.shared.leader_holder) = self.leadership.holder().map(str::to_string);
        self.shared.role_known.store(true, Ordering::Relaxed);
        self.shared.metrics.leader.set(i64::from(leader));
        leader
    }

    fn count_actions(&self, executed: &actions::Executed) {
        for a in &executed.applied {
            self.shared.metrics.count_action(a.write.action, a.outcome);
        }
        for (w, _) in &executed.limited {
            self.shared
                .metrics
                .count_action(w.action, crate::core::detect::Outcome::Limited);
        }
    }

    /// Logs a guard once when it starts holding writes back (with how many and why) and once
    /// when it stops, never per job per scan. Holds that come and go with each finding
    /// (`min_age`, confirmation, the startup grace, a snooze) are not logged here.
    fn log_holding(&mut self, executed: &actions::Executed) {
        let transient = [
            "min_age",
            "confirming",
            "startup_grace",
            "snoozed",
            "stopping",
        ];
        let mut now: BTreeMap<&'static str, (usize, String)> = BTreeMap::new();
        for (_, why) in &executed.limited {
            let label = why.label();
            if transient.contains(&label) {
                continue;
            }
            now.entry(label).or_insert_with(|| (0, why.to_string())).0 += 1;
        }
        for (label, (n, why)) in &now {
            if !self.holding.contains(label) {
                tracing::warn!(guard = *label, writes = *n, "writes held back: {why}");
            }
        }
        for label in &self.holding {
            if !now.contains_key(label) {
                tracing::info!(guard = *label, "writes no longer held back by {label}");
            }
        }
        self.holding = now.into_keys().collect();
    }

    /// When the next scan is due: on the fixed schedule after a success (a late scan pushes
    /// the schedule back instead of bunching ticks), after the backoff after a failure.
    fn next_deadline(&mut self, previous: Instant, ok: bool) -> Instant {
        let now = Instant::now();
        if ok {
            self.backoff.reset();
            let due = previous + self.config.interval;
            if due > now {
                due
            } else {
                now + self.config.interval
            }
        } else {
            now + self.backoff.next(self.config.interval, fastrand::f64())
        }
    }

    async fn replace_config(&mut self, new: Config) {
        let same_table = new.database.url == self.config.database.url
            && new.jobs.table == self.config.jobs.table;
        if new.http.listen != self.config.http.listen {
            tracing::warn!("http.listen changed; it takes effect at the next restart");
        }
        if new.http.base_path != self.config.http.base_path {
            tracing::warn!("http.base_path changed; it takes effect at the next restart");
        }
        *write(&self.shared.token) = new.http.token.clone();
        *write(&self.shared.console) = ConsoleInfo::of(&new, self.dry_run);
        {
            // The listen address itself changes only at a restart.
            let mut http = write(&self.shared.http);
            let (listen, base_path) = (http.listen, http.base_path.clone());
            *http = crate::config::Http {
                listen,
                base_path,
                ..new.http.clone()
            };
        }
        *write(&self.shared.stale_after) = stale_after(&new);
        self.alerter.reconfigure(&new);
        if !same_table {
            // The lock is named after the database and table: another table, another lock.
            self.leadership.release().await;
            self.leadership = Leadership::new(&new);
        }
        self.config = Arc::new(new);
        // Columns, types and rules may all have changed: reconnect and rebuild the queries.
        // The progress memory is kept unless the table itself changed.
        *write(&self.shared.store) = None;
        if let Some(old) = self.scanner.take() {
            old.store().close().await;
            if same_table {
                self.carried = Some(old.into_memory());
            }
        }
        if let Some(handle) = self.terminal.take() {
            handle.abort();
        }
        self.watch_artifacts().await;
    }

    /// (Re)starts an index and its watcher for every artifact root.
    /// The first walk of each root runs off the runtime (HTTP answers meanwhile) and ends
    /// before the next scan: a scan never judges `missing_artifact` on a half-built index.
    async fn watch_artifacts(&mut self) {
        for (_, task) in self.watched.drain(..) {
            task.abort();
        }
        for spec in &self.config.artifacts {
            self.watched.push(artifacts::watch(spec).await);
        }
        *write(&self.shared.indexes) = self.watched.iter().map(|(i, _)| i.clone()).collect();
    }

    fn start_terminal_counts(&mut self, store: Store) {
        if let Some(handle) = self.terminal.take() {
            handle.abort();
        }
        let Some(every) = self.config.terminal_counts_every else {
            return;
        };
        let shared = self.shared.clone();
        let config = self.config.clone();
        self.terminal = Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match store.status_counts().await {
                    Ok(counts) => {
                        let statuses = &config.jobs.statuses;
                        shared.metrics.observe_terminal(&counts, statuses);
                        let unlisted = statuses.unlisted(&counts);
                        shared.metrics.observe_unlisted(&unlisted);
                        let warning = crate::core::vocabulary::unlisted_warning(
                            &unlisted,
                            crate::daemon::metrics::UNLISTED_NAMED,
                        );
                        let mut known = write(&shared.unlisted);
                        if *known != warning {
                            match &warning {
                                Some(w) => tracing::warn!("{w}"),
                                None if known.is_some() => {
                                    tracing::info!("every status word in the table is listed again")
                                }
                                None => {}
                            }
                            *known = warning;
                        }
                    }
                    Err(e) => tracing::warn!("counting rows per status failed: {e}"),
                }
            }
        }));
    }

    fn log_changes(&mut self, report: &Report) {
        let now: BTreeMap<FindingKey, bool> = report
            .findings
            .iter()
            .map(|f| (f.key(), f.incident.is_some()))
            .collect();
        let at = self.clock.now();
        let mut changes = Vec::new();
        for f in &report.findings {
            if !self.seen.contains_key(&f.key()) {
                if f.incident.is_none() {
                    tracing::warn!(
                        job_id = f.job_id.as_str(), kind = f.kind.as_str(), rule = %f.rule, age_seconds = f.age_seconds,
                        action = f.action.as_str(), outcome = f.outcome.as_str(), "finding: {}", f.message
                    );
                }
                changes.push(Change {
                    at,
                    key: f.key(),
                    what: What::Appeared(f.message.clone()),
                });
            }
        }
        for (gone, in_incident) in &self.seen {
            if now.contains_key(gone) {
                continue;
            }
            if !in_incident {
                tracing::info!(job_id = gone.job_id.as_str(), kind = gone.kind.as_str(), rule = %gone.rule, "finding cleared");
            }
            changes.push(Change {
                at,
                key: gone.clone(),
                what: What::Cleared,
            });
        }
        self.shared.record(changes);
        self.seen = now;
    }

    fn status_line(&self) -> String {
        match read(&self.shared.latest).as_ref() {
            Some(r) => summary(r, None),
            None => "no scan yet".to_string(),
        }
    }

    async fn close(&mut self) {
        self.alerter.shutdown();
        self.leadership.release().await;
        for (_, task) in self.watched.drain(..) {
            task.abort();
        }
        if let Some(handle) = self.terminal.take() {
            handle.abort();
        }
        self.save_memory(true);
        if let Some(scanner) = &self.scanner {
            scanner.store().close().await;
        }
    }
}

/// "3 running, 1 pending, 1 stalled, last scan 12 ms".
fn summary(report: &Report, elapsed: Option<Duration>) -> String {
    let mut parts: Vec<String> = [StatusClass::Running, StatusClass::Pending]
        .iter()
        .filter_map(|c| report.jobs.get(c).map(|n| format!("{n} {}", c.as_str())))
        .collect();
    let mut kinds: std::collections::BTreeMap<Kind, usize> = Default::default();
    for f in &report.findings {
        *kinds.entry(f.kind).or_default() += 1;
    }
    for (kind, n) in kinds {
        parts.push(format!("{n} {}", kind.as_str()));
    }
    if let Some(e) = elapsed {
        parts.push(format!("last scan {} ms", e.as_millis()));
    }
    parts.join(", ")
}

/// Proves a reloaded config before it replaces the running one: it connects, its table has
/// every column, and its scan query runs (one row).
/// Why a reloaded config was not adopted.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(transparent)]
    Tls(#[from] crate::adapters::tls::TlsError),
    #[error("the new one cannot scan: {0}")]
    Scan(#[from] StoreError),
}

/// Proves a reloaded config before it replaces the running one: its TLS files read afresh (a
/// renewed certificate takes effect on SIGHUP) and its database answers the scan's probe.
async fn prove(config: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, Refused> {
    let tls = load_tls(config)?;
    let store = Store::connect(config).await?;
    let result = store.probe(1).await.map(|_| ());
    store.close().await;
    result?;
    Ok(tls)
}

fn load_tls(
    config: &Config,
) -> Result<Option<tokio_rustls::TlsAcceptor>, crate::adapters::tls::TlsError> {
    config
        .http
        .tls
        .as_ref()
        .map(crate::adapters::tls::load_tls)
        .transpose()
}

/// How old the last successful scan may be before `/readyz` says 503.
fn stale_after(config: &Config) -> Duration {
    config.interval * 2 + config.database.query_timeout
}

/// Hands the memory a scan freed back to the system. A scan of 10,000 rows peaks at about
/// 20 MiB of heap that glibc would otherwise keep (measured in BENCHMARKS.md).
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
