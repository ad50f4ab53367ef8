//! The state the scan loop publishes and the web side reads: the latest report (shared, never
//! copied), readiness, the role, the health strip's figures, the history of findings for the
//! job pages, the operator's holds, and the channels the web side sends requests on.
//!
//! The loop writes it through the methods under "Written by the scan loop"; the web side
//! reads it, changes the operator's holds (a pause, a snooze: saved before they take effect)
//! and sends [`requests`] to the loop. Neither side names the other (`tests/layout.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::adapters::artifacts;
use crate::adapters::clock::Clock;
use crate::adapters::state::StateFile;
use crate::adapters::store::Store;
use crate::app::scan::Report;
use crate::config::Config;
use crate::core::detect::FindingKey;
use crate::core::safety::HeldBack;
use crate::daemon::metrics::Metrics;

pub mod requests;
pub use requests::{Ask, BulkRequest, JobRefusal, JobRequest, RecoverRequest, Select, Targets};

/// What the HTTP side reads: the latest scan, readiness, metrics, the token.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    /// The latest completed scan, shared with every request that reads it (never copied:
    /// a 10,000-finding report is megabytes).
    latest: RwLock<Option<Arc<Published>>>,
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
    /// The row, and what its page shows beyond a scan's columns.
    Row(
        Box<crate::core::job::JobRow>,
        Box<crate::adapters::store::Detail>,
    ),
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
    /// `[audit] max_size`, for the pauses and snoozes kept in the trail.
    pub audit_max_size: u64,
    pub job_url: Option<String>,
    /// The resolved config with its secrets redacted (`validate`'s JSON).
    pub config: serde_json::Value,
    /// The rules in precedence order (the first match per job and signal wins).
    pub rules: Vec<crate::config::Rule>,
    /// The configured columns: config key and column name.
    pub columns: Vec<(String, String)>,
    /// What a person's buttons can do.
    pub offers: crate::core::plan::Offers,
}

impl ConsoleInfo {
    fn of(config: &Config, dry_run: bool) -> ConsoleInfo {
        ConsoleInfo {
            environment: config.environment.clone(),
            dry_run: dry_run || config.dry_run,
            sinks: config.alerts.iter().map(|a| a.name.clone()).collect(),
            state_dir: config.state_dir.clone(),
            audit_max_size: config.audit_max_size,
            job_url: config.http.job_url.clone(),
            config: crate::config::redacted_json(config),
            rules: config.rules.clone(),
            columns: crate::adapters::store::configured_columns(&config.jobs)
                .into_iter()
                .map(|(key, field)| (key.to_string(), field.to_string()))
                .collect(),
            offers: crate::core::plan::Offers {
                statuses: config.jobs.statuses.clone(),
                min_age: config.safety.min_age.as_secs(),
            },
        }
    }
}

impl Shared {
    /// The latest completed scan (a cheap clone of a shared pointer).
    pub fn latest(&self) -> Option<Arc<Report>> {
        read(&self.latest).as_ref().map(|p| p.report.clone())
    }

    /// The latest completed scan with what the pages need of it.
    pub fn published(&self) -> Option<Arc<Published>> {
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

    /// `[http] user_header` (lower case) and the proxies it is believed from, when set.
    pub fn user_header(&self) -> Option<(String, Vec<crate::config::Cidr>)> {
        let http = read(&self.http);
        http.user_header
            .clone()
            .map(|h| (h, http.trusted_proxies.clone()))
    }

    /// Whether a request's `Host` is one this listener answers.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        read(&self.http).host_allowed(host)
    }

    /// The console's health strip, as of now.
    pub fn health(&self) -> Health {
        let info = read(&self.console).clone();
        let (ready, not_ready) = self.readiness();
        let m = &self.metrics;
        Health {
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
            pause: self.pause_note(),
            holds_lost: self.holds_lost(),
            state_errors: self.state_errors(),
            snoozes: self.snoozes(),
            actions: self.token().is_some(),
            offers: info.offers,
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

    /// Why writes are paused and who asked, while they are.
    pub fn pause_note(&self) -> Option<crate::core::holds::PauseNote> {
        let holds = read(&self.holds);
        holds.paused(self.clock.now()).and(holds.pause.clone())
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

    /// Pauses every write for `span` from now (zero: ends the pause), for `reason`, asked by
    /// `by`. Returns when writes resume. Any pause also ends the hold of lost holds: the
    /// operator has said what holds.
    pub async fn pause(
        &self,
        span: Duration,
        reason: &str,
        by: &str,
    ) -> std::io::Result<Option<f64>> {
        let mut ended = None;
        let (now, holds) = self
            .change_holds(|h, now| {
                h.paused_until = (!span.is_zero()).then_some(now + span.as_secs_f64());
                h.pause = (!span.is_zero()).then(|| crate::core::holds::PauseNote {
                    reason: reason.to_string(),
                    by: by.to_string(),
                });
                ended = h.lost.take();
            })
            .await?;
        if let Some(why) = ended {
            tracing::warn!("the hold of lost holds ({why}) was ended by an operator's pause");
        }
        let until = holds.paused(now);
        self.keep_history(vec![crate::adapters::audit::Hold {
            hold: if until.is_some() {
                crate::adapters::audit::HoldKind::Pause
            } else {
                crate::adapters::audit::HoldKind::Resume
            },
            time: crate::core::job::rfc3339(now),
            job_id: None,
            until: until.map(crate::core::job::rfc3339),
            reason: reason.to_string(),
            by: by.to_string(),
        }])
        .await;
        match until {
            Some(until) => tracing::warn!(
                by,
                reason,
                "writes paused until {} (POST /api/v1/pause); alerts go on",
                crate::core::job::rfc3339(until)
            ),
            None => tracing::info!(by, "writes resumed (POST /api/v1/pause)"),
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
        let (time, end) = (
            crate::core::job::rfc3339(now),
            until.map(crate::core::job::rfc3339),
        );
        let history = job_ids
            .iter()
            .map(|id| crate::adapters::audit::Hold {
                hold: if until.is_some() {
                    crate::adapters::audit::HoldKind::Snooze
                } else {
                    crate::adapters::audit::HoldKind::Unsnooze
                },
                time: time.clone(),
                job_id: Some(id.to_string()),
                until: end.clone(),
                reason: reason.to_string(),
                by: by.to_string(),
            })
            .collect();
        self.keep_history(history).await;
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

    /// Keeps pauses and snoozes in the audit trail, for `/audit` and the job pages. They are
    /// in force already (saved in the holds): a trail that cannot take them loses their
    /// history only, and says so.
    async fn keep_history(&self, holds: Vec<crate::adapters::audit::Hold>) {
        let (dir, max) = {
            let info = read(&self.console);
            (info.state_dir.clone(), info.audit_max_size)
        };
        let kept = tokio::task::spawn_blocking(move || {
            crate::adapters::audit::append_holds(&dir, max, &holds)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|kept| kept);
        if let Err(e) = kept {
            tracing::warn!(
                "a pause or snooze is in force but the audit trail could not keep it: {e}"
            );
        }
    }

    /// Pauses and snoozes kept in the audit trail: every pause, and `job`'s snoozes (every
    /// job's when `None`), the last `n`, oldest first (read off the runtime).
    pub async fn holds_history(
        &self,
        n: usize,
        job: Option<&str>,
    ) -> Vec<crate::adapters::audit::Hold> {
        let (dir, job) = (self.state_dir(), job.map(str::to_string));
        tokio::task::spawn_blocking(move || {
            crate::adapters::audit::last_holds(&dir, n, job.as_deref())
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
    }

    /// One job's row, read now (for its page), within [`ROW_TIMEOUT`].
    pub async fn read_row(&self, job_id: &str) -> RowRead {
        match self
            .with_store(|store| async move { store.job_detail(job_id).await })
            .await
        {
            Ok(Some((row, detail))) => RowRead::Row(Box::new(row), Box::new(detail)),
            Ok(None) => RowRead::Missing,
            Err(why) => RowRead::Unread(why),
        }
    }

    /// A read of the scanner's store for a page, within [`ROW_TIMEOUT`]; why not, in words.
    async fn with_store<T, F>(&self, reading: impl FnOnce(Store) -> F) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<T, crate::adapters::store::StoreError>>,
    {
        let Some(store) = read(&self.store).clone() else {
            return Err("jobwarden has not connected to the database yet".into());
        };
        match tokio::time::timeout(ROW_TIMEOUT, reading(store)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the database did not answer in time".into()),
        }
    }

    /// One page of the table's jobs whose status is one of `words`, newest first, searched by
    /// part of an id: `limit` rows from `offset`, read now within [`ROW_TIMEOUT`] (never by a
    /// scan).
    pub async fn list_jobs(
        &self,
        words: &[String],
        q: Option<&str>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<crate::core::job::JobRow>, String> {
        self.with_store(|store| async move { store.list_jobs(words, q, limit, offset).await })
            .await
    }

    /// The status words of each class, as configured.
    pub fn statuses(&self) -> crate::core::vocabulary::Statuses {
        read(&self.console).offers.statuses.clone()
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
    pub fn record(&self, changes: impl IntoIterator<Item = Change>) {
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

/// What the status page shows besides the latest scan.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// `[http] base_path`, or `""`.
    pub base: String,
    pub environment: Option<String>,
    pub database_up: bool,
    /// Whether `/readyz` would answer 200, and why not.
    pub ready: bool,
    pub not_ready: Option<String>,
    /// `leader`, `standby` or `unknown`.
    pub role: &'static str,
    /// Who holds the leader lock, while this replica stands by (when the database tells).
    pub leader: Option<String>,
    pub dry_run: bool,
    /// Seconds since the last good scan, and how long it took.
    pub last_scan_age: Option<f64>,
    pub last_scan_seconds: Option<f64>,
    /// Each alert sink: name, messages waiting, failed attempts so far.
    pub sinks: Vec<(String, i64, u64)>,
    /// `[http] job_url`, with `{job_id}`.
    pub job_url: Option<String>,
    /// An operator's pause of every write: until when, why and who asked.
    pub paused_until: Option<f64>,
    pub pause: Option<crate::core::holds::PauseNote>,
    /// The operator's holds were lost (why): every write is held until a pause ends it.
    pub holds_lost: Option<String>,
    /// Each state file whose last save failed, in words.
    pub state_errors: Vec<String>,
    /// Snoozed jobs, by id.
    pub snoozes: std::collections::BTreeMap<String, crate::core::holds::Snooze>,
    /// A token is configured: the pages carry the (hidden) action buttons.
    pub actions: bool,
    /// Which of them can work on a finding's job.
    pub offers: crate::core::plan::Offers,
}

/// A published scan: its report, shared by every reader, and what the pages need of it,
/// worked out once per scan by the first reader that needs it rather than once per request
/// (at 100,000 findings a sort and four counts per request cost the page tens of
/// milliseconds; see BENCHMARKS.md), and never by the scan loop, which only publishes.
#[derive(Debug)]
pub struct Published {
    pub report: Arc<Report>,
    /// The order and counts of the findings, by the first page that asks.
    index: std::sync::OnceLock<Index>,
    /// The report as `GET /api/v1/findings` answers it, serialized by its first reader and
    /// kept until the next scan (megabytes at 10,000 findings: once, not per request).
    json: std::sync::OnceLock<Result<axum::body::Bytes, String>>,
}

/// The order and counts of a report's findings, for the status page.
#[derive(Debug)]
pub struct Index {
    /// The findings' indexes, most urgent first ([`crate::core::detect::by_urgency`]).
    urgency: Vec<usize>,
    /// How many findings have each kind, rule, status and phase, most first.
    pub kinds: Vec<(String, usize)>,
    pub rules: Vec<(String, usize)>,
    pub statuses: Vec<(String, usize)>,
    pub phases: Vec<(String, usize)>,
}

impl Published {
    pub fn new(report: Report) -> Published {
        Published {
            report: Arc::new(report),
            index: std::sync::OnceLock::new(),
            json: std::sync::OnceLock::new(),
        }
    }

    /// The findings' order and counts (worked out once).
    pub fn index(&self) -> &Index {
        self.index.get_or_init(|| {
            let findings = &self.report.findings;
            let mut urgency: Vec<usize> = (0..findings.len()).collect();
            urgency.sort_by(|&a, &b| crate::core::detect::by_urgency(&findings[a], &findings[b]));
            Index {
                kinds: counted(findings.iter().map(|f| f.kind.as_str())),
                rules: counted(findings.iter().map(|f| f.rule.as_str())),
                statuses: counted(
                    findings
                        .iter()
                        .map(|f| f.status.as_str())
                        .filter(|s| !s.is_empty()),
                ),
                phases: counted(findings.iter().filter_map(|f| f.phase.as_deref())),
                urgency,
            }
        })
    }

    /// The findings, most urgent first.
    pub fn by_urgency(&self) -> impl Iterator<Item = &crate::core::detect::Finding> + Clone {
        self.index()
            .urgency
            .iter()
            .map(|&i| &self.report.findings[i])
    }

    /// The report as JSON (serialized once).
    pub fn json(&self) -> Result<axum::body::Bytes, String> {
        self.json
            .get_or_init(|| {
                serde_json::to_vec(&*self.report)
                    .map(axum::body::Bytes::from)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

/// How many times each value comes, most first (then by value).
fn counted<'a>(values: impl Iterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let mut counts: Vec<(String, usize)> = counts
        .into_iter()
        .map(|(v, n)| (v.to_string(), n))
        .collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
}

/// The loop's ends of the request channels the web side sends on.
pub struct Inbox {
    pub recover: mpsc::Receiver<RecoverRequest>,
    pub jobs: mpsc::Receiver<JobRequest>,
    pub bulk: mpsc::Receiver<BulkRequest>,
}

impl Shared {
    /// The state of a daemon about to start (no scan yet, the role unknown), the holds
    /// loaded from the state directory, and the loop's ends of the request channels.
    /// `listen` is the bound address (a port 0 in the file becomes the real one).
    pub fn new(
        config: &Config,
        metrics: Metrics,
        tls: Option<tokio_rustls::TlsAcceptor>,
        listen: std::net::SocketAddr,
        dry_run: bool,
        clock: Clock,
    ) -> (Arc<Shared>, Inbox) {
        let (recover_tx, recover) = mpsc::channel(8);
        let (jobs_tx, jobs) = mpsc::channel(8);
        let (bulk_tx, bulk) = mpsc::channel(2);
        let shared = Arc::new(Shared {
            save_errors: metrics.save_errors(),
            metrics,
            latest: RwLock::new(None),
            ready: AtomicBool::new(false),
            last_error: RwLock::new(None),
            audit_error: RwLock::new(None),
            last_success: RwLock::new(None),
            stale_after: RwLock::new(stale_after(config)),
            token: RwLock::new(config.http.token.clone()),
            http: RwLock::new(crate::config::Http {
                listen,
                ..config.http.clone()
            }),
            role_known: AtomicBool::new(false),
            leader: AtomicBool::new(false),
            leader_holder: RwLock::new(None),
            recover: recover_tx,
            jobs: jobs_tx,
            bulk: bulk_tx,
            tls: Arc::new(crate::adapters::tls::Tls::new(tls)),
            console: RwLock::new(ConsoleInfo::of(config, dry_run)),
            last_scan: RwLock::new(None),
            holds: RwLock::new(crate::adapters::state::load_holds(&config.state_dir)),
            holds_change: tokio::sync::Mutex::new(()),
            clock,
            store: RwLock::new(None),
            indexes: RwLock::new(Vec::new()),
            history: RwLock::new(std::collections::VecDeque::new()),
            unlisted: RwLock::new(None),
        });
        shared.publish_holds_lost();
        (
            shared,
            Inbox {
                recover,
                jobs,
                bulk,
            },
        )
    }
}

/// Written by the scan loop.
impl Shared {
    /// A scan reached the database and finished in `took`: ready again, the error gone.
    pub fn scan_succeeded(&self, took: Duration) {
        *write(&self.last_success) = Some(Instant::now());
        *write(&self.last_scan) = Some(took);
        self.ready.store(true, Ordering::Relaxed);
        *write(&self.last_error) = None;
    }

    /// A scan failed: not ready, and why.
    pub fn scan_failed(&self, error: String) {
        self.ready.store(false, Ordering::Relaxed);
        *write(&self.last_error) = Some(error);
    }

    /// Publishes a finished scan's report to every reader (the unlisted-status warning of the
    /// last count added to its warnings).
    pub fn publish(&self, mut report: Report) {
        if let Some(w) = read(&self.unlisted).clone() {
            report.warnings.push(crate::core::detect::Warning {
                job_id: None,
                message: w,
            });
        }
        let published = Published::new(report);
        *write(&self.latest) = Some(Arc::new(published));
    }

    /// The warning about unlisted status words from the latest status count; returns the
    /// previous one.
    pub fn replace_unlisted(&self, warning: Option<String>) -> Option<String> {
        std::mem::replace(&mut *write(&self.unlisted), warning)
    }

    /// Why the audit trail does not take writes, while it does not.
    pub fn audit_error(&self) -> Option<String> {
        read(&self.audit_error).clone()
    }

    /// Whether the audit trail takes writes (`None`) or why not (`/readyz` answers 503).
    pub fn set_audit_error(&self, error: Option<String>) {
        *write(&self.audit_error) = error;
    }

    /// The store the job pages read rows through (`None` while disconnected).
    pub fn set_store(&self, store: Option<Store>) {
        *write(&self.store) = store;
    }

    /// The artifact roots' indexes, for the job pages' files.
    pub fn set_indexes(&self, indexes: Vec<artifacts::Shared>) {
        *write(&self.indexes) = indexes;
    }

    /// The leader lock's answer, and who holds it while this replica stands by.
    pub fn set_role(&self, leader: bool, holder: Option<String>) {
        self.leader.store(leader, Ordering::Relaxed);
        *write(&self.leader_holder) = holder;
        self.role_known.store(true, Ordering::Relaxed);
    }

    /// A reloaded config: the token, the console's part and the Host check take effect at
    /// once; the listen address and the base path only at the next restart.
    pub fn reconfigure(&self, config: &Config, dry_run: bool) {
        *write(&self.token) = config.http.token.clone();
        *write(&self.console) = ConsoleInfo::of(config, dry_run);
        {
            let mut http = write(&self.http);
            let (listen, base_path) = (http.listen, http.base_path.clone());
            *http = crate::config::Http {
                listen,
                base_path,
                ..config.http.clone()
            };
        }
        *write(&self.stale_after) = stale_after(config);
    }

    /// Failed saves of the state files, counted and shown (the alerter holds a clone).
    pub fn save_errors(&self) -> &crate::adapters::state::SaveErrors {
        &self.save_errors
    }
}

/// How old the last successful scan may be before `/readyz` says 503.
fn stale_after(config: &Config) -> Duration {
    config.interval * 2 + config.database.query_timeout
}
