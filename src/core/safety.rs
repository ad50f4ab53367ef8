//! The limits between a plan and a write. A watchdog that can fail jobs can fail every job at
//! once: when the heartbeat writer is down, when a clock jumps, when a config has a typo.
//! [`gate`] (pure) holds back writes that are too young (`min_age`), that come during the
//! daemon's startup grace, that belong to a mass stall (more than `max_stuck_fraction` of the
//! active jobs at once: write nothing and raise one `mass_stall` finding), or that exceed
//! `max_actions_per_scan`. [`Confirmations`] makes the daemon wait until a finding has held,
//! with its row unchanged, on `confirm_scans` consecutive scans.

use std::collections::{HashMap, HashSet};

use crate::core::detect::{Finding, FindingKey, Kind, Outcome};
use crate::core::job::Guard;
use crate::core::plan::Planned;
use crate::core::vocabulary::{Action, Safety, Severity};

/// The rule name of the `mass_stall` finding.
pub const SAFETY_RULE: &str = "safety";

/// What the gate is told about this scan.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub safety: &'a Safety,
    /// Active rows in the scan.
    pub active: usize,
    /// `recover --force`: lift the fraction guard and the per-scan cap (never `min_age`).
    pub force: bool,
    /// The daemon is within `startup_grace`: report only.
    pub grace: bool,
    /// The database's clock.
    pub now: f64,
    /// No write may be made at all, and why (timestamps whose zone cannot be known). Not
    /// lifted by `--force`.
    pub refusal: Option<&'a str>,
    /// The scan as a whole looks wrong in a way no write may act on (a zone that does not
    /// fit): why. Lifted by `--force`.
    pub suspicion: Option<&'a str>,
}

/// Why a planned write was not made.
#[derive(Debug, Clone, PartialEq)]
pub enum HeldBack {
    /// The zone of naive timestamps cannot be known: why (see `TimeInfo::refusal`).
    TimeUnknown(String),
    /// The scan as a whole looks wrong (rows ahead of the clock, or every row stuck by a
    /// zone offset): the suspicion.
    Suspicion(String),
    /// The daemon started less than `startup_grace` ago.
    StartupGrace,
    /// The finding is younger than `min_age` (seconds).
    MinAge { age: u64, min_age: u64 },
    /// A mass stall held every write back; the `mass_stall` finding's message.
    MassStall(String),
    /// `max_actions_per_scan` writes were made already.
    PerScanCap(usize),
    /// The daemon has seen the finding, row unchanged, on `seen` of `needed` scans.
    Confirming { seen: u32, needed: u32 },
    /// SIGTERM or SIGINT came before this write started.
    Stopping,
    /// Its audit record could not be written: the error.
    AuditUnwritable(String),
    /// An operator paused every write (`POST /api/v1/pause`) until this Unix time.
    Paused { until: f64 },
    /// An operator snoozed this job (`POST /api/v1/jobs/{id}/snooze`) until this Unix time.
    Snoozed { until: f64 },
    /// Another writer held a lock on the row or table: this write gave up waiting for it, or
    /// the scan's lock-wait budget was spent before it started. Tried again next scan.
    Locked,
    /// The operator's saved holds could not be read (why): every write is held until an
    /// operator's pause ends it.
    HoldsLost(String),
}

impl HeldBack {
    /// A bounded name, for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            HeldBack::TimeUnknown(_) => "time_unknown",
            HeldBack::Suspicion(_) => "suspicion",
            HeldBack::StartupGrace => "startup_grace",
            HeldBack::MinAge { .. } => "min_age",
            HeldBack::MassStall(_) => "mass_stall",
            HeldBack::PerScanCap(_) => "per_scan_cap",
            HeldBack::Confirming { .. } => "confirming",
            HeldBack::Stopping => "stopping",
            HeldBack::AuditUnwritable(_) => "audit_unwritable",
            HeldBack::Paused { .. } => "paused",
            HeldBack::Snoozed { .. } => "snoozed",
            HeldBack::Locked => "locked",
            HeldBack::HoldsLost(_) => "holds_lost",
        }
    }
}

impl std::fmt::Display for HeldBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeldBack::TimeUnknown(why) | HeldBack::MassStall(why) | HeldBack::Suspicion(why) => {
                f.write_str(why)
            }
            HeldBack::StartupGrace => f.write_str("within the startup grace: reporting only"),
            HeldBack::MinAge { age, min_age } => {
                write!(f, "younger than min_age ({age}s < {min_age}s)")
            }
            HeldBack::PerScanCap(cap) => write!(f, "max_actions_per_scan ({cap}) reached"),
            HeldBack::Confirming { seen, needed } => {
                write!(f, "confirming: seen on {seen} of {needed} scans")
            }
            HeldBack::Stopping => f.write_str("jobwarden is stopping: not written"),
            HeldBack::AuditUnwritable(e) => write!(f, "audit trail not writable: {e}"),
            HeldBack::Paused { until } => write!(
                f,
                "writes are paused until {}",
                crate::core::job::rfc3339(*until)
            ),
            HeldBack::Snoozed { until } => write!(
                f,
                "the job is snoozed until {}",
                crate::core::job::rfc3339(*until)
            ),
            HeldBack::Locked => f.write_str(
                "another writer holds a lock on the row or table: not written this scan, tried again at the next",
            ),
            HeldBack::HoldsLost(why) => write!(
                f,
                "the operator's holds were lost ({why}): every write is held until an operator ends this with a pause (jobwarden pause --for 0s)"
            ),
        }
    }
}

/// Held-back writes grouped by what held them (the reason as said), in the order each reason
/// first appears: one line per reason for a person or a log, never one per job.
pub fn by_reason<T>(limited: &[(T, HeldBack)]) -> Vec<(String, &HeldBack, Vec<&T>)> {
    let mut groups: Vec<(String, &HeldBack, Vec<&T>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (item, why) in limited {
        let text = why.to_string();
        match index.get(&text) {
            Some(&i) => groups[i].2.push(item),
            None => {
                index.insert(text.clone(), groups.len());
                groups.push((text, why, vec![item]));
            }
        }
    }
    groups
}

/// The gate's answer.
#[derive(Debug, Default)]
pub struct Gated {
    pub allowed: Vec<Planned>,
    /// Held back, with why.
    pub limited: Vec<(Planned, HeldBack)>,
    /// Raised when a mass stall held every write back.
    pub mass_stall: Option<Finding>,
}

/// Sorts planned writes into allowed and held back.
pub fn gate(planned: Vec<Planned>, findings: &[Finding], ctx: &Context<'_>) -> Gated {
    let mut out = Gated::default();
    if planned.is_empty() {
        return out;
    }
    if let Some(why) = ctx.refusal {
        out.limited = planned
            .into_iter()
            .map(|p| (p, HeldBack::TimeUnknown(why.to_string())))
            .collect();
        return out;
    }
    if let Some(why) = ctx.suspicion.filter(|_| !ctx.force) {
        out.limited = planned
            .into_iter()
            .map(|p| (p, HeldBack::Suspicion(why.to_string())))
            .collect();
        return out;
    }
    if ctx.grace {
        out.limited = planned
            .into_iter()
            .map(|p| (p, HeldBack::StartupGrace))
            .collect();
        return out;
    }
    let min_age = ctx.safety.min_age.as_secs();
    let mut old_enough = Vec::new();
    for p in planned {
        let age = p
            .findings
            .iter()
            .map(|&i| findings[i].age_seconds)
            .max()
            .unwrap_or(0);
        if age < min_age {
            out.limited.push((p, HeldBack::MinAge { age, min_age }));
        } else {
            old_enough.push(p);
        }
    }
    let stuck: HashSet<&str> = findings
        .iter()
        .filter(|f| matches!(f.kind, Kind::Stalled | Kind::Overdue | Kind::DeadProcess))
        .map(|f| f.job_id.as_str())
        .collect();
    let fraction = if ctx.active == 0 {
        0.0
    } else {
        stuck.len() as f64 / ctx.active as f64
    };
    if !ctx.force
        && !old_enough.is_empty()
        && ctx.active >= ctx.safety.min_active
        && fraction > ctx.safety.max_stuck_fraction
    {
        let message = format!(
            "{} of {} active jobs look stuck at once (more than {:.0}%): the heartbeat writer itself looks down; nothing was written",
            stuck.len(),
            ctx.active,
            ctx.safety.max_stuck_fraction * 100.0
        );
        out.mass_stall = Some(Finding {
            kind: Kind::MassStall,
            rule: SAFETY_RULE.to_string(),
            job_id: String::new(),
            status: String::new(),
            phase: None,
            age_seconds: 0,
            threshold_seconds: 0,
            since: ctx.now,
            severity: Severity::Critical,
            action: Action::Alert,
            outcome: Outcome::None,
            message: message.clone(),
            artifacts: Vec::new(),
            evidence: None,
            incident: None,
            worker: None,
            host: None,
            pid: None,
            guard: Guard::default(),
            progress: None,
            held: None,
        });
        out.limited.extend(
            old_enough
                .into_iter()
                .map(|p| (p, HeldBack::MassStall(message.clone()))),
        );
        return out;
    }
    // Oldest first, so a cap keeps the most certain writes.
    old_enough.sort_by_key(|p| {
        std::cmp::Reverse(
            p.findings
                .iter()
                .map(|&i| findings[i].age_seconds)
                .max()
                .unwrap_or(0),
        )
    });
    let cap = if ctx.force {
        usize::MAX
    } else {
        ctx.safety.max_actions_per_scan
    };
    for (n, p) in old_enough.into_iter().enumerate() {
        if n < cap {
            out.allowed.push(p);
        } else {
            out.limited.push((p, HeldBack::PerScanCap(cap)));
        }
    }
    out
}

/// Marks held-back findings `limited`.
pub fn mark_limited(findings: &mut [Finding], gated: &Gated) {
    for (p, why) in &gated.limited {
        for &i in &p.findings {
            findings[i].outcome = Outcome::Limited;
            findings[i].held = Some(why.to_string());
        }
    }
}

/// How many consecutive scans each write-worthy finding has held with its row unchanged.
#[derive(Debug, Default)]
pub struct Confirmations {
    seen: HashMap<FindingKey, (Guard, u32)>,
}

impl Confirmations {
    /// Counts this scan's findings, then splits the plan into writes confirmed on `needed`
    /// consecutive scans and writes still waiting (returned as held back, with why).
    pub fn confirm(
        &mut self,
        planned: Vec<Planned>,
        findings: &[Finding],
        needed: u32,
    ) -> (Vec<Planned>, Vec<(Planned, HeldBack)>) {
        let mut next = HashMap::new();
        for f in findings.iter().filter(|f| f.action != Action::Alert) {
            let key = f.key();
            let count = match self.seen.get(&key) {
                Some((guard, n)) if *guard == f.guard => n + 1,
                _ => 1,
            };
            next.insert(key, (f.guard.clone(), count));
        }
        self.seen = next;
        let mut ready = Vec::new();
        let mut waiting = Vec::new();
        for p in planned {
            let best = p
                .findings
                .iter()
                .filter_map(|&i| {
                    let f = &findings[i];
                    self.seen.get(&f.key()).map(|(_, n)| *n)
                })
                .max()
                .unwrap_or(0);
            if best >= needed {
                ready.push(p);
            } else {
                waiting.push((p, HeldBack::Confirming { seen: best, needed }));
            }
        }
        (ready, waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::plan;
    use crate::core::vocabulary::Statuses;
    use std::time::Duration;

    fn safety() -> Safety {
        Safety {
            max_actions_per_scan: 3,
            max_stuck_fraction: 0.5,
            min_active: 10,
            min_age: Duration::from_secs(60),
            startup_grace: Duration::from_secs(15),
            confirm_scans: 2,
            max_bulk: 10_000,
        }
    }

    fn finding(job: usize, age: u64) -> Finding {
        Finding {
            kind: Kind::Stalled,
            rule: "hb".into(),
            job_id: job.to_string(),
            status: "running".into(),
            phase: None,
            age_seconds: age,
            threshold_seconds: 60,
            since: 0.0,
            severity: Severity::Critical,
            action: Action::Fail,
            outcome: Outcome::None,
            message: "stuck".into(),
            artifacts: vec![],
            evidence: None,
            incident: None,
            worker: None,
            host: None,
            pid: None,
            guard: Guard {
                heartbeat: Some(format!("hb{job}")),
                progress: None,
                ..Guard::default()
            },
            progress: None,
            held: None,
        }
    }

    fn statuses() -> crate::core::vocabulary::Jobs {
        crate::core::vocabulary::Jobs::with_statuses(Statuses {
            running: vec!["running".into()],
            failed: vec!["failed".into()],
            ..Statuses::default()
        })
    }

    fn run(findings: &[Finding], active: usize, force: bool, grace: bool) -> Gated {
        let s = safety();
        let ctx = Context {
            safety: &s,
            active,
            force,
            grace,
            now: 0.0,
            refusal: None,
            suspicion: None,
        };
        gate(plan(findings, &statuses()), findings, &ctx)
    }

    #[test]
    fn a_suspicion_that_holds_waits_for_force() {
        let findings = vec![finding(1, 4000), finding(2, 4000)];
        let s = safety();
        let mut ctx = Context {
            safety: &s,
            active: 100,
            force: false,
            grace: false,
            now: 0.0,
            refusal: None,
            suspicion: Some("rows look written in UTC-5"),
        };
        let g = gate(plan(&findings, &statuses()), &findings, &ctx);
        assert!(g.allowed.is_empty());
        assert_eq!(
            g.limited
                .iter()
                .map(|(_, why)| why.to_string())
                .collect::<Vec<_>>(),
            vec!["rows look written in UTC-5"; 2]
        );
        ctx.force = true;
        let g = gate(plan(&findings, &statuses()), &findings, &ctx);
        assert_eq!(g.allowed.len(), 2, "an operator may force it");
    }

    #[test]
    fn a_refusal_holds_back_every_write_even_forced() {
        let findings = vec![finding(1, 4000), finding(2, 4000)];
        let s = safety();
        let ctx = Context {
            safety: &s,
            active: 100,
            force: true,
            grace: false,
            now: 0.0,
            refusal: Some("naive timestamps"),
            suspicion: None,
        };
        let g = gate(plan(&findings, &statuses()), &findings, &ctx);
        assert!(g.allowed.is_empty());
        assert_eq!(g.limited.len(), 2);
        assert_eq!(
            g.limited[0].1,
            HeldBack::TimeUnknown("naive timestamps".into())
        );
    }

    fn ids(p: &[Planned]) -> Vec<&str> {
        p.iter().map(|p| p.write.job_id.as_str()).collect()
    }

    #[test]
    fn a_mass_stall_writes_nothing_and_says_so_once() {
        let findings: Vec<Finding> = (0..8).map(|j| finding(j, 4000)).collect();
        let g = run(&findings, 10, false, false);
        assert!(g.allowed.is_empty());
        assert_eq!(g.limited.len(), 8);
        let stall = g.mass_stall.expect("mass_stall");
        assert_eq!(stall.kind.as_str(), "mass_stall");
        assert!(
            stall
                .message
                .starts_with("8 of 10 active jobs look stuck at once"),
            "{}",
            stall.message
        );
        // --force lifts the fraction guard and the cap.
        let forced = run(&findings, 10, true, false);
        assert_eq!(forced.allowed.len(), 8);
        assert!(forced.mass_stall.is_none());
    }

    #[test]
    fn a_small_table_is_not_held_back_but_the_cap_applies() {
        let findings: Vec<Finding> = (0..5).map(|j| finding(j, 100 * (j as u64 + 1))).collect();
        let g = run(&findings, 5, false, false);
        assert!(g.mass_stall.is_none(), "below min_active");
        assert_eq!(
            ids(&g.allowed),
            ["4", "3", "2"],
            "oldest first, three of them"
        );
        assert_eq!(g.limited.len(), 2);
        assert_eq!(g.limited[0].1, HeldBack::PerScanCap(3));
        assert_eq!(
            g.limited[0].1.to_string(),
            "max_actions_per_scan (3) reached"
        );
    }

    #[test]
    fn min_age_and_grace() {
        let findings = vec![finding(1, 30), finding(2, 4000)];
        let g = run(&findings, 100, true, false);
        assert_eq!(ids(&g.allowed), ["2"], "force never lifts min_age");
        assert_eq!(
            g.limited[0].1,
            HeldBack::MinAge {
                age: 30,
                min_age: 60
            }
        );
        let g = run(&findings, 100, false, true);
        assert!(g.allowed.is_empty() && g.limited.len() == 2);
    }

    #[test]
    fn confirmation_needs_consecutive_unchanged_scans() {
        let mut c = Confirmations::default();
        let statuses = statuses();
        let scan = |f: &[Finding], c: &mut Confirmations| {
            let (ready, waiting) = c.confirm(plan(f, &statuses), f, 2);
            (
                ids(&ready)
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>(),
                waiting.len(),
            )
        };
        let first = vec![finding(1, 4000), finding(2, 4000)];
        assert_eq!(scan(&first, &mut c), (vec![], 2));
        // Job 2's row moved (a heartbeat came and went): it starts over.
        let mut second = first.clone();
        second[1].guard.heartbeat = Some("moved".into());
        assert_eq!(scan(&second, &mut c), (vec!["1".to_string()], 1));
        assert_eq!(
            scan(&second, &mut c),
            (vec!["1".to_string(), "2".to_string()], 0)
        );
    }
}
