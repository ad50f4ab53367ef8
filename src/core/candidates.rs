//! The candidate read (issue 23, unfinished): which active rows a scan must read whole, as a
//! bound on one time column per status word that the database can apply through an index on
//! `(status, <heartbeat>)`. Not used by the scan yet: the scan still reads every active row
//! (the reference read). What is here is the part proven against it: a row outside the
//! bounds can have no heartbeat finding and no warning (tests/scan_cost.rs compares the
//! candidate ids with the reference read's findings and warnings on PostgreSQL and MariaDB;
//! SQLite's values may be text, which only jobwarden parses, so there every row stays a
//! candidate).
//!
//! A row is a heartbeat candidate when, in a status word some heartbeat rule (or
//! `--older-than`, where the table has a heartbeat) watches, its heartbeat is at least the
//! smallest such `after` old (any phase: the phase is not known before the row is read), or
//! it has no heartbeat (it is then judged by `created_at`, or warned about); and, in every
//! active word, when its heartbeat, `created_at` or `status_since` is ahead of the clock
//! (warned about, not judged). The
//! memory's first sight only makes a row younger (`Judge::since` takes the later of the two),
//! so the row's own heartbeat bounds it.
//!
//! Still to do before the scan can use it (see the report of issue 23): progress and
//! time-in-status candidates from the memory, rows new to the memory, pids on this host, relatives and
//! artifact ties, and the scan-wide figures the reference read takes from every row
//! (`newest_signal_age`, the oldest heartbeat, the number judged).

use std::time::Duration;

use crate::core::detect::Policy;
use crate::core::vocabulary::Signal;
use crate::core::zone::Zone;

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
