//! The two-tier scan (issue 23): every scan reads each active row cheaply (its id, status,
//! times, progress fingerprint, parent, pid and host: the light read), records it in the
//! memory, and reads in full, to judge, only the rows [`pick`] names. A row it does not name
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
//! process on this host, a finished parent or only finished children, and files in a
//! report folder.
//!
//! [`heartbeat_bounds`] and the naive-reading bounds are the same thresholds written for
//! the database: `Queries::heartbeat_candidates` turns them into an index-served `SELECT`
//! (proven against the reference read in tests/scan_cost.rs), which `validate --connect`
//! uses to show what the advised index buys.

use std::collections::HashSet;
use std::time::Duration;

use crate::core::detect::{ahead_of_clock, same_host, Family, Judge, Observation, Policy};
use crate::core::memory::Memory;
use crate::core::vocabulary::Signal;
use crate::core::zone::Zone;

/// The ids of the active rows of `obs.all` (the light read) that must be read in full and
/// judged, by a memory that has recorded them (see the module's comment).
pub fn pick(obs: &Observation<'_>, policy: &Policy<'_>, memory: &Memory) -> HashSet<String> {
    let family = Family::new(obs);
    let finished = |status: &str| {
        policy
            .statuses
            .class_of(status)
            .is_some_and(|c| !c.is_active())
    };
    let tied: HashSet<&str> = obs
        .artifacts
        .iter()
        .flat_map(|v| v.files.keys())
        .map(String::as_str)
        .collect();
    let older_than = policy.older_than.map(|o| {
        let signal = if policy.liveness.heartbeat {
            Signal::Heartbeat
        } else if policy.liveness.progress {
            Signal::Progress
        } else {
            Signal::Created
        };
        (signal, o.after)
    });
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
            job.parent_id
                .as_deref()
                .and_then(|p| family.status_of.get(p))
                .is_some_and(|s| finished(s))
                || family
                    .children
                    .get(job.id.as_str())
                    .is_some_and(|kids| kids.iter().all(|s| finished(s)))
        };
        let dead = || match (job.pid, &job.host) {
            (Some(pid), Some(host)) => {
                same_host(host, obs.local_host) && obs.dead_pids.contains(&pid)
            }
            _ => false,
        };
        let judge = Judge::new(job, obs.now, memory);
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
            || related()
        {
            out.insert(job.id.clone());
        }
    }
    out
}

/// Per active status word, the smallest heartbeat age at which a row could be stuck; `None`:
/// no heartbeat rule watches the word (its rows are candidates only when ahead of the
/// clock).
pub fn heartbeat_bounds(policy: &Policy<'_>) -> Vec<(String, Option<Duration>)> {
    let older_than = policy
        .older_than
        .filter(|_| policy.liveness.heartbeat)
        .map(|o| o.after);
    policy
        .statuses
        .active()
        .map(|word| {
            let rules = policy
                .rules
                .iter()
                .filter(|r| r.signal == Signal::Heartbeat && r.statuses.iter().any(|s| s == word))
                .map(|r| r.after);
            let least = rules.chain(older_than).min();
            (word.to_string(), least)
        })
        .collect()
}

/// How far an offset sample window reaches: a day and two hours. Before it, a naive reading
/// is far enough below any bound (no zone is more than 14 hours from UTC, none less than -12).
const WINDOW: f64 = 26.0 * 3600.0;
/// The offsets in a window are sampled this often: no zone keeps an offset for less.
const STEP: f64 = 900.0;

/// The largest naive reading (`instant + offset`, seconds) in `zone` of any instant at or
/// before `t`: `t` plus the largest offset of the day before it. A row stuck since `t` or
/// longer has a reading at or below it, whatever daylight saving did in between.
pub fn reading_at_most(zone: Zone, t: f64) -> f64 {
    let most = (0..=(WINDOW / STEP) as i32)
        .map(|k| zone.offset_at(t - f64::from(k) * STEP))
        .max()
        .unwrap_or(0);
    t + f64::from(most)
}

/// The smallest naive reading in `zone` of any instant after `t`: `t` plus the smallest
/// offset of the day after it.
pub fn reading_at_least(zone: Zone, t: f64) -> f64 {
    let least = (0..=(WINDOW / STEP) as i32)
        .map(|k| zone.offset_at(t + f64::from(k) * STEP))
        .min()
        .unwrap_or(0);
    t + f64::from(least)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::detect::{Liveness, OlderThan};
    use crate::core::vocabulary::{Action, Rule, Severity, Statuses};

    fn rule(name: &str, statuses: &[&str], signal: Signal, minutes: u64) -> Rule {
        Rule {
            name: name.into(),
            statuses: statuses.iter().map(|s| s.to_string()).collect(),
            signal,
            after: Duration::from_secs(minutes * 60),
            phases: None,
            action: Action::Fail,
            severity: Severity::Critical,
        }
    }

    fn statuses() -> Statuses {
        Statuses {
            pending: vec!["queued".into()],
            running: vec!["running".into(), "finishing".into()],
            ..Statuses::default()
        }
    }

    fn check(rules: &[Rule], older_than: Option<u64>, expected: &[(&str, Option<u64>)]) {
        let statuses = statuses();
        let policy = Policy {
            rules,
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
        let got = heartbeat_bounds(&policy);
        let expected: Vec<(String, Option<Duration>)> = expected
            .iter()
            .map(|(w, m)| (w.to_string(), m.map(|m| Duration::from_secs(m * 60))))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn the_smallest_heartbeat_rule_of_each_word_whatever_its_phase() {
        let mut phased = rule("training", &["running"], Signal::Heartbeat, 7);
        phased.phases = Some(vec!["training".into()]);
        check(
            &[
                rule("hb", &["running", "finishing"], Signal::Heartbeat, 20),
                phased,
                rule("queue", &["queued"], Signal::Created, 5),
                rule("progress", &["finishing"], Signal::Progress, 3),
            ],
            None,
            &[
                ("queued", None),
                ("running", Some(7)),
                ("finishing", Some(20)),
            ],
        );
    }

    #[test]
    fn older_than_bounds_every_active_word() {
        check(
            &[rule("hb", &["running"], Signal::Heartbeat, 20)],
            Some(10),
            &[
                ("queued", Some(10)),
                ("running", Some(10)),
                ("finishing", Some(10)),
            ],
        );
        check(
            &[rule("hb", &["running"], Signal::Heartbeat, 20)],
            Some(60),
            &[
                ("queued", Some(60)),
                ("running", Some(20)),
                ("finishing", Some(60)),
            ],
        );
    }

    #[test]
    fn a_naive_reading_is_bounded_by_the_offsets_around_it() {
        const H: f64 = 3600.0;
        // 2026-12-01: New York is at -5h; 2026-11-01 06:00Z it fell back from -4h.
        let december = 1_796_083_200.0;
        let fall_back = 1_793_512_800.0;
        let ny = Zone::named("America/New_York").unwrap();
        assert_eq!(reading_at_most(ny, december), december - 5.0 * H);
        assert_eq!(reading_at_least(ny, december), december - 5.0 * H);
        // Within a day after falling back, a reading of an earlier instant may be larger.
        assert_eq!(reading_at_most(ny, fall_back + H), fall_back - 3.0 * H);
        assert_eq!(reading_at_least(ny, fall_back - H), fall_back - 6.0 * H);
        assert_eq!(reading_at_most(Zone::Utc, december), december);
    }
}
