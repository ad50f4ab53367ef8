//! What jobwarden remembers about each active job from one scan to the next: when it entered
//! its current status and when its progress value last changed. Tables rarely record when
//! the status changed, and a progress value only means something against an earlier one, so
//! these are jobwarden's own observations.
//!
//! The rules of dating are chosen so that a job can only ever look *younger* than it is:
//! - A job seen for the first time by a memory that has never scanned (no state file) has no
//!   better date than `created_at` ([`Entered::FirstScan`], and the message says so); without
//!   a `created_at` either (a Celery task's `date_done` is NULL until it ends), the scan that
//!   first sees it dates it ([`Entered::Observed`]), so it is judged from then on.
//! - A job seen for the first time by a memory that has scanned before was not active at that
//!   scan: it entered its status since. If it was created after that scan, `created_at` is
//!   the date; otherwise the scan that first sees it is ([`Entered::Observed`]).
//! - A job seen in a different status than last time entered it at this scan.
//! - A job jobwarden itself re-queued entered its new status at the moment of the write
//!   ([`Memory::requeued`]), so a retry is never failed as "pending for 1h".
//!
//! [`Memory`] is pure; `adapters::state` keeps it in the state directory (`memory.json`) so a
//! restart, or a second `jobwarden recover`, goes on from what the last one saw.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::core::job::{JobRow, Stamp};

/// How jobwarden knows when a job entered its current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entered {
    /// The table's `status_since` column.
    Column,
    /// The first scan jobwarden ever made saw it: `created_at` is all there is.
    FirstScan,
    /// Created after the previous scan: `created_at`.
    Created,
    /// The scan that first saw it in this status.
    Observed,
    /// jobwarden re-queued it: the moment of the write.
    Requeued,
}

/// The observations, per active job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Which database and table these ids belong to; a memory of another is not used.
    scope: String,
    /// The database clock of the last scan this memory saw. `None`: it has never scanned.
    last_scan: Option<f64>,
    jobs: HashMap<String, Seen>,
    /// Findings grouped by cause (see `core::incident`), kept across restarts.
    #[serde(default)]
    incidents: crate::core::incident::Incidents,
    #[serde(skip)]
    generation: u64,
    /// Changed since the last save.
    #[serde(skip)]
    dirty: bool,
    /// Whether a job may wait to be dated by [`Memory::tick`] (first seen by the first scan
    /// without any time): after [`Memory::observe`] none does, so a tick is O(1). A memory
    /// read from its file may hold some.
    #[serde(skip, default = "undated_on_load")]
    undated: bool,
}

fn undated_on_load() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seen {
    status: String,
    /// When it entered `status`; `None` when that is its `created_at`.
    entered: Option<f64>,
    source: Entered,
    /// A fingerprint of the progress value (values can be large JSON arrays).
    progress: Option<u64>,
    /// Since when `progress` has been unchanged.
    progress_since: f64,
    /// The row's `created_at` as last read: the two-tier scan's light read does not read it
    /// again (`None` in a memory saved before it was kept: the row is read in full once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<Stamp>,
    #[serde(skip)]
    generation: u64,
}

impl Seen {
    /// First seen by the first scan with no time at all: dated by the next scan.
    fn undated(&self) -> bool {
        self.entered.is_none()
            && self.source == Entered::FirstScan
            && self.created == Some(Stamp::Missing)
    }
}

impl Memory {
    /// An empty memory for a database and table.
    /// Which database and table the memory's ids belong to.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Marks the memory as saved (not dirty).
    pub fn saved(&mut self) {
        self.dirty = false;
    }

    pub fn new(scope: &str) -> Memory {
        Memory {
            scope: scope.to_string(),
            ..Memory::default()
        }
    }

    /// Records one scan's rows at the database time `now`. Jobs that left the active set are
    /// forgotten.
    pub fn observe(&mut self, jobs: &[JobRow], now: f64) {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let previous = self.last_scan;
        for job in jobs {
            let progress = job.progress.as_deref().map(fingerprint);
            match self.jobs.get_mut(&job.id) {
                Some(seen) => {
                    if seen.entered.is_none()
                        && seen.source == Entered::FirstScan
                        && job.created_at == Stamp::Missing
                    {
                        // First seen by the first scan with no creation time (a memory saved
                        // before such rows were dated): date it now rather than never.
                        seen.entered = Some(now);
                        seen.source = Entered::Observed;
                        self.dirty = true;
                    }
                    if seen.status != job.status {
                        seen.status.clone_from(&job.status);
                        seen.entered = Some(now);
                        seen.source = Entered::Observed;
                        self.dirty = true;
                    }
                    if seen.created.as_ref() != Some(&job.created_at) {
                        seen.created = Some(job.created_at.clone());
                        self.dirty = true;
                    }
                    if seen.progress != progress {
                        seen.progress = progress;
                        seen.progress_since = now;
                        self.dirty = true;
                    }
                    seen.generation = generation;
                }
                None => {
                    let created = job.created_at.at();
                    let (entered, source) = match (previous, created) {
                        // No creation time (NULL, not malformed) and no earlier scan: this
                        // scan is the first date jobwarden has, and judging from it can only
                        // make the job look younger; never judging it would leave it stuck.
                        (None, None) if job.created_at == Stamp::Missing => {
                            (Some(now), Entered::Observed)
                        }
                        (None, _) => (None, Entered::FirstScan),
                        (Some(prev), Some(c)) if c > prev => (None, Entered::Created),
                        (Some(_), _) => (Some(now), Entered::Observed),
                    };
                    // A progress value seen for the first time is dated by the heartbeat when
                    // there is one (the row was not touched since, so neither was its
                    // progress), else by now: never older than jobwarden can show.
                    let progress_since = job.heartbeat_at.at().unwrap_or(now).min(now);
                    self.jobs.insert(
                        job.id.clone(),
                        Seen {
                            status: job.status.clone(),
                            entered,
                            source,
                            progress,
                            progress_since,
                            created: Some(job.created_at.clone()),
                            generation,
                        },
                    );
                    self.dirty = true;
                }
            }
        }
        let before = self.jobs.len();
        self.jobs.retain(|_, s| s.generation == generation);
        self.undated = self.jobs.values().any(Seen::undated);
        self.dirty |= self.jobs.len() != before;
        // A first scan is worth saving even when it saw nothing: a job first seen later
        // entered its status since, and is dated from that sight, not from its creation.
        self.dirty |= self.last_scan.is_none();
        self.last_scan = Some(now);
    }

    /// Records a scan whose active set is the last one's, unchanged (a summary scan, which
    /// reads no rows): what [`Memory::observe`] does with the same rows again. Returns
    /// whether a job's dating changed (a job the first scan saw without any time is dated
    /// by the second), which changes what the scan's candidates are.
    pub fn tick(&mut self, now: f64) -> bool {
        let mut changed = false;
        if self.undated {
            for seen in self.jobs.values_mut().filter(|s| s.undated()) {
                seen.entered = Some(now);
                seen.source = Entered::Observed;
                changed = true;
            }
            self.undated = false;
        }
        self.dirty |= changed || self.last_scan.is_none();
        self.last_scan = Some(now);
        changed
    }

    /// Takes in one scan's findings into the incidents (see
    /// [`crate::core::incident::Incidents::observe`]); the memory is saved when they changed.
    pub fn incidents(
        &mut self,
        findings: &mut [crate::core::detect::Finding],
        scan: &crate::core::incident::Scan<'_>,
    ) -> crate::core::incident::Changes {
        let changes = self.incidents.observe(findings, scan);
        self.dirty |= changes.changed;
        changes
    }

    /// A person had jobwarden write this job outside a scan: it leaves its incident as
    /// failed (or re-queued) by a person.
    pub fn written(&mut self, id: &str, action: crate::core::vocabulary::Action) {
        self.incidents.written(&[id], action);
        self.dirty = true;
    }

    /// The incidents as the report shows them.
    pub fn incident_views(&self, now: f64) -> Vec<crate::core::incident::View> {
        self.incidents.views(now)
    }

    /// jobwarden re-queued `id` into `status` at the database time `at`.
    pub fn requeued(&mut self, id: &str, status: &str, at: f64) {
        if let Some(seen) = self.jobs.get_mut(id) {
            seen.status = status.to_string();
            seen.entered = Some(at);
            seen.source = Entered::Requeued;
            seen.progress_since = seen.progress_since.max(at);
            self.dirty = true;
        }
    }

    /// When a job entered its current status, and how that is known. The `status_since`
    /// column, when the row has a value, is the table's own answer and wins, except over a
    /// later re-queue by jobwarden (which the application's column may not follow). Without
    /// it: the later of jobwarden's own observation and `created_at`.
    pub fn entered(&self, job: &JobRow) -> Result<(f64, Entered), String> {
        let seen = self.jobs.get(&job.id).filter(|s| s.status == job.status);
        if let Some(column) = job.status_since.at() {
            return Ok(match seen {
                Some(Seen {
                    entered: Some(at),
                    source: Entered::Requeued,
                    ..
                }) if *at > column => (*at, Entered::Requeued),
                _ => (column, Entered::Column),
            });
        }
        let created_how = seen.map_or(Entered::FirstScan, |s| match s.source {
            Entered::FirstScan => Entered::FirstScan,
            _ => Entered::Created,
        });
        let observed = seen.and_then(|s| Some((s.entered?, s.source)));
        match (job.created_since(), observed) {
            (Ok(created), Some((at, how))) if at > created => Ok((at, how)),
            (Ok(created), _) => Ok((created, created_how)),
            (Err(_), Some(observed)) => Ok(observed),
            (Err(e), None) => Err(e),
        }
    }

    /// The `created_at` of a remembered job as last read, if kept.
    pub fn created(&self, id: &str) -> Option<&Stamp> {
        self.jobs.get(id).and_then(|s| s.created.as_ref())
    }

    /// Since when a job's progress value has been unchanged.
    pub fn progress_since(&self, id: &str) -> Option<f64> {
        self.jobs.get(id).map(|s| s.progress_since)
    }

    /// Whether this memory has seen a scan before.
    pub fn has_scanned(&self) -> bool {
        self.last_scan.is_some()
    }

    /// How many jobs are remembered.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Whether anything changed since the last [`save`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }
}

/// FNV-1a: a fingerprint that stays the same across builds, restarts and replicas (the
/// progress fingerprints here, the leader lock's key).
pub fn fingerprint(value: &str) -> u64 {
    value.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::Stamp;

    const NOW: f64 = 1_767_225_600.0;

    fn job(id: &str, status: &str, created_min_ago: f64) -> JobRow {
        JobRow {
            created_at: Stamp::At(NOW - created_min_ago * 60.0),
            ..JobRow::new(id, status)
        }
    }

    #[test]
    fn the_first_scan_has_only_created_at() {
        let mut m = Memory::new("t");
        let j = job("1", "pending", 60.0);
        m.observe(std::slice::from_ref(&j), NOW);
        assert_eq!(m.entered(&j), Ok((NOW - 3600.0, Entered::FirstScan)));
    }

    #[test]
    fn a_status_change_is_dated_by_the_scan_that_saw_it() {
        let mut m = Memory::new("t");
        m.observe(&[job("1", "pending", 60.0)], NOW);
        let running = job("1", "running", 60.0);
        m.observe(std::slice::from_ref(&running), NOW + 15.0);
        assert_eq!(m.entered(&running), Ok((NOW + 15.0, Entered::Observed)));
    }

    #[test]
    fn a_job_new_to_a_warm_memory_entered_since_the_last_scan() {
        let mut m = Memory::new("t");
        m.observe(&[], NOW - 15.0);
        // Created long ago, not active at the last scan: re-queued by the application since.
        let retried = job("1", "pending", 600.0);
        // Created after the last scan.
        let fresh = job("2", "pending", 0.1);
        m.observe(&[retried.clone(), fresh.clone()], NOW);
        assert_eq!(m.entered(&retried), Ok((NOW, Entered::Observed)));
        assert_eq!(m.entered(&fresh), Ok((NOW - 6.0, Entered::Created)));
    }

    #[test]
    fn a_first_scan_of_an_empty_table_is_worth_saving() {
        let mut m = Memory::new("t");
        m.observe(&[], NOW - 15.0);
        assert!(
            m.is_dirty(),
            "else the next run would think it never scanned"
        );
        m.saved();
        m.observe(&[], NOW);
        assert!(
            !m.is_dirty(),
            "a later empty scan changes nothing worth a write"
        );
    }

    #[test]
    fn a_requeue_counts_from_the_write() {
        let mut m = Memory::new("t");
        m.observe(&[job("1", "running", 120.0)], NOW);
        m.requeued("1", "pending", NOW + 1.0);
        let pending = job("1", "pending", 120.0);
        m.observe(std::slice::from_ref(&pending), NOW + 15.0);
        assert_eq!(m.entered(&pending), Ok((NOW + 1.0, Entered::Requeued)));
    }

    #[test]
    fn the_column_is_the_tables_own_answer() {
        let mut m = Memory::new("t");
        m.observe(&[], NOW - 15.0);
        let mut j = job("1", "running", 60.0);
        j.status_since = Stamp::At(NOW - 120.0);
        m.observe(std::slice::from_ref(&j), NOW);
        assert_eq!(m.entered(&j), Ok((NOW - 120.0, Entered::Column)));
        // A re-queue by jobwarden after the column's time wins: the application may not
        // touch its column for it.
        m.requeued("1", "running", NOW + 1.0);
        assert_eq!(m.entered(&j), Ok((NOW + 1.0, Entered::Requeued)));
    }

    #[test]
    fn a_tick_is_an_observe_of_the_same_rows() {
        let mut undated = JobRow::new("2", "running");
        undated.created_at = Stamp::Missing;
        let rows = [job("1", "running", 60.0), undated.clone()];
        let mut by_observe = Memory::new("t");
        let mut by_tick = Memory::new("t");
        for m in [&mut by_observe, &mut by_tick] {
            m.observe(&rows, NOW);
        }
        by_observe.observe(&rows, NOW + 15.0);
        assert!(!by_tick.tick(NOW + 15.0), "nothing changed for these rows");
        for r in &rows {
            assert_eq!(by_tick.entered(r), by_observe.entered(r));
        }
        // A memory saved before undated rows were dated at the first scan: the second dates it.
        let mut old = Memory::new("t");
        old.observe(&rows, NOW);
        if let Some(seen) = old.jobs.get_mut("2") {
            seen.entered = None;
            seen.source = Entered::FirstScan;
        }
        // As saved and read back from its file.
        let saved = serde_json::to_string(&old).unwrap();
        let mut old: Memory = serde_json::from_str(&saved).unwrap();
        let mut by_observe = old.clone();
        by_observe.observe(&rows, NOW + 15.0);
        assert!(old.tick(NOW + 15.0));
        assert_eq!(old.entered(&undated), by_observe.entered(&undated));
        assert_eq!(old.entered(&undated), Ok((NOW + 15.0, Entered::Observed)));
    }

    #[test]
    fn fingerprints_are_stable() {
        assert_eq!(fingerprint(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
