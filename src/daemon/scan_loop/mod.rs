//! The scan loop of `jobwarden run`.
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
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::adapters::alerts::Alerter;
use crate::adapters::artifacts;
use crate::adapters::clock::Clock;
use crate::adapters::leader::Leadership;
use crate::adapters::notify::Notifier;
use crate::adapters::state::StateFile;
use crate::adapters::store::{Store, StoreError};
use crate::app::actions;
use crate::app::scan::{Report, Scanner};
use crate::config::{Config, ConfigError, StatusClass};
use crate::core::backoff::Backoff;
use crate::core::detect::{FindingKey, Kind, OlderThan};
use crate::core::memory::Memory;
use crate::daemon::state::{Change, Inbox, RecoverRequest, Shared, What};

mod bulk;
mod jobs;

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

/// First retry delay after a failed scan; it doubles up to [`MAX_BACKOFF`] (or `interval`, if
/// shorter).
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between retries while the database is down.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a scan in flight may run on after SIGTERM before it is abandoned (at least).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// The job memory is saved at most this often (and at once after a re-queue, and at exit).
const MEMORY_SAVE_EVERY: Duration = Duration::from_secs(30);

impl Loop {
    /// The loop of a daemon about to start, its artifact roots watched (their first walks
    /// done: no scan judges a half-built index).
    pub async fn new(config: Config, shared: Arc<Shared>, options: Options) -> Loop {
        let alerter = Alerter::start(&config, &shared.metrics.sink_metrics(), options.clock)
            .reporting_to(shared.save_errors().clone());
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
            shared,
            dry_run: options.dry_run,
            notifier: options.notifier,
            reload: options.reload,
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
        scan_loop.watch_artifacts().await;
        scan_loop
    }

    /// Scans at once, then every interval, handling the web side's requests, alert
    /// receipts and reloads between scans, until `shutdown` completes.
    pub async fn run(
        &mut self,
        mut inbox: Inbox,
        mut reloads: mpsc::Receiver<()>,
        shutdown: impl Future<Output = ()>,
    ) {
        let stop = self.stop.clone();
        let grace = SHUTDOWN_GRACE.max(self.config.database.query_timeout * 2);
        tokio::pin!(shutdown);
        let mut next = Instant::now();
        let mut first = true;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = sleep_until(next) => {
                    let finished = {
                        let cycle = self.cycle();
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
                    if first {
                        self.notifier.ready(&self.status_line());
                        first = false;
                    }
                    next = self.next_deadline(next, ok);
                }
                Some(request) = inbox.recover.recv() => self.recover(request).await,
                Some(request) = inbox.jobs.recv() => {
                    if self.job_action(request).await {
                        // A person's write: the next scan shows it now, not an interval later.
                        next = Instant::now();
                    }
                }
                Some(request) = inbox.bulk.recv() => {
                    if self.bulk_action(request).await {
                        next = Instant::now();
                    }
                }
                Some(receipt) = self.alerter.next_receipt() => {
                    let at = self.clock.now();
                    let told = self.alerter.receipt(receipt);
                    self.shared.record(told.into_iter().map(|(key, d)| Change { at, key, what: What::Told(d) }));
                }
                // Receipts that came in a burst are saved within a second.
                _ = tokio::time::sleep(crate::adapters::alerts::SAVE_EVERY), if self.alerter.is_dirty() => {
                    self.alerter.flush();
                }
                Some(()) = reloads.recv() => {
                    self.notifier.reloading();
                    match (self.reload)() {
                        Ok(new) => match prove(&new).await {
                            Ok(tls) => {
                                tracing::info!("config reloaded");
                                self.shared.tls.set(tls);
                                self.replace_config(new).await;
                                next = Instant::now();
                            }
                            Err(e) => tracing::error!("config reload refused, keeping the old config: {e}"),
                        },
                        Err(e) => tracing::error!("config reload failed, keeping the old config: {e}"),
                    }
                    self.notifier.ready(&self.status_line());
                }
            }
        }
    }
}

/// The state the scan loop owns.
pub struct Loop {
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
    /// Reads the config again (SIGHUP).
    reload: Reloader,
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
        // A scan that read rows (or failed) freed heap worth handing back. A summary scan
        // frees next to nothing, and trimming after it only made the next scan fault the same
        // pages in again.
        if result
            .as_ref()
            .map_or(true, |r| !r.summarised || r.read_in_full > 0)
        {
            release_memory();
        }
        let m = &self.shared.metrics;
        match result {
            Ok(report) => {
                m.scans.inc();
                m.scan_duration.observe(elapsed.as_secs_f64());
                m.database_up.set(1);
                m.last_scan_success.set(self.clock.now());
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
                self.shared.scan_succeeded(elapsed);
                if self.leadership.is_leader() {
                    if let Some(scanner) = &self.scanner {
                        let snoozed = self.shared.snoozes();
                        let snoozed = snoozed.keys().map(String::as_str).collect();
                        self.alerter.observe(
                            &report.findings,
                            &report.incidents,
                            scanner.active_ids(),
                            &snoozed,
                        );
                    }
                    self.alerter.tick();
                }
                self.notifier.cycle(&summary(&report, Some(elapsed)));
                self.shared.publish(report);
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
                self.shared.scan_failed(e.to_string());
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
            self.shared.set_store(Some(store.clone()));
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
        let failing = self.shared.audit_error().is_some();
        match &executed.audit_error {
            Some(e) => {
                self.shared.metrics.audit_errors.inc();
                self.shared
                    .save_errors()
                    .record(StateFile::Audit, &Err::<(), _>(e));
                self.shared.set_audit_error(Some(e.clone()));
            }
            None if failing && crate::adapters::audit::writable(&self.config.state_dir).is_ok() => {
                tracing::info!("the audit trail takes writes again");
                self.shared
                    .save_errors()
                    .record(StateFile::Audit, &Ok::<(), String>(()));
                self.shared.set_audit_error(None);
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
            self.shared.save_errors().record(StateFile::Memory, &saved);
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
        self.shared
            .set_role(leader, self.leadership.holder().map(str::to_string));
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
        self.shared.reconfigure(&new, self.dry_run);
        self.alerter.reconfigure(&new);
        if !same_table {
            // The lock is named after the database and table: another table, another lock.
            self.leadership.release().await;
            self.leadership = Leadership::new(&new);
        }
        self.config = Arc::new(new);
        // Columns, types and rules may all have changed: reconnect and rebuild the queries.
        // The progress memory is kept unless the table itself changed.
        // The terminal counts read through the old store: stopped before it closes.
        self.shared.set_store(None);
        if let Some(handle) = self.terminal.take() {
            handle.abort();
        }
        if let Some(old) = self.scanner.take() {
            old.store().close().await;
            if same_table {
                self.carried = Some(old.into_memory());
            }
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
        self.shared
            .set_indexes(self.watched.iter().map(|(i, _)| i.clone()).collect());
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
                        let known = shared.replace_unlisted(warning.clone());
                        if known != warning {
                            match &warning {
                                Some(w) => tracing::warn!("{w}"),
                                None if known.is_some() => {
                                    tracing::info!("every status word in the table is listed again")
                                }
                                None => {}
                            }
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
        match self.shared.latest().as_deref() {
            Some(r) => summary(r, None),
            None => "no scan yet".to_string(),
        }
    }

    pub async fn close(&mut self) {
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

pub(super) fn load_tls(
    config: &Config,
) -> Result<Option<tokio_rustls::TlsAcceptor>, crate::adapters::tls::TlsError> {
    config
        .http
        .tls
        .as_ref()
        .map(crate::adapters::tls::load_tls)
        .transpose()
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
