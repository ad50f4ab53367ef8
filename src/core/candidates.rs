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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use crate::core::detect::{
    ahead_of_clock, same_host, Family, Judge, Observation, OlderThan, Policy, FUTURE_TOLERANCE,
};
use crate::core::job::JobRow;
use crate::core::memory::Memory;
use crate::core::vocabulary::Signal;

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

/// Per active status word, the shortest `after` of the limits that count from the row's
/// heartbeat (the rules watching that word with `signal = "heartbeat"`, and `--older-than`
/// when it measures the heartbeat): a row of that word is due when its heartbeat is that old,
/// less the second [`pick`] allows. Words no such limit watches are absent. Empty when the
/// heartbeat is not read (`heartbeat_read`: the config names a heartbeat column).
pub fn heartbeat_limits(policy: &Policy<'_>, heartbeat_read: bool) -> BTreeMap<String, Duration> {
    let mut out: BTreeMap<String, Duration> = BTreeMap::new();
    if !heartbeat_read {
        return out;
    }
    let mut add = |word: &str, after: Duration| {
        let e = out.entry(word.to_string()).or_insert(after);
        *e = (*e).min(after);
    };
    for rule in policy
        .rules
        .iter()
        .filter(|r| r.signal == Signal::Heartbeat)
    {
        for word in &rule.statuses {
            add(word, rule.after);
        }
    }
    if let (Some(o), Signal::Heartbeat) = (policy.older_than, policy.older_than_signal()) {
        for word in policy.statuses.active() {
            add(word, o.after);
        }
    }
    out
}

/// What a scan knows of an active set that has not changed since it was last read row by
/// row (the same ids, status words, `status_since`, pids and hosts, as the store's summary
/// of the set shows), so that it can name the candidates without that read: the summary
/// scan. It is made from that last read, by the rules of [`pick`]:
/// - a row a rule could find by its heartbeat is the store's to name, by its heartbeat
///   alone (its read of the rows whose heartbeat is past [`heartbeat_limits`], NULL, not a
///   number or ahead of the clock), and [`pick`] then judges those rows as read now;
/// - every other limit (`signal = "created"`, a config without a heartbeat column,
///   `--older-than` by the time in status) counts from times that cannot change while the
///   set does not: the row is due at a moment known now, kept here;
/// - a pid that is not a number, or a creation or status time ahead of the clock, names
///   the row at every summary scan (once past the clock's tolerance it is judged, which
///   says nothing new: only naming too few rows would differ from the reference);
/// - a pid on this host names the row when its process is gone.
///
/// Only for configs without progress, workers or a parent column: their candidates depend
/// on values the summary does not hold (the progress value, the workers' beats, the
/// relatives' statuses).
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// `(due at, id)`: when a limit that does not count from the heartbeat makes the row a
    /// candidate, soonest first.
    due: Vec<(f64, String)>,
    /// Rows named by every summary scan.
    always: Vec<String>,
    /// Rows with a pid on this host.
    local: Vec<(String, i64)>,
    /// Over the rows without a heartbeat, when the heartbeat is not read: the newest
    /// creation time, and the oldest "heartbeat or else creation" time of a running row.
    newest_created: Option<f64>,
    oldest_running: Option<f64>,
    /// The `--older-than` it was made for.
    older_than: Option<OlderThan>,
}

impl Standing {
    /// The standing of `rows` (the last row-by-row read, their `created_at` from the memory
    /// filled in) at `now`, under `policy`, by a memory that recorded them.
    pub fn new(
        rows: &[JobRow],
        policy: &Policy<'_>,
        memory: &Memory,
        now: f64,
        local_host: &str,
        heartbeat_read: bool,
    ) -> Standing {
        let older_than = policy
            .older_than
            .map(|o| (policy.older_than_signal(), o.after));
        let mut out = Standing {
            due: Vec::new(),
            always: Vec::new(),
            local: Vec::new(),
            newest_created: None,
            oldest_running: None,
            older_than: policy.older_than,
        };
        for job in rows {
            let Some(class) = policy.statuses.class_of(&job.status) else {
                continue;
            };
            if !class.is_active() {
                continue;
            }
            if !heartbeat_read {
                if let Some(c) = job.created_at.at() {
                    out.newest_created = Some(out.newest_created.map_or(c, |n| n.max(c)));
                }
                if class == crate::core::vocabulary::StatusClass::Running {
                    if let Ok(t) = job.heartbeat_since() {
                        out.oldest_running = Some(out.oldest_running.map_or(t, |o| o.min(t)));
                    }
                }
            }
            let ahead = [&job.created_at, &job.status_since]
                .into_iter()
                .any(|s| s.at().is_some_and(|t| t - now > FUTURE_TOLERANCE));
            if ahead || job.bad_pid.is_some() {
                out.always.push(job.id.clone());
                continue;
            }
            if let (Some(pid), Some(host)) = (job.pid, &job.host) {
                if same_host(host, local_host) {
                    out.local.push((job.id.clone(), pid));
                }
            }
            let judge = Judge::new(job, now, memory, None);
            let limits = policy
                .rules
                .iter()
                .filter(|r| r.statuses.contains(&job.status))
                .map(|r| (r.signal, r.after))
                .chain(older_than)
                .filter(|(signal, _)| !(heartbeat_read && *signal == Signal::Heartbeat));
            let mut due: Option<f64> = None;
            let mut never_readable = false;
            for (signal, after) in limits {
                match judge.since(signal) {
                    // As `pick` tests it, `now - since >= after - 1`, a little early so that
                    // rounding never names a row later than `pick` would.
                    Ok(since) => {
                        let at =
                            since.shown.unwrap_or(since.judged) + after.as_secs_f64() - 1.0 - 1e-3;
                        due = Some(due.map_or(at, |d| d.min(at)));
                    }
                    Err(_) => never_readable = true,
                }
            }
            if never_readable {
                out.always.push(job.id.clone());
            } else if let Some(at) = due {
                out.due.push((at, job.id.clone()));
            }
        }
        out.due.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// Whether it was made for this `--older-than`.
    pub fn fits(&self, policy: &Policy<'_>) -> bool {
        self.older_than == policy.older_than
    }

    /// The candidates of a summary scan at `now`: `suspects` (what [`pick`] named among the
    /// rows the store read by their heartbeat), the rows a time limit makes due by now, the
    /// rows named always, and those whose process on this host is gone.
    pub fn pick(
        &self,
        now: f64,
        suspects: HashSet<String>,
        dead_pids: &BTreeSet<i64>,
    ) -> HashSet<String> {
        let mut out = suspects;
        out.extend(
            self.due
                .iter()
                .take_while(|(at, _)| *at <= now)
                .map(|(_, id)| id.clone()),
        );
        out.extend(self.always.iter().cloned());
        out.extend(
            self.local
                .iter()
                .filter(|(_, pid)| dead_pids.contains(pid))
                .map(|(id, _)| id.clone()),
        );
        out
    }

    /// The pids on this host, to look up.
    pub fn local_pids(&self) -> impl Iterator<Item = i64> + '_ {
        self.local.iter().map(|(_, pid)| *pid)
    }

    /// Over the rows without a heartbeat when the config reads none: the newest creation
    /// time, and the oldest time a running row is dated by.
    pub fn unbeaten(&self) -> (Option<f64>, Option<f64>) {
        (self.newest_created, self.oldest_running)
    }
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
    fn a_standing_names_rows_as_their_time_limits_come_due() {
        let statuses = Statuses {
            pending: vec!["queued".into()],
            running: vec!["running".into()],
            ..Statuses::default()
        };
        use crate::core::detect::tests::rule;
        // The heartbeat rule is the database's to test; the time-in-status one is kept here.
        let rules = [
            rule("hb", Signal::Heartbeat, 20),
            rule("long", Signal::Created, 120),
        ];
        let policy = Policy {
            rules: &rules,
            statuses: &statuses,
            older_than: None,
            liveness: Liveness {
                heartbeat: true,
                progress: false,
            },
        };
        let mut young = row("young", "running", Some(1.0));
        young.created_at = Stamp::At(NOW - 100.0 * 60.0);
        let mut old = row("old", "running", Some(1.0));
        old.created_at = Stamp::At(NOW - 300.0 * 60.0);
        let mut local = row("local", "queued", Some(1.0));
        local.pid = Some(4242);
        local.host = Some("web-1.internal".into());
        let mut ahead = row("ahead", "running", Some(1.0));
        ahead.status_since = Stamp::At(NOW + 600.0);
        let mut bad = row("bad", "queued", Some(1.0));
        bad.bad_pid = Some("x".into());
        let rows = [young, old, local, ahead, bad];
        let mut memory = Memory::default();
        memory.observe(&rows, NOW);
        let standing = Standing::new(&rows, &policy, &memory, NOW, "web-1", true);
        let names = |at: f64, dead: &[i64]| {
            let dead: BTreeSet<i64> = dead.iter().copied().collect();
            let mut v: Vec<String> = standing
                .pick(at, HashSet::from(["suspect".to_string()]), &dead)
                .into_iter()
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(NOW, &[]), ["ahead", "bad", "old", "suspect"]);
        // 20 minutes on, "young" is 120 minutes in its status (less pick's second).
        assert_eq!(
            names(NOW + 20.0 * 60.0 - 1.5, &[4242]),
            ["ahead", "bad", "local", "old", "suspect"]
        );
        assert_eq!(
            names(NOW + 20.0 * 60.0 - 1.0, &[]),
            ["ahead", "bad", "old", "suspect", "young"]
        );
        assert_eq!(standing.local_pids().collect::<Vec<_>>(), [4242]);
        assert_eq!(standing.unbeaten(), (None, None), "the heartbeat is read");
        assert!(standing.fits(&policy));
        let older = Policy {
            older_than: Some(OlderThan {
                after: Duration::from_secs(600),
                force: false,
            }),
            ..policy
        };
        assert!(!standing.fits(&older));
        // --older-than by the heartbeat is the database's to test, on every active word.
        let limits = heartbeat_limits(&older, true);
        assert_eq!(
            limits.into_iter().collect::<Vec<_>>(),
            [
                ("queued".to_string(), Duration::from_secs(600)),
                ("running".to_string(), Duration::from_secs(600)),
            ]
        );
        assert_eq!(
            heartbeat_limits(&policy, true)
                .into_iter()
                .collect::<Vec<_>>(),
            [("running".to_string(), Duration::from_secs(1200))]
        );
        assert!(heartbeat_limits(&policy, false).is_empty());
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
