//! One scan: read the rows, look at the local processes, run the detection core, and return a
//! [`Report`]. `check`, `recover` and the daemon all scan through [`Scanner`], which owns the
//! progress memory that must live from one scan to the next.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, StatusClass};
use crate::detect::{self, Finding, Observation, Policy, ProgressMemory, Warning};
use crate::process;
use crate::store::{Store, StoreError};

/// The result of one scan: the `check --json` object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub environment: Option<String>,
    #[serde(serialize_with = "crate::job::serialize_epoch")]
    pub checked_at: f64,
    /// Active rows per status class.
    pub jobs: BTreeMap<StatusClass, u64>,
    pub findings: Vec<Finding>,
    /// Rows that could not be judged (a NULL or unreadable timestamp).
    pub warnings: Vec<Warning>,
    /// Active rows per status word (for metrics; not part of the JSON).
    #[serde(skip)]
    pub by_status: BTreeMap<String, u64>,
    /// Age in seconds of the oldest heartbeat among running-class jobs, for the metric.
    #[serde(skip)]
    pub oldest_heartbeat_age: Option<f64>,
}

/// Scans one table, remembering progress between scans.
#[derive(Debug)]
pub struct Scanner {
    store: Store,
    memory: ProgressMemory,
    host: String,
    /// The ids of the last scan's active rows.
    active: Vec<String>,
}

impl Scanner {
    pub fn new(store: Store) -> Scanner {
        Scanner::with_memory(store, ProgressMemory::default())
    }

    /// A scanner that goes on from an earlier one's progress memory.
    pub fn with_memory(store: Store, memory: ProgressMemory) -> Scanner {
        Scanner {
            store,
            memory,
            host: process::hostname(),
            active: Vec::new(),
        }
    }

    /// The ids of the last scan's active rows.
    pub fn active_ids(&self) -> std::collections::HashSet<&str> {
        self.active.iter().map(String::as_str).collect()
    }

    /// Gives the progress memory back, for a scanner that replaces this one.
    pub fn into_memory(self) -> ProgressMemory {
        self.memory
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One scan. `older_than` is `recover --older-than`.
    pub async fn scan(
        &mut self,
        config: &Config,
        older_than: Option<Duration>,
    ) -> Result<Report, StoreError> {
        let snapshot = self.store.snapshot().await?;
        let dead = process::dead_pids(snapshot.jobs.iter().filter_map(|j| j.pid));
        let obs = Observation {
            now: snapshot.now,
            jobs: &snapshot.jobs,
            relatives: &snapshot.relatives,
            local_host: &self.host,
            dead_pids: &dead,
        };
        let policy = Policy {
            rules: &config.rules,
            statuses: &config.jobs.statuses,
            older_than,
        };
        let detected = detect::detect(&obs, &policy, &mut self.memory);
        let counts = detect::count_active(&snapshot.jobs, &config.jobs.statuses);
        let mut jobs: BTreeMap<StatusClass, u64> = [StatusClass::Pending, StatusClass::Running]
            .into_iter()
            .filter(|c| !config.jobs.statuses.words(*c).is_empty())
            .map(|c| (c, 0))
            .collect();
        jobs.extend(counts.by_class);
        let oldest_heartbeat_age = snapshot
            .jobs
            .iter()
            .filter(|j| config.jobs.statuses.class_of(&j.status) == Some(StatusClass::Running))
            .filter_map(|j| j.heartbeat_since().ok())
            .map(|since| (snapshot.now - since).max(0.0))
            .reduce(f64::max);
        self.active = snapshot.jobs.into_iter().map(|j| j.id).collect();
        Ok(Report {
            oldest_heartbeat_age,
            environment: config.environment.clone(),
            checked_at: snapshot.now,
            jobs,
            findings: detected.findings,
            warnings: detected.warnings,
            by_status: counts.by_status,
        })
    }
}
