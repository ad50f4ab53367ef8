//! The two-tier scan (issue 23): a scan reads each active row cheaply (its id, status,
//! heartbeat and `status_since`, parent, pid, host and worker: the light read; `created_at`
//! comes from the memory), records it in the memory, and reads in full, to judge, only the
//! rows [`pick`] names (and the rows new to the memory). A config that watches progress
//! scans by the reference read instead (`app::scan::Read::for_config`): its light read would
//! have to read every row's progress value anyway. A row it does not name
//! has nothing to say this scan: no finding, no warning, no "first seen late"; it still
//! counts in the scan-wide figures (`judged`, the newest signal, the families), which
//! `detect::judge` takes from the light rows. The reference, every row read in full and
//! judged, is kept (`validate --connect`, the tests), and the tests prove both give the
//! same report on every database.
//!
//! A row is picked when its time in the light read could be past a threshold that could
//! apply to it: per signal, the smallest `after` of the rules watching its status word,
//! whatever their phases (the phase is not read), and `--older-than`; the age it is tested
//! by is the row's own (the heartbeat, the progress sight, the entry into its status),
//! which is never younger than the judged one. Also picked: a row with a time ahead of the
//! clock or one that cannot be read (warned about), a pid that is not a number, a dead
//! process on this host, a finished parent or only finished children, files in a report
//! folder, and a job whose worker row (`[workers]`) is gone. A job with a worker is tested by
//! its worker's beat, as the detection judges it.
//!
//! Why the light read takes the times and the choice is made here rather than by bounds
//! in SQL: the age a row is judged by depends on the memory (a re-queue, a first sight, a
//! progress value's last change), on zones and on values only jobwarden parses (text, JSON
//! paths); here it is the detection's own code that answers, on every database. The light
//! read itself is index-only where an index holds its columns: `validate --connect`
//! advises `(status, <heartbeat>)` with the others included.

use std::collections::HashSet;

use crate::core::detect::{ahead_of_clock, same_host, Family, Judge, Observation, Policy};
use crate::core::memory::Memory;

/// The ids of the active rows of `obs.all` (the light read) that must be read in full and
/// judged, by a memory that has recorded them (see the module's comment).
pub fn pick(obs: &Observation<'_>, policy: &Policy<'_>, memory: &Memory) -> HashSet<String> {
    let family = Family::new(obs);
    let tied: HashSet<&str> = obs
        .artifacts
        .iter()
        .flat_map(|v| v.files.keys())
        .map(String::as_str)
        .collect();
    let older_than = policy
        .older_than
        .map(|o| (policy.older_than_signal(), o.after));
    let mut out = HashSet::new();
    for job in obs.all {
        if !policy
            .statuses
            .class_of(&job.status)
            .is_some_and(|c| c.is_active())
        {
            continue;
        }
        let related = || {
            family.finished_parent(job, policy).is_some()
                || family.finished_children(&job.id, policy).is_some()
        };
        let dead = || match (job.pid, &job.host) {
            (Some(pid), Some(host)) => {
                same_host(host, obs.local_host) && obs.dead_pids.contains(&pid)
            }
            _ => false,
        };
        let judge = Judge::new(job, obs.now, memory, obs.workers);
        let limits = policy
            .rules
            .iter()
            .filter(|r| r.statuses.contains(&job.status))
            .map(|r| (r.signal, r.after))
            .chain(older_than);
        let mut due = false;
        for (signal, after) in limits {
            due |= match judge.since(signal) {
                // The row's own time is never younger than the judged one.
                Ok(since) => {
                    obs.now - since.shown.unwrap_or(since.judged) >= after.as_secs_f64() - 1.0
                }
                Err(_) => true,
            };
        }
        if due
            || ahead_of_clock(job, obs.now).is_some()
            || job.bad_pid.is_some()
            || tied.contains(job.id.as_str())
            || dead()
            || judge.worker_gone()
            || related()
        {
            out.insert(job.id.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::detect::{Liveness, OlderThan};
    use crate::core::job::{JobRow, Stamp};
    use crate::core::vocabulary::{Action, Rule, Severity, Signal, Statuses};
    use std::collections::BTreeSet;
    use std::time::Duration;

    const NOW: f64 = 1_767_225_600.0;

    fn row(id: &str, status: &str, beat_minutes_ago: Option<f64>) -> JobRow {
        let mut j = JobRow::new(id, status);
        j.created_at = Stamp::At(NOW - 3600.0 * 5.0);
        j.heartbeat_at = beat_minutes_ago.map_or(Stamp::Missing, |m| Stamp::At(NOW - m * 60.0));
        j
    }

    fn picked(rows: &[JobRow], older_than: Option<u64>) -> Vec<String> {
        let statuses = Statuses {
            pending: vec!["queued".into()],
            running: vec!["running".into()],
            succeeded: vec!["done".into()],
            ..Statuses::default()
        };
        let rule = |name: &str, after: u64, phases: Option<Vec<String>>| Rule {
            name: name.into(),
            statuses: vec!["running".into()],
            signal: Signal::Heartbeat,
            after: Duration::from_secs(after * 60),
            phases,
            action: Action::Fail,
            severity: Severity::Critical,
        };
        let rules = [
            rule("hb", 20, None),
            rule("training", 7, Some(vec!["training".into()])),
        ];
        let policy = Policy {
            rules: &rules,
            statuses: &statuses,
            older_than: older_than.map(|m| OlderThan {
                after: Duration::from_secs(m * 60),
                force: false,
            }),
            liveness: Liveness {
                heartbeat: true,
                progress: false,
            },
        };
        let dead = BTreeSet::new();
        let obs = Observation {
            now: NOW,
            jobs: rows,
            all: rows,
            relatives: &[],
            local_host: "web-1",
            dead_pids: &dead,
            artifacts: &[],
            workers: None,
        };
        let mut memory = Memory::default();
        memory.observe(rows, NOW);
        let mut ids: Vec<String> = pick(&obs, &policy, &memory).into_iter().collect();
        ids.sort();
        ids
    }

    #[test]
    fn only_rows_old_enough_for_the_smallest_rule_of_any_phase_are_read_in_full() {
        let rows = [
            row("a", "running", Some(1.0)),
            row("b", "running", Some(6.5)),
            // Past the training rule's 7m, whatever its phase: the light read has none.
            row("c", "running", Some(8.0)),
            row("d", "running", Some(45.0)),
            // No heartbeat: judged by created_at (5h).
            row("e", "running", None),
            // Ahead of the clock: warned about.
            row("f", "running", Some(-10.0)),
            // Queued: no rule watches it.
            row("g", "queued", Some(300.0)),
            // Not active.
            row("h", "done", Some(300.0)),
        ];
        assert_eq!(picked(&rows, None), ["c", "d", "e", "f"]);
        // --older-than watches every active word.
        assert_eq!(picked(&rows, Some(60)), ["c", "d", "e", "f", "g"]);
    }
}
