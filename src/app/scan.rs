//! One scan: read the rows, look at the local processes, run the detection core, and return a
//! [`Report`]. `check`, `recover` and the daemon all scan through [`Scanner`], which owns the
//! job memory (time in status, progress) that lives from one scan to the next, and keeps it in
//! the state directory.

use std::collections::BTreeMap;

use serde::Serialize;

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::adapters::artifacts::{self, Mode};
use crate::adapters::clock::Clock;
use crate::adapters::process;
use crate::adapters::state as memory;
use crate::adapters::store::{Children, SetSummary, Snapshot, Store, StoreError, SummaryRead};
use crate::config::{Config, StatusClass};
use crate::core::candidates::{self, Standing};
use crate::core::detect::ArtifactView;
use crate::core::detect::{
    self, Detected, Finding, Liveness, Observation, OlderThan, Policy, SetFigures, Warning,
};
use crate::core::job::{JobRow, Relative};
use crate::core::memory::Memory;

/// How often the children of the active rows are read when no index on the parent column
/// serves the read and `terminal_counts_every` is off: the terminal counts' default period.
pub const CHILDREN_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// The result of one scan: the `check --json` object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub environment: Option<String>,
    #[serde(serialize_with = "crate::core::job::serialize_epoch")]
    pub checked_at: f64,
    /// Active rows per status class.
    pub jobs: BTreeMap<StatusClass, u64>,
    pub findings: Vec<Finding>,
    /// Rows that could not be judged (a NULL or unreadable timestamp).
    pub warnings: Vec<Warning>,
    /// Active rows per status word (for metrics; not part of the JSON).
    #[serde(skip)]
    pub by_status: BTreeMap<String, u64>,
    /// How long the artifact part of the scan took, when there are artifact roots.
    #[serde(skip)]
    pub artifact_seconds: Option<f64>,
    /// Age in seconds of the oldest heartbeat among running-class jobs, for the metric.
    #[serde(skip)]
    pub oldest_heartbeat_age: Option<f64>,
    /// The scan as a whole looks wrong (also the first of `warnings`).
    #[serde(skip)]
    pub suspicion: Option<String>,
    /// The suspicion holds every write back until it clears (see `core::detect::Detected`).
    #[serde(skip)]
    pub suspicion_holds: bool,
    /// Age of the newest liveness signal among the judged rows (`validate --connect`).
    #[serde(skip)]
    pub newest_signal_age: Option<f64>,
    /// Jobs first seen late: counted from jobwarden's first sight of them, not flagged yet
    /// although their rows show signals older than their rules (`check` names them).
    #[serde(skip)]
    pub late: Vec<String>,
    /// Findings grouped by cause: the open incidents and those that ended within the hour.
    pub incidents: Vec<crate::core::incident::View>,
    /// How many active rows this scan read in full and judged (all of them by the reference
    /// read; the picked ones by the two-tier read).
    #[serde(skip)]
    pub read_in_full: usize,
    /// The scan read a summary of the active set, not every active row (see
    /// [`Scanner::scan_by`]).
    #[serde(skip)]
    pub summarised: bool,
}

/// How a scan reads the active rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Every active row lightly, then in full only the rows that could have something to
    /// say (`core::candidates`): what a scan does unless the config watches progress. While
    /// the active set stays the one last read, a summary of it stands for the light read
    /// where the database and config allow one (see [`Scanner::scan_by`]).
    TwoTier,
    /// The two-tier read without the summary: every active row lightly at every scan (the
    /// benchmarks compare the two).
    Light,
    /// Every active row in full, every one judged: the reference the two-tier read is
    /// proven against, what `validate --connect` reads, and what a scan does when the
    /// config watches progress.
    Reference,
}

impl Read {
    /// The two-tier read, unless the config watches progress: the progress value (its
    /// digest) must then be read from every active row at every scan, which no index holds,
    /// so the light read costs what the full read costs and the candidates' second read only
    /// adds to it (benches/scan.rs: 1.12 times the reference read on PostgreSQL).
    pub fn for_config(config: &Config) -> Read {
        if config.jobs.progress.is_some() {
            Read::Reference
        } else {
            Read::TwoTier
        }
    }
}

/// Scans one table, remembering progress between scans.
#[derive(Debug)]
pub struct Scanner {
    store: Store,
    memory: Memory,
    /// When the last snapshot was read, to date the writes that follow it.
    snapshot_at: Option<(f64, tokio::time::Instant)>,
    host: String,
    /// The ids of the last row-by-row read's active rows (a summary scan's set is the same):
    /// kept as a set, not made anew by every scan that asks.
    active: HashSet<String>,
    /// The host of each of the last scan's active rows that names one (for incidents).
    hosts: HashMap<String, String>,
    /// The report folders' indexes.
    artifacts: Vec<artifacts::Shared>,
    /// Artifact job ids looked up in the table: `Some(status)`, or `None` when it lacks them.
    known: HashMap<String, Option<String>>,
    /// Artifact ids already reported as impossible for the id column's type.
    bad_ids: HashSet<String>,
    /// File ages are measured on it (the same clock as the files' mtimes).
    clock: Clock,
    /// The last children read (non-active rows under active parents) and when: without an
    /// index on the parent column they are read only every `terminal_counts_every`, and
    /// the scans in between judge parents by this read.
    children: Option<(tokio::time::Instant, Vec<Relative>)>,
    /// The last light read and what a summary scan needs of it (see [`Summarised`]).
    summarised: Option<Summarised>,
    /// The database refused the summary read: light reads only.
    summary_refused: bool,
}

/// What a summary scan goes on from: the last light read of the active set and the summary
/// read just before it. Where each id is among the rows, and what `core::candidates::Standing`
/// makes of them, are made by the first summary scan that needs them, not by every light
/// read (a table whose set changes at every scan never needs them).
#[derive(Debug)]
struct Summarised {
    summary: SetSummary,
    /// The light rows, their `created_at` from the memory.
    rows: Vec<JobRow>,
    index: Option<HashMap<String, usize>>,
    standing: Option<Standing>,
    counts: detect::ActiveCounts,
}

impl Summarised {
    /// Whether `summary` is of the same active set.
    fn same_set(&self, summary: &SetSummary) -> bool {
        self.summary.groups == summary.groups
    }
}

impl Scanner {
    /// A scanner with an empty memory (nothing saved, nothing loaded).
    pub fn new(store: Store) -> Scanner {
        Scanner::with_memory(store, Memory::default())
    }

    /// A scanner that goes on from the memory saved in the config's state directory.
    pub fn for_config(store: Store, config: &Config) -> Scanner {
        let memory = memory::load(&config.state_dir, &memory_scope(config));
        Scanner::with_memory(store, memory)
    }

    /// A scanner that goes on from an earlier one's memory.
    pub fn with_memory(store: Store, memory: Memory) -> Scanner {
        Scanner {
            store,
            memory,
            snapshot_at: None,
            host: process::hostname(),
            active: HashSet::new(),
            hosts: HashMap::new(),
            artifacts: Vec::new(),
            known: HashMap::new(),
            bad_ids: HashSet::new(),
            clock: Clock::System,
            children: None,
            summarised: None,
            summary_refused: false,
        }
    }

    /// Reads file ages on `clock` (the daemon's).
    pub fn with_clock(mut self, clock: Clock) -> Scanner {
        self.clock = clock;
        self
    }

    /// Adds the report folders' indexes.
    pub fn with_artifacts(mut self, indexes: Vec<artifacts::Shared>) -> Scanner {
        self.artifacts = indexes;
        self
    }

    /// The report folders' indexes.
    pub fn artifacts(&self) -> &[artifacts::Shared] {
        &self.artifacts
    }

    /// The ids of the last scan's active rows.
    pub fn active_ids(&self) -> &HashSet<String> {
        &self.active
    }

    /// Gives the memory back, for a scanner that replaces this one.
    pub fn into_memory(self) -> Memory {
        self.memory
    }

    /// Records the re-queues jobwarden just wrote, so each counts its new status from the
    /// write, not from `created_at`. They are dated by the database clock of the scan plus the
    /// time since it was read, which is at or after the write.
    pub fn record(&mut self, executed: &crate::app::actions::Executed) {
        let Some((now, read_at)) = self.snapshot_at else {
            return;
        };
        let at = now + read_at.elapsed().as_secs_f64();
        for (id, status) in executed.requeued() {
            self.memory.requeued(id, status, at);
            // Its dating changed: the next scan reads every row again.
            self.summarised = None;
        }
    }

    /// Saves the memory in the state directory when it changed. A failure is logged (and
    /// returned); without a memory, the next scan counts time in status from `created_at`, as
    /// a first scan does.
    pub fn save_memory(&mut self, config: &Config) -> std::io::Result<()> {
        if !self.memory.is_dirty() {
            return Ok(());
        }
        let saved = memory::save(&config.state_dir, &mut self.memory);
        if let Err(e) = &saved {
            tracing::warn!(
                path = %memory::path(&config.state_dir).display(),
                "cannot save the job memory: {e}"
            );
        }
        saved
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What the report folders hold for the jobs that matter this scan. Reads only those
    /// jobs' entries of each index: the active jobs with output, partial-file owners, ids the
    /// table lacks, and recently succeeded jobs. New ids are looked up in the table in one
    /// query; ids it lacked are asked again each scan (the row may come later).
    async fn artifact_views(
        &mut self,
        config: &Config,
        jobs: &[JobRow],
        now: f64,
    ) -> Result<(Vec<ArtifactView>, Vec<Warning>), StoreError> {
        if self.artifacts.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let active: HashSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        let mut ask: BTreeSet<String> = BTreeSet::new();
        for shared in &self.artifacts {
            let poll = artifacts::lock(shared).mode == Mode::Poll;
            if poll {
                artifacts::reconcile_off_runtime(shared).await;
            }
            let mut index = artifacts::lock(shared);
            let new = std::mem::take(&mut index.new_ids);
            ask.extend(
                new.into_iter()
                    .filter(|id| !active.contains(id.as_str()) && !self.known.contains_key(id)),
            );
            ask.extend(
                index
                    .partial_owners()
                    .into_iter()
                    .filter(|id| !active.contains(id) && !self.known.contains_key(*id))
                    .map(str::to_string),
            );
        }
        // Ids the table lacked last time are asked again; those whose files are gone, dropped.
        let indexes = &self.artifacts;
        self.known.retain(|id, status| {
            status.is_some() || indexes.iter().any(|s| artifacts::lock(s).has_job(id))
        });
        ask.extend(
            self.known
                .iter()
                .filter(|(_, s)| s.is_none())
                .map(|(id, _)| id.clone()),
        );
        let mut valid = Vec::new();
        for id in &ask {
            if self.store.valid_id(id) {
                valid.push(id.as_str());
            } else if self.bad_ids.insert(id.clone()) {
                tracing::warn!(
                    job_id = id.as_str(),
                    "artifact path names a job id the id column cannot hold; skipped"
                );
            }
        }
        if !valid.is_empty() {
            let found: HashMap<String, String> =
                self.store.lookup(&valid).await?.into_iter().collect();
            for id in valid {
                self.known.insert(id.to_string(), found.get(id).cloned());
            }
        }
        let within = config.required_within();
        let succeeded = match within {
            Some(w) => self.store.recent_succeeded(w, now).await?,
            None => Vec::new(),
        };
        let host_now = self.clock.now();
        let mut views = Vec::with_capacity(self.artifacts.len());
        let mut warnings = Vec::new();
        for shared in &self.artifacts {
            let index = artifacts::lock(shared);
            let spec = &index.spec;
            // A root that is not there tells nothing of what a job left in it.
            let root_missing = !index.root_present;
            if root_missing {
                warnings.push(Warning {
                    job_id: None,
                    message: format!(
                        "artifact root `{}` ({}) does not exist or cannot be read: no missing_artifact for it until it does",
                        spec.name,
                        spec.root.display()
                    ),
                });
            }
            let window = spec.required_within.as_secs_f64();
            let recent: Vec<(String, String, f64)> = succeeded
                .iter()
                .filter(|(_, _, at)| now - at <= window)
                .cloned()
                .collect();
            let mut ids: BTreeSet<&str> = active
                .iter()
                .copied()
                .filter(|id| index.has_job(id))
                .collect();
            ids.extend(index.partial_owners());
            let unknown: BTreeSet<String> = self
                .known
                .iter()
                .filter(|(id, s)| s.is_none() && index.has_job(id))
                .map(|(id, _)| id.clone())
                .collect();
            ids.extend(unknown.iter().map(String::as_str));
            if !spec.required.is_empty() {
                ids.extend(recent.iter().map(|(id, _, _)| id.as_str()));
            }
            let files: HashMap<String, Vec<artifacts::ArtifactFile>> = ids
                .iter()
                .map(|id| (id.to_string(), index.files_of(id, host_now)))
                .filter(|(_, f)| !f.is_empty())
                .collect();
            let status_of = files
                .keys()
                .filter_map(|id| Some((id.clone(), self.known.get(id)?.clone()?)))
                .collect();
            views.push(ArtifactView {
                name: spec.name.clone(),
                settle: spec.settle,
                required: spec.required.clone(),
                files,
                unknown,
                status_of,
                succeeded: if spec.required.is_empty() || root_missing {
                    Vec::new()
                } else {
                    recent
                },
            });
        }
        Ok((views, warnings))
    }

    /// One scan, by the read [`Read::for_config`] chooses. `older_than` is `recover
    /// --older-than`.
    pub async fn scan(
        &mut self,
        config: &Config,
        older_than: Option<OlderThan>,
    ) -> Result<Report, StoreError> {
        self.scan_by(config, older_than, Read::for_config(config))
            .await
    }

    /// One scan by the read `read`: the two-tier read, or the reference that reads and
    /// judges every active row in full (the tests and benchmarks compare the two).
    pub async fn scan_by(
        &mut self,
        config: &Config,
        older_than: Option<OlderThan>,
        read: Read,
    ) -> Result<Report, StoreError> {
        let read_at = tokio::time::Instant::now();
        // Read before the rows, so that a change after it shows in the next summary.
        let summary = match read {
            Read::TwoTier => self.summary(config, older_than).await?,
            Read::Light | Read::Reference => None,
        };
        let summary = match summary {
            Some(SummaryRead {
                now,
                summary,
                suspects: Some(suspects),
            }) => {
                if let Some(report) = self
                    .summary_scan(config, older_than, now, &summary, suspects, read_at)
                    .await?
                {
                    return Ok(report);
                }
                Some(summary)
            }
            other => other.map(|r| r.summary),
        };
        let children = self.children_due(config);
        let snapshot = match read {
            Read::TwoTier | Read::Light => self.store.light_snapshot(children).await?,
            Read::Reference => self.store.snapshot(children).await?,
        };
        self.snapshot_at = Some((snapshot.now, read_at));
        self.judge_with(config, snapshot, older_than, read, summary)
            .await
    }

    /// The summary of the active set, where one can stand for the light read (see
    /// `Store::summary_read`), with the rows due by heartbeat where a summary scan could
    /// follow (the last light read is kept). A database that refuses it (a PostgreSQL
    /// before 11 has no `hashtextextended`) is read lightly from then on.
    pub async fn summary(
        &mut self,
        config: &Config,
        older_than: Option<OlderThan>,
    ) -> Result<Option<SummaryRead>, StoreError> {
        if self.summary_refused || !self.store.summarises() {
            return Ok(None);
        }
        let limits = self.summarised.is_some().then(|| {
            candidates::heartbeat_limits(
                &policy(config, older_than),
                config.jobs.heartbeat_at.is_some(),
            )
        });
        // The database's clock as last read, moved on by this process's: near enough to
        // find a naive column's zone offsets (`Store::summary_read` looks a day around).
        let estimate = match self.snapshot_at {
            Some((now, at)) => now + at.elapsed().as_secs_f64(),
            None => self.clock.now(),
        };
        match self.store.summary_read(limits.as_ref(), estimate).await {
            Err(StoreError::Rejected { message, .. }) => {
                tracing::warn!(
                    "the summary of the active jobs was refused ({message}); every scan reads every active row"
                );
                self.summary_refused = true;
                Ok(None)
            }
            other => other,
        }
    }

    /// A summary scan: the active set is the one the last light read saw (the same ids,
    /// status words, `status_since`, pids, hosts and workers, by its summary), so the rows
    /// that could have something to say are the ones the database names by their heartbeat
    /// (`Store::suspects`, judged by `core::candidates::pick`) and those the last read's
    /// [`Standing`] names by the other limits, a process gone on this host, or files. They
    /// are read in full and judged; the scan-wide figures come from the summary. `None`
    /// when the set is not the one last read: the caller reads every row lightly.
    async fn summary_scan(
        &mut self,
        config: &Config,
        older_than: Option<OlderThan>,
        now: f64,
        summary: &SetSummary,
        mut suspects: Vec<JobRow>,
        read_at: tokio::time::Instant,
    ) -> Result<Option<Report>, StoreError> {
        let Some(mut state) = self.summarised.take() else {
            return Ok(None);
        };
        if !state.same_set(summary) {
            return Ok(None);
        }
        let policy = policy(config, older_than);
        let heartbeat_read = config.jobs.heartbeat_at.is_some();
        let index = state.index.get_or_insert_with(|| {
            (state.rows.iter().enumerate())
                .map(|(i, j)| (j.id.clone(), i))
                .collect()
        });
        for j in &mut suspects {
            match index.get(&j.id).map(|i| &state.rows[*i]) {
                Some(known) if known.status == j.status => {
                    j.created_at = known.created_at.clone();
                }
                // The set changed since its summary was read.
                _ => return Ok(None),
            }
        }
        self.snapshot_at = Some((now, read_at));
        let dated_anew = self.memory.tick(now);
        let standing = match state.standing.take() {
            Some(s) if !dated_anew && s.fits(&policy) => s,
            _ => Standing::new(
                &state.rows,
                &policy,
                &self.memory,
                now,
                &self.host,
                heartbeat_read,
            ),
        };
        let dead = process::dead_pids(standing.local_pids());
        let artifact_started = tokio::time::Instant::now();
        let (views, root_warnings) = self.artifact_views(config, &state.rows, now).await?;
        let artifact_seconds =
            (!self.artifacts.is_empty()).then(|| artifact_started.elapsed().as_secs_f64());
        let mut obs = Observation {
            now,
            jobs: &suspects,
            all: &suspects,
            relatives: &[],
            local_host: &self.host,
            dead_pids: &dead,
            artifacts: &views,
            workers: None,
        };
        let by_heartbeat = candidates::pick(&obs, &policy, &self.memory);
        let mut picked = standing.pick(now, by_heartbeat, &dead);
        let known = |id: &String| state.index.as_ref().is_some_and(|i| i.contains_key(id));
        picked.extend(
            views
                .iter()
                .flat_map(|v| v.files.keys())
                .filter(|id| known(id))
                .cloned(),
        );
        let full = self.in_full(&state.rows, &picked).await?;
        // The rows without a heartbeat: among the suspects when the heartbeat is read (a
        // NULL is one), in the standing otherwise.
        let (newest_created, oldest_running) = standing.unbeaten();
        let unbeaten = suspects.iter().filter(|j| j.heartbeat_at.at().is_none());
        let newest_signal = [summary.newest_heartbeat, newest_created]
            .into_iter()
            .flatten()
            .chain(unbeaten.clone().filter_map(|j| j.created_at.at()))
            .reduce(f64::max);
        let oldest_running = [summary.oldest_running_heartbeat, oldest_running]
            .into_iter()
            .flatten()
            .chain(
                unbeaten
                    .filter(|j| {
                        config.jobs.statuses.class_of(&j.status) == Some(StatusClass::Running)
                    })
                    .filter_map(|j| j.heartbeat_since().ok()),
            )
            .reduce(f64::min);
        obs.jobs = &full;
        obs.all = &full;
        let figures = SetFigures {
            active: summary
                .groups
                .iter()
                .map(|(_, n, _)| usize::try_from(*n).unwrap_or(usize::MAX))
                .sum(),
            newest_signal,
        };
        let detected = detect::judge_summarised(&obs, &policy, &self.memory, figures);
        let report = self.report(
            config,
            detected,
            root_warnings,
            now,
            &state.counts,
            oldest_running,
            artifact_seconds,
            full.len(),
        );
        state.standing = Some(standing);
        self.summarised = Some(state);
        Ok(Some(Report {
            summarised: true,
            ..report
        }))
    }

    /// Gives the light rows their `created_at`: the memory's, or, for a row it does not
    /// keep one for (new to it), the row's own, read in full (returned by id). A row that
    /// changed status between the reads, or went, is left to the next scan.
    async fn complete(
        &self,
        light: &mut Vec<JobRow>,
    ) -> Result<HashMap<String, JobRow>, StoreError> {
        let mut unknown: HashSet<String> = HashSet::new();
        for j in light.iter_mut() {
            match self.memory.created(&j.id) {
                Some(created) => j.created_at = created.clone(),
                None => {
                    unknown.insert(j.id.clone());
                }
            }
        }
        if unknown.is_empty() {
            return Ok(HashMap::new());
        }
        let read: HashMap<String, JobRow> = self
            .in_full(light, &unknown)
            .await?
            .into_iter()
            .map(|j| (j.id.clone(), j))
            .collect();
        light.retain_mut(|j| {
            if !unknown.contains(&j.id) {
                return true;
            }
            match read.get(&j.id) {
                Some(full) => {
                    j.created_at = full.created_at.clone();
                    true
                }
                None => false,
            }
        });
        Ok(read)
    }

    /// The rows among `light` that `picked` names, read in full, in the light read's order.
    /// A row whose status changed between the two reads is left to the next scan (the
    /// memory recorded the old one). When most rows are picked (a first sight of a mass
    /// stall), one read of every active row costs less than the reads by id.
    async fn in_full(
        &self,
        light: &[JobRow],
        picked: &HashSet<String>,
    ) -> Result<Vec<JobRow>, StoreError> {
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        let rows = if picked.len() * 2 > light.len() {
            self.store.active_all_in_full().await?
        } else {
            let ids: Vec<&str> = light
                .iter()
                .map(|j| j.id.as_str())
                .filter(|id| picked.contains(*id))
                .collect();
            self.store.active_in_full(&ids).await?
        };
        let mut by_id: HashMap<String, JobRow> =
            rows.into_iter().map(|j| (j.id.clone(), j)).collect();
        Ok(light
            .iter()
            .filter(|j| picked.contains(&j.id))
            .filter_map(|j| by_id.remove(&j.id).filter(|f| f.status == j.status))
            .collect())
    }

    /// Whether this scan reads the children of the active rows: always when an index on the
    /// parent column serves the read (or there is nothing to read); otherwise, since the read
    /// is then a pass over the table, only when the last one is `terminal_counts_every` old
    /// ([`CHILDREN_EVERY`] when that is off), as the terminal counts are.
    fn children_due(&self, config: &Config) -> Children {
        if config.jobs.parent_id.is_none() || self.store.info().parent_indexed {
            return Children::Read;
        }
        let every = config.terminal_counts_every.unwrap_or(CHILDREN_EVERY);
        match &self.children {
            Some((at, _)) if at.elapsed() < every => Children::Skip,
            _ => Children::Read,
        }
    }

    /// Judges rows already read (`validate --connect` reads a limited sample).
    pub async fn judge(
        &mut self,
        config: &Config,
        snapshot: Snapshot,
    ) -> Result<Report, StoreError> {
        self.judge_with(config, snapshot, None, Read::Reference, None)
            .await
    }

    /// Judges a snapshot. `summary`: the summary of the active set read just before it, kept
    /// with the light rows for the summary scans that follow.
    async fn judge_with(
        &mut self,
        config: &Config,
        snapshot: Snapshot,
        older_than: Option<OlderThan>,
        read: Read,
        summary: Option<SetSummary>,
    ) -> Result<Report, StoreError> {
        let mut snapshot = snapshot;
        // The two-tier read's rows whose creation time the memory does not keep yet (new to
        // it) are read in full first; the others take theirs from the memory.
        let mut read_early = match read {
            Read::TwoTier | Read::Light => self.complete(&mut snapshot.jobs).await?,
            Read::Reference => HashMap::new(),
        };
        let mut relatives = std::mem::take(&mut snapshot.relatives);
        match snapshot.children.take() {
            Some(children) => {
                relatives.extend(children.iter().cloned());
                self.children = Some((tokio::time::Instant::now(), children));
            }
            // Not read this scan: the last read's, but the rows active now (judged as jobs).
            None => {
                if let Some((_, children)) = &self.children {
                    let active: HashSet<&str> =
                        snapshot.jobs.iter().map(|j| j.id.as_str()).collect();
                    relatives.extend(
                        children
                            .iter()
                            .filter(|c| !active.contains(c.id.as_str()))
                            .cloned(),
                    );
                }
            }
        }
        let dead = process::dead_pids(snapshot.jobs.iter().filter_map(|j| j.pid));
        let artifact_started = tokio::time::Instant::now();
        let (views, root_warnings) = self
            .artifact_views(config, &snapshot.jobs, snapshot.now)
            .await?;
        let artifact_seconds =
            (!self.artifacts.is_empty()).then(|| artifact_started.elapsed().as_secs_f64());
        let mut obs = Observation {
            now: snapshot.now,
            jobs: &snapshot.jobs,
            all: &snapshot.jobs,
            relatives: &relatives,
            local_host: &self.host,
            dead_pids: &dead,
            artifacts: &views,
            workers: snapshot.workers.as_ref(),
        };
        let policy = policy(config, older_than);
        let full;
        let mut read_in_full = snapshot.jobs.len();
        let detected = match read {
            Read::Reference => detect::detect(&obs, &policy, &mut self.memory),
            Read::TwoTier | Read::Light => {
                self.memory.observe(&snapshot.jobs, snapshot.now);
                let picked = crate::core::candidates::pick(&obs, &policy, &self.memory);
                let rest: HashSet<String> = picked
                    .iter()
                    .filter(|id| !read_early.contains_key(*id))
                    .cloned()
                    .collect();
                let more = self.in_full(&snapshot.jobs, &rest).await?;
                read_in_full = read_early.len() + more.len();
                read_early.extend(more.into_iter().map(|j| (j.id.clone(), j)));
                full = snapshot
                    .jobs
                    .iter()
                    .filter(|j| picked.contains(&j.id))
                    .filter_map(|j| read_early.remove(&j.id))
                    .collect::<Vec<_>>();
                obs.jobs = &full;
                detect::judge(&obs, &policy, &self.memory)
            }
        };
        let counts = detect::count_active(&snapshot.jobs, &config.jobs.statuses);
        let oldest_running = snapshot
            .jobs
            .iter()
            .filter(|j| config.jobs.statuses.class_of(&j.status) == Some(StatusClass::Running))
            .filter_map(|j| j.heartbeat_since().ok())
            .reduce(f64::min);
        let report = self.report(
            config,
            detected,
            root_warnings,
            snapshot.now,
            &counts,
            oldest_running,
            artifact_seconds,
            read_in_full,
        );
        self.hosts = snapshot
            .jobs
            .iter()
            .filter_map(|j| Some((j.id.clone(), j.host.clone()?)))
            .collect();
        self.active = snapshot.jobs.iter().map(|j| j.id.clone()).collect();
        self.summarised = match (read, summary) {
            (Read::TwoTier, Some(summary)) => Some(Summarised {
                summary,
                rows: snapshot.jobs,
                index: None,
                standing: None,
                counts,
            }),
            _ => None,
        };
        Ok(report)
    }

    /// The report of a scan: the detection's answer with the folders' warnings and the
    /// store's refusal to write, the counts, and the oldest running row's heartbeat (or
    /// creation) time.
    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        config: &Config,
        mut detected: Detected,
        root_warnings: Vec<Warning>,
        now: f64,
        counts: &detect::ActiveCounts,
        oldest_running: Option<f64>,
        artifact_seconds: Option<f64>,
        read_in_full: usize,
    ) -> Report {
        detected.warnings.extend(root_warnings);
        if let Some(why) = self.store.refusal() {
            detected.warnings.insert(
                0,
                Warning {
                    job_id: None,
                    message: format!("no job will be failed or re-queued: {why}"),
                },
            );
        }
        let mut jobs: BTreeMap<StatusClass, u64> = [StatusClass::Pending, StatusClass::Running]
            .into_iter()
            .filter(|c| !config.jobs.statuses.words(*c).is_empty())
            .map(|c| (c, 0))
            .collect();
        jobs.extend(counts.by_class.iter().map(|(c, n)| (*c, *n)));
        Report {
            artifact_seconds,
            oldest_heartbeat_age: oldest_running.map(|since| (now - since).max(0.0)),
            environment: config.environment.clone(),
            checked_at: now,
            jobs,
            findings: detected.findings,
            warnings: detected.warnings,
            suspicion: detected.suspicion,
            suspicion_holds: detected.suspicion_holds,
            newest_signal_age: detected.newest_signal_age,
            late: detected.late,
            by_status: counts.by_status.clone(),
            incidents: Vec::new(),
            read_in_full,
            summarised: false,
        }
    }

    /// Records that jobwarden wrote this job outside a scan (a person's action): it leaves its
    /// incident as failed (or re-queued) by a person.
    pub fn written(&mut self, id: &str, action: crate::config::Action) {
        self.memory.written(id, action);
    }

    /// Groups the report's findings into incidents (after the writes, so the mass stall the
    /// gate raised and the jobs written are known), marks each finding with its incident, and
    /// puts the incidents in the report. Returns what changed, for the logs.
    pub fn incidents(
        &mut self,
        report: &mut Report,
        executed: Option<&crate::app::actions::Executed>,
    ) -> crate::core::incident::Changes {
        let written: HashSet<&str> = executed
            .map(|e| {
                e.applied
                    .iter()
                    .filter(|a| a.outcome == crate::core::detect::Outcome::Applied)
                    .map(|a| a.write.job_id.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let changes = self.memory.incidents(
            &mut report.findings,
            &crate::core::incident::Scan {
                now: report.checked_at,
                hosts: &self.hosts,
                active: &self.active,
                written: &written,
            },
        );
        report.incidents = self.memory.incident_views(report.checked_at);
        changes
    }
}

/// The rules in force for a scan of `config`.
fn policy(config: &Config, older_than: Option<OlderThan>) -> Policy<'_> {
    Policy {
        rules: &config.rules,
        statuses: &config.jobs.statuses,
        older_than,
        liveness: Liveness {
            // A job with a worker lives by its worker's heartbeat.
            heartbeat: config.jobs.heartbeat_at.is_some() || config.jobs.workers.is_some(),
            progress: config.jobs.progress.is_some(),
        },
    }
}

/// Which database and table a saved memory belongs to.
fn memory_scope(config: &Config) -> String {
    format!("{} {}", config.redacted_url(), config.jobs.table)
}
