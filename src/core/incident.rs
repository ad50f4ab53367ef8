//! Incidents: findings that appeared together with one cause, told as one.
//!
//! The seeds' story is a restart that kills every in-process job at once: hundreds of
//! findings with one cause. An [`Incident`] groups them so an operator reads one thing:
//!
//! - **a mass stall**: the `mass_stall` finding the safety gate raised, and every stuck job
//!   it held back;
//! - **one host**: the `dead_process` findings of jobs on one host (its processes died), from
//!   [`HOST_MIN`] jobs up;
//! - **one worker**: the `stalled`/`overdue` findings of jobs whose `[workers]` worker went
//!   silent or is gone, from [`WORKER_MIN`] jobs up;
//! - **together**: the findings of one rule whose signal stopped within [`TOGETHER_WINDOW`]
//!   of each other (heartbeats that went silent in the same two minutes), from
//!   [`TOGETHER_MIN`] jobs up.
//!
//! An open incident takes in later findings of its cause (it grew), lets go of jobs whose
//! finding cleared (noting how), and ends when none is left, saying how it ended. The state
//! ([`Incidents`]) lives in the job memory, so a restart keeps it. Pure: time comes in as a
//! value, and the same input gives the same output.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::core::detect::{format_age, Finding, Kind};
use crate::core::vocabulary::Action;

/// Jobs of one host whose processes died that make an incident.
pub const HOST_MIN: usize = 2;
/// Jobs of one silent or gone worker (`[workers]`) that make an incident.
pub const WORKER_MIN: usize = 2;
/// Findings of one rule whose signals stopped together that make an incident.
pub const TOGETHER_MIN: usize = 5;
/// How close together their signals stopped, in seconds.
pub const TOGETHER_WINDOW: f64 = 120.0;
/// Ended incidents kept for the console and the alerts, newest last.
pub const ENDED_KEPT: usize = 50;

/// Why the findings of an incident belong together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// The safety gate's mass stall: most active jobs look stuck at once.
    MassStall,
    /// The processes of one host's jobs died.
    Host { host: String },
    /// One rule's signal stopped on many jobs within [`TOGETHER_WINDOW`].
    Together { rule: String },
    /// The worker (`[workers]`) that ran these jobs went silent or is gone.
    Worker { worker: String },
}

/// How a job left an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Left {
    /// jobwarden wrote it (failed or re-queued) in a scan: the daemon's own action, or a
    /// `recover`.
    Written,
    /// A person failed it through the daemon (a job's or a bulk action on the console or
    /// the API).
    FailedByPerson,
    /// A person re-queued it through the daemon.
    RequeuedByPerson,
    /// It is no longer active, and jobwarden did not write it: a person or the application.
    Finished,
    /// Still active, its finding cleared: it came back to life.
    CameBack,
}

impl Left {
    fn words(self) -> &'static str {
        match self {
            Left::Written => "written by jobwarden",
            Left::FailedByPerson => "failed by a person",
            Left::RequeuedByPerson => "re-queued by a person",
            Left::Finished => "finished by a person or the application",
            Left::CameBack => "came back",
        }
    }
}

/// One incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub cause: Cause,
    /// Database time it opened.
    pub opened_at: f64,
    /// Database time it ended (no member has its finding any more).
    pub ended_at: Option<f64>,
    /// Jobs with the incident's finding now.
    pub open: BTreeSet<String>,
    /// Jobs that left, and how.
    pub left: BTreeMap<String, Left>,
    /// What holds its writes back, as the last scan said (once, not per job).
    pub held_back: Option<String>,
    /// When the jobs' signals stopped (the earliest), for the message.
    pub stopped_at: f64,
}

impl Incident {
    /// Every job that has been in it (a job written while still in it is in both sets).
    pub fn jobs(&self) -> usize {
        self.open.len() + self.left.keys().filter(|j| !self.open.contains(*j)).count()
    }

    /// The cause in words.
    pub fn cause_words(&self) -> String {
        match &self.cause {
            Cause::MassStall => "most active jobs look stuck at once".to_string(),
            Cause::Host { host } => format!("the processes of jobs on host {host} died"),
            Cause::Together { rule } => {
                format!("the jobs of rule {rule} stopped together")
            }
            Cause::Worker { worker } => {
                format!("worker {worker}, which ran these jobs, went silent or is gone")
            }
        }
    }

    /// One sentence: cause, count, and how it ended (or what holds it).
    pub fn message(&self, now: f64) -> String {
        let jobs = self.jobs();
        let mut text = format!(
            "{}: {jobs} job{}, signals stopped {} ago",
            self.cause_words(),
            if jobs == 1 { "" } else { "s" },
            format_age(now - self.stopped_at)
        );
        match self.ended_at {
            Some(_) => text.push_str(&format!("; ended: {}", self.ending())),
            None => {
                if let Some(held) = &self.held_back {
                    text.push_str(&format!("; held back: {held}"));
                }
            }
        }
        text
    }

    /// How the jobs left, counted: "300 written by jobwarden, 2 came back".
    pub fn ending(&self) -> String {
        let mut counts: BTreeMap<Left, usize> = BTreeMap::new();
        for how in self.left.values() {
            *counts.entry(*how).or_default() += 1;
        }
        let parts: Vec<String> = counts
            .iter()
            .map(|(how, n)| format!("{n} {}", how.words()))
            .collect();
        if parts.is_empty() {
            "no job left".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// An incident as `check --json` and `/api/v1/findings` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    pub id: String,
    pub cause: String,
    #[serde(serialize_with = "crate::core::job::serialize_epoch")]
    pub opened_at: f64,
    #[serde(serialize_with = "serialize_maybe_epoch")]
    pub ended_at: Option<f64>,
    /// How many jobs it holds (or held).
    pub jobs: usize,
    pub held_back: Option<String>,
    pub message: String,
    /// How it ended ([`Incident::ending`]), once it has: for the alerts, not the JSON (the
    /// message says it).
    #[serde(skip)]
    pub ending: Option<String>,
}

fn serialize_maybe_epoch<S: serde::Serializer>(at: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => crate::core::job::serialize_epoch(at, s),
        None => s.serialize_none(),
    }
}

/// Ended incidents stay in the report this long (seconds) after they end.
pub const ENDED_SHOWN: f64 = 3600.0;

/// Every incident jobwarden keeps: the open ones and the last [`ENDED_KEPT`] that ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Incidents {
    pub list: Vec<Incident>,
    /// The number of the next incident's id.
    pub next: u64,
}

/// What changed in one scan, for the logs and the alerts (each said once).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub opened: Vec<String>,
    /// Incidents that took in more jobs: id and how many.
    pub grew: Vec<(String, usize)>,
    pub ended: Vec<String>,
    /// Anything of the incidents changed (a job left, what holds one back, an old one
    /// forgotten...), so the memory is worth saving.
    pub changed: bool,
}

/// One scan's view of the jobs: which are still active, and which jobwarden wrote.
pub struct Scan<'a> {
    pub now: f64,
    /// The host of each active job that has one.
    pub hosts: &'a HashMap<String, String>,
    /// Ids of the active rows.
    pub active: &'a HashSet<String>,
    /// Ids jobwarden wrote in this scan.
    pub written: &'a HashSet<&'a str>,
}

/// Kinds that say a job is stuck (the ones a mass stall holds).
fn stuck(kind: Kind) -> bool {
    matches!(kind, Kind::Stalled | Kind::Overdue | Kind::DeadProcess)
}

impl Incidents {
    /// Takes in one scan's findings (after the safety gate, so a mass stall is among them):
    /// open incidents keep, take in and let go of jobs, new ones open, and each finding that
    /// belongs to one gets its id in `incident`.
    pub fn observe(&mut self, findings: &mut [Finding], scan: &Scan<'_>) -> Changes {
        let mut changes = Changes::default();
        let mass = findings
            .iter()
            .find(|f| f.kind == Kind::MassStall)
            .map(|f| f.message.clone());
        let by_job = findings_by_job(findings);

        // Open incidents first: who is still in, who left.
        for inc in self.list.iter_mut().filter(|i| i.ended_at.is_none()) {
            let (cause, left) = (&inc.cause, &mut inc.left);
            let before = inc.open.len();
            inc.open.retain(|job| {
                if by_job
                    .get(job.as_str())
                    .is_some_and(|ks| belongs(cause, ks))
                {
                    return true;
                }
                let how = if scan.written.contains(job.as_str()) {
                    Left::Written
                } else if scan.active.contains(job.as_str()) {
                    Left::CameBack
                } else {
                    Left::Finished
                };
                // A write made by an earlier scan's pass, or by a person between scans,
                // shows here as the job gone.
                let how = match left.get(job) {
                    Some(by @ (Left::Written | Left::FailedByPerson | Left::RequeuedByPerson)) => {
                        *by
                    }
                    _ => how,
                };
                left.insert(job.clone(), how);
                false
            });
            changes.changed |= inc.open.len() != before;
            // The guard holds every stuck job's write, so every incident (all are of stuck
            // jobs) is held by it: one that formed before the guard engaged (in the startup
            // grace, or while writes waited for confirmation) too.
            if inc.held_back != mass {
                inc.held_back.clone_from(&mass);
                changes.changed = true;
            }
        }

        // Jobs already in an open incident stay there; the rest may form or join one.
        let taken: HashSet<String> = self
            .list
            .iter()
            .filter(|i| i.ended_at.is_none())
            .flat_map(|i| i.open.iter().cloned())
            .collect();
        let free = |f: &Finding| !f.job_id.is_empty() && !taken.contains(&f.job_id);
        let mut groups: Vec<(Cause, Vec<&Finding>)> = Vec::new();
        if mass.is_some() {
            groups.push((
                Cause::MassStall,
                findings
                    .iter()
                    .filter(|f| stuck(f.kind) && free(f))
                    .collect(),
            ));
        }
        let mut by_host: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
        for f in findings
            .iter()
            .filter(|f| f.kind == Kind::DeadProcess && free(f))
        {
            if let Some(host) = scan.hosts.get(&f.job_id) {
                by_host.entry(host).or_default().push(f);
            }
        }
        for (host, fs) in by_host {
            groups.push((
                Cause::Host {
                    host: host.to_string(),
                },
                fs,
            ));
        }
        let mut by_worker: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
        for f in findings
            .iter()
            .filter(|f| matches!(f.kind, Kind::Stalled | Kind::Overdue) && free(f))
        {
            // Only a worker whose liveness `[workers]` shows: a worker column alone says who
            // held the jobs, not that it died.
            if let Some(w) = f.worker.as_ref().filter(|w| w.gone.is_some()) {
                by_worker.entry(&w.id).or_default().push(f);
            }
        }
        for (worker, fs) in by_worker {
            groups.push((
                Cause::Worker {
                    worker: worker.to_string(),
                },
                fs,
            ));
        }
        let mut by_rule: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
        for f in findings
            .iter()
            .filter(|f| matches!(f.kind, Kind::Stalled | Kind::Overdue) && free(f))
        {
            by_rule.entry(&f.rule).or_default().push(f);
        }
        for (rule, fs) in by_rule {
            for cluster in together(fs) {
                groups.push((
                    Cause::Together {
                        rule: rule.to_string(),
                    },
                    cluster,
                ));
            }
        }

        let mut placed: HashSet<String> = HashSet::new();
        for (cause, fs) in groups {
            let fs: Vec<&Finding> = fs
                .into_iter()
                .filter(|f| !placed.contains(&f.job_id))
                .collect();
            if fs.is_empty() {
                continue;
            }
            let open = self
                .list
                .iter_mut()
                .find(|i| i.ended_at.is_none() && i.cause == cause);
            match open {
                Some(inc) => {
                    let before = inc.open.len();
                    for f in &fs {
                        changes.changed |= inc.left.remove(&f.job_id).is_some();
                        inc.open.insert(f.job_id.clone());
                        if f.since < inc.stopped_at {
                            inc.stopped_at = f.since;
                            changes.changed = true;
                        }
                        placed.insert(f.job_id.clone());
                    }
                    if inc.open.len() > before {
                        changes.grew.push((inc.id.clone(), inc.open.len() - before));
                        changes.changed = true;
                    }
                }
                None => {
                    let enough = match &cause {
                        Cause::MassStall => true,
                        Cause::Host { .. } => fs.len() >= HOST_MIN,
                        Cause::Together { .. } => fs.len() >= TOGETHER_MIN,
                        Cause::Worker { .. } => fs.len() >= WORKER_MIN,
                    };
                    if !enough {
                        continue;
                    }
                    self.next += 1;
                    let id = format!("inc-{}", self.next);
                    placed.extend(fs.iter().map(|f| f.job_id.clone()));
                    self.list.push(Incident {
                        id: id.clone(),
                        held_back: (cause == Cause::MassStall).then(|| mass.clone()).flatten(),
                        cause,
                        opened_at: scan.now,
                        ended_at: None,
                        open: fs.iter().map(|f| f.job_id.clone()).collect(),
                        left: BTreeMap::new(),
                        stopped_at: fs.iter().map(|f| f.since).fold(f64::INFINITY, f64::min),
                    });
                    changes.opened.push(id);
                    changes.changed = true;
                }
            }
        }

        // An incident with no job left ends; the findings of the others carry its id. A job
        // written in this very scan (the one its incident opened or grew in) leaves as
        // written when its finding clears.
        for inc in self.list.iter_mut().filter(|i| i.ended_at.is_none()) {
            for job in inc
                .open
                .iter()
                .filter(|j| scan.written.contains(j.as_str()))
            {
                changes.changed |=
                    inc.left.insert(job.clone(), Left::Written) != Some(Left::Written);
            }
            if inc.open.is_empty() {
                inc.ended_at = Some(scan.now);
                inc.held_back = None;
                changes.ended.push(inc.id.clone());
                changes.changed = true;
            }
        }
        let member: HashMap<&str, &Incident> = self
            .list
            .iter()
            .filter(|i| i.ended_at.is_none())
            .flat_map(|i| i.open.iter().map(move |j| (j.as_str(), i)))
            .collect();
        // The mass stall's own finding is in its incident or, when its jobs were already in
        // others, in the largest of those: it is told with them, not on its own.
        let open = || self.list.iter().filter(|i| i.ended_at.is_none());
        let mass_incident = open()
            .find(|i| i.cause == Cause::MassStall)
            .or_else(|| open().max_by_key(|i| i.open.len()))
            .map(|i| i.id.clone());
        for f in findings.iter_mut() {
            // Only the findings of its cause: a member's half-written report is its own.
            f.incident = match f.kind {
                Kind::MassStall => mass_incident.clone(),
                _ => member
                    .get(f.job_id.as_str())
                    .filter(|i| belongs(&i.cause, &[(f.kind, &f.rule)]))
                    .map(|i| i.id.clone()),
            };
        }
        changes.changed |= self.forget_old_ended();
        changes
    }

    /// Records that a person had jobwarden write these jobs outside a scan (a job's or a bulk
    /// action through the daemon): when they leave their incident, they left failed (or
    /// re-queued) by a person, which is how its closing message says it ended.
    pub fn written(&mut self, ids: &[&str], action: Action) {
        let how = match action {
            Action::Requeue => Left::RequeuedByPerson,
            _ => Left::FailedByPerson,
        };
        for inc in self.list.iter_mut().filter(|i| i.ended_at.is_none()) {
            for id in ids {
                if inc.open.contains(*id) {
                    inc.left.insert((*id).to_string(), how);
                }
            }
        }
    }

    /// The open incidents and those that ended within [`ENDED_SHOWN`], for the report: open
    /// ones first, newest first.
    pub fn views(&self, now: f64) -> Vec<View> {
        let mut shown: Vec<&Incident> = self
            .list
            .iter()
            .filter(|i| i.ended_at.is_none_or(|at| now - at <= ENDED_SHOWN))
            .collect();
        shown.sort_by(|a, b| {
            a.ended_at
                .is_some()
                .cmp(&b.ended_at.is_some())
                .then(b.opened_at.total_cmp(&a.opened_at))
        });
        shown
            .into_iter()
            .map(|i| View {
                id: i.id.clone(),
                cause: i.cause_words(),
                opened_at: i.opened_at,
                ended_at: i.ended_at,
                jobs: i.jobs(),
                held_back: i.held_back.clone(),
                message: i.message(now),
                ending: i.ended_at.map(|_| i.ending()),
            })
            .collect()
    }

    /// Whether any was forgotten.
    fn forget_old_ended(&mut self) -> bool {
        let ended = self.list.iter().filter(|i| i.ended_at.is_some()).count();
        let mut drop = ended.saturating_sub(ENDED_KEPT);
        let forgets = drop > 0;
        self.list.retain(|i| {
            if drop > 0 && i.ended_at.is_some() {
                drop -= 1;
                false
            } else {
                true
            }
        });
        forgets
    }
}

/// The kinds of finding each job has.
fn findings_by_job(findings: &[Finding]) -> HashMap<&str, Vec<(Kind, &str)>> {
    let mut out: HashMap<&str, Vec<(Kind, &str)>> = HashMap::new();
    for f in findings.iter().filter(|f| !f.job_id.is_empty()) {
        out.entry(&f.job_id).or_default().push((f.kind, &f.rule));
    }
    out
}

/// Whether a job with these findings still belongs to an incident of this cause. A job that
/// was written, or whose outcome is only pending, keeps its finding until the row changes.
fn belongs(cause: &Cause, kinds: &[(Kind, &str)]) -> bool {
    kinds.iter().any(|(kind, rule)| match cause {
        Cause::MassStall => stuck(*kind),
        Cause::Host { .. } => *kind == Kind::DeadProcess,
        Cause::Together { rule: r } => stuck(*kind) && rule == r,
        Cause::Worker { .. } => matches!(kind, Kind::Stalled | Kind::Overdue),
    })
}

/// Clusters of at least [`TOGETHER_MIN`] findings whose `since` lie within
/// [`TOGETHER_WINDOW`] of the cluster's first.
fn together(mut fs: Vec<&Finding>) -> Vec<Vec<&Finding>> {
    fs.sort_by(|a, b| a.since.total_cmp(&b.since));
    let mut out = Vec::new();
    let mut start = 0;
    while start < fs.len() {
        let first = fs[start].since;
        let end = fs[start..]
            .iter()
            .position(|f| f.since - first > TOGETHER_WINDOW)
            .map_or(fs.len(), |n| start + n);
        if end - start >= TOGETHER_MIN {
            out.push(fs[start..end].to_vec());
        }
        start = end.max(start + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::detect::Outcome;
    use crate::core::job::Guard;
    use crate::core::vocabulary::{Action, Severity};

    const NOW: f64 = 1_767_225_600.0;

    fn finding(job: &str, kind: Kind, since: f64) -> Finding {
        Finding {
            kind,
            rule: "hb".into(),
            job_id: job.into(),
            status: "running".into(),
            phase: None,
            age_seconds: 1900,
            threshold_seconds: 1800,
            since,
            severity: Severity::Critical,
            action: Action::Fail,
            outcome: Outcome::None,
            message: "no heartbeat".into(),
            artifacts: vec![],
            evidence: None,
            incident: None,
            worker: None,
            host: None,
            pid: None,
            guard: Guard::default(),
            progress: None,
            held: None,
        }
    }

    fn mass() -> Finding {
        let mut f = finding("", Kind::MassStall, NOW);
        f.message = "300 of 302 active jobs look stuck at once".into();
        f
    }

    struct World {
        hosts: HashMap<String, String>,
        active: Vec<String>,
        written: Vec<String>,
    }

    impl World {
        fn new(active: impl IntoIterator<Item = usize>) -> World {
            World {
                hosts: HashMap::new(),
                active: active.into_iter().map(|i| i.to_string()).collect(),
                written: Vec::new(),
            }
        }

        fn observe(&self, inc: &mut Incidents, findings: &mut [Finding], now: f64) -> Changes {
            let active = self.active.iter().cloned().collect();
            let written = self.written.iter().map(String::as_str).collect();
            inc.observe(
                findings,
                &Scan {
                    now,
                    hosts: &self.hosts,
                    active: &active,
                    written: &written,
                },
            )
        }
    }

    fn stalled(ids: std::ops::RangeInclusive<usize>, since: f64) -> Vec<Finding> {
        ids.map(|i| finding(&i.to_string(), Kind::Stalled, since))
            .collect()
    }

    /// `changed` says exactly whether the incidents changed (the memory is saved on it):
    /// checked against a copy over a story of opening, growing, a job leaving, the guard
    /// letting go, ending, and quiet scans between.
    #[test]
    fn changed_says_whether_anything_changed() {
        let mut inc = Incidents::default();
        let mut world = World::new(1..=302);
        let step = |inc: &mut Incidents, world: &World, mut findings: Vec<Finding>, at: f64| {
            let before = inc.clone();
            let changes = world.observe(inc, &mut findings, at);
            assert_eq!(changes.changed, *inc != before, "at {at}: {changes:?}");
            changes.changed
        };
        let mut all = stalled(1..=300, NOW - 1900.0);
        all.push(mass());
        assert!(step(&mut inc, &world, all.clone(), NOW), "opened");
        assert!(
            !step(&mut inc, &world, all.clone(), NOW + 15.0),
            "the same again"
        );
        // The guard lets go (no mass-stall finding): what holds it back changed.
        let no_guard = stalled(1..=300, NOW - 1900.0);
        assert!(step(&mut inc, &world, no_guard.clone(), NOW + 30.0));
        assert!(!step(&mut inc, &world, no_guard, NOW + 45.0));
        // One job came back on its own; then the rest were written and it ended.
        assert!(step(
            &mut inc,
            &world,
            stalled(2..=300, NOW - 1900.0),
            NOW + 60.0
        ));
        world.active = vec!["1".into()];
        world.written = (2..=300).map(|i| i.to_string()).collect();
        assert!(step(&mut inc, &world, Vec::new(), NOW + 75.0), "ended");
        assert!(!step(&mut inc, &world, Vec::new(), NOW + 90.0));
    }

    #[test]
    fn a_mass_stall_is_one_incident_held_back_once_and_ends_when_written() {
        let mut inc = Incidents::default();
        let world = World::new(1..=302);
        let mut findings = stalled(1..=300, NOW - 1900.0);
        findings.push(mass());
        let changes = world.observe(&mut inc, &mut findings, NOW);
        assert_eq!(changes.opened, ["inc-1"]);
        assert_eq!(
            inc.list.len(),
            1,
            "one incident, not a mass stall and a cluster"
        );
        let i = &inc.list[0];
        assert_eq!((i.cause.clone(), i.jobs()), (Cause::MassStall, 300));
        assert_eq!(
            i.message(NOW),
            "most active jobs look stuck at once: 300 jobs, signals stopped 31m 40s ago; held back: 300 of 302 active jobs look stuck at once"
        );
        assert!(findings
            .iter()
            .all(|f| f.incident.as_deref() == Some("inc-1")));

        // The same scan again: nothing changes, nothing is said.
        let again = world.observe(&mut inc, &mut findings, NOW + 15.0);
        assert_eq!(again, Changes::default());

        // A person forced the writes: 298 written, 2 came back on their own.
        let mut world = World::new(299..=302);
        world.written = (1..=298).map(|i| i.to_string()).collect();
        let changes = world.observe(&mut inc, &mut [], NOW + 30.0);
        assert_eq!(changes.ended, ["inc-1"]);
        let i = &inc.list[0];
        assert_eq!(i.ended_at, Some(NOW + 30.0));
        assert_eq!(i.ending(), "298 written by jobwarden, 2 came back");
        assert!(i
            .message(NOW + 30.0)
            .ends_with("; ended: 298 written by jobwarden, 2 came back"));
    }

    #[test]
    fn jobs_whose_signals_stopped_together_form_one_incident_and_it_grows() {
        let mut inc = Incidents::default();
        let world = World::new(1..=20);
        // Six went silent within a minute; two others days apart from them are on their own.
        let mut findings = stalled(1..=6, NOW - 2000.0);
        findings[5].since = NOW - 1950.0;
        findings.push(finding("7", Kind::Stalled, NOW - 90_000.0));
        findings.push(finding("8", Kind::Stalled, NOW - 50_000.0));
        let changes = world.observe(&mut inc, &mut findings, NOW);
        assert_eq!(changes.opened, ["inc-1"]);
        assert_eq!(inc.list[0].cause, Cause::Together { rule: "hb".into() });
        assert_eq!(inc.list[0].jobs(), 6);
        assert_eq!(findings[6].incident, None);
        assert_eq!(findings[7].incident, None);
        // Five more of the same rule and the same moment, found a scan later: it grew.
        let mut later = findings.clone();
        later.extend(stalled(9..=13, NOW - 1990.0));
        let changes = world.observe(&mut inc, &mut later, NOW + 15.0);
        assert_eq!(changes.grew, [("inc-1".to_string(), 5)]);
        assert!(changes.opened.is_empty());
        assert_eq!(inc.list[0].jobs(), 11);
    }

    #[test]
    fn a_mass_stall_after_the_jobs_formed_an_incident_holds_it_and_joins_it() {
        let mut inc = Incidents::default();
        let world = World::new(1..=302);
        // The first scan, in the startup grace: no guard yet, the jobs stopped together.
        let mut findings = stalled(1..=300, NOW - 1900.0);
        world.observe(&mut inc, &mut findings, NOW);
        assert_eq!(inc.list[0].cause, Cause::Together { rule: "hb".into() });
        assert_eq!(inc.list[0].held_back, None);
        // The guard engages: no second incident; its finding and its reason join the first.
        findings.push(mass());
        let changes = world.observe(&mut inc, &mut findings, NOW + 15.0);
        assert_eq!(
            changes,
            Changes {
                changed: true, // What holds it back: saved, not told.
                ..Changes::default()
            }
        );
        assert_eq!(inc.list.len(), 1);
        assert_eq!(
            inc.list[0].held_back.as_deref(),
            Some("300 of 302 active jobs look stuck at once")
        );
        assert!(findings
            .iter()
            .all(|f| f.incident.as_deref() == Some("inc-1")));
    }

    #[test]
    fn jobs_written_in_the_scan_their_incident_opened_in_leave_as_written() {
        let mut inc = Incidents::default();
        let mut world = World::new(1..=6);
        world.written = (1..=6).map(|i| i.to_string()).collect();
        let mut findings = stalled(1..=6, NOW - 2000.0);
        world.observe(&mut inc, &mut findings, NOW);
        assert_eq!(inc.list[0].jobs(), 6, "counted once while still in it");
        World::new([]).observe(&mut inc, &mut [], NOW + 15.0);
        assert_eq!(inc.list[0].ending(), "6 written by jobwarden");
    }

    #[test]
    fn jobs_a_person_wrote_between_scans_end_their_incident_as_the_persons() {
        let mut inc = Incidents::default();
        let world = World::new(1..=302);
        let mut findings = stalled(1..=300, NOW - 1900.0);
        findings.push(mass());
        world.observe(&mut inc, &mut findings, NOW);
        // A bulk fail of 290 and a re-queue of 5 through the daemon; 5 came back alone.
        let ids: Vec<String> = (1..=295).map(|i| i.to_string()).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        inc.written(&ids[..290], Action::Fail);
        inc.written(&ids[290..], Action::Requeue);
        // The next scan: the failed ones are no longer active, the re-queued ones are (queued
        // again), and none has a finding.
        let world = World::new(291..=302);
        let changes = world.observe(&mut inc, &mut [], NOW + 30.0);
        assert_eq!(changes.ended, ["inc-1"]);
        assert_eq!(
            inc.list[0].ending(),
            "290 failed by a person, 5 re-queued by a person, 5 came back"
        );
    }

    #[test]
    fn only_the_findings_of_its_cause_are_in_an_incident() {
        let mut inc = Incidents::default();
        let world = World::new(1..=6);
        let mut findings = stalled(1..=6, NOW - 2000.0);
        let mut part = finding("1", Kind::IncompleteArtifact, NOW - 100.0);
        part.rule = "reports".into();
        findings.push(part);
        world.observe(&mut inc, &mut findings, NOW);
        assert_eq!(findings[0].incident.as_deref(), Some("inc-1"));
        assert_eq!(findings[6].incident, None, "the file alerts on its own");
    }

    #[test]
    fn fewer_than_enough_findings_are_no_incident() {
        let mut inc = Incidents::default();
        let world = World::new(1..=4);
        let mut findings = stalled(1..=4, NOW - 2000.0);
        assert_eq!(
            world.observe(&mut inc, &mut findings, NOW),
            Changes::default()
        );
        assert!(inc.list.is_empty());
        assert!(findings.iter().all(|f| f.incident.is_none()));
    }

    #[test]
    fn the_jobs_of_one_silent_worker_are_one_incident() {
        let mut inc = Incidents::default();
        let world = World::new(1..=4);
        let owned = |job: &str, worker: &str, since: f64| {
            let mut f = finding(job, Kind::Stalled, since);
            f.worker = Some(crate::core::detect::Owner {
                id: worker.into(),
                gone: Some(false),
                heartbeat_at: Some(since),
                ..Default::default()
            });
            f
        };
        // Their signals stopped far apart (no "together"), but on one worker.
        let mut findings = vec![
            owned("1", "17", NOW - 3000.0),
            owned("2", "17", NOW - 2000.0),
            owned("3", "18", NOW - 2000.0),
            finding("4", Kind::Stalled, NOW - 2000.0),
        ];
        world.observe(&mut inc, &mut findings, NOW);
        assert_eq!(inc.list.len(), 1);
        assert_eq!(
            inc.list[0].cause,
            Cause::Worker {
                worker: "17".into()
            }
        );
        assert_eq!(
            inc.list[0].cause_words(),
            "worker 17, which ran these jobs, went silent or is gone"
        );
        let ids: Vec<Option<&str>> = findings.iter().map(|f| f.incident.as_deref()).collect();
        assert_eq!(ids, [Some("inc-1"), Some("inc-1"), None, None]);

        // A worker column alone (no `[workers]`) says who held the jobs, not that it died.
        let mut inc = Incidents::default();
        let mut findings = vec![
            owned("1", "17", NOW - 3000.0),
            owned("2", "17", NOW - 2000.0),
        ];
        for f in &mut findings {
            f.worker = Some(crate::core::detect::Owner {
                id: "17".into(),
                ..Default::default()
            });
        }
        world.observe(&mut inc, &mut findings, NOW);
        assert!(inc.list.is_empty(), "{:?}", inc.list);
    }

    #[test]
    fn the_dead_processes_of_one_host_are_one_incident() {
        let mut inc = Incidents::default();
        let mut world = World::new(1..=3);
        world.hosts = [("1", "web-1"), ("2", "web-1"), ("3", "web-2")]
            .into_iter()
            .map(|(j, h)| (j.to_string(), h.to_string()))
            .collect();
        let mut findings: Vec<Finding> = (1..=3)
            .map(|i| finding(&i.to_string(), Kind::DeadProcess, NOW - 5.0))
            .collect();
        world.observe(&mut inc, &mut findings, NOW);
        assert_eq!(inc.list.len(), 1);
        assert_eq!(
            inc.list[0].cause,
            Cause::Host {
                host: "web-1".into()
            }
        );
        assert_eq!(
            inc.list[0].cause_words(),
            "the processes of jobs on host web-1 died"
        );
        assert_eq!(
            findings[2].incident, None,
            "one job of web-2 is not an incident"
        );
        // Someone cancels them by hand: the incident ends saying so.
        let world = World::new([3]);
        world.observe(&mut inc, &mut findings[2..], NOW + 15.0);
        assert_eq!(
            inc.list[0].ending(),
            "2 finished by a person or the application"
        );
    }

    #[test]
    fn incidents_survive_a_restart_and_old_ended_ones_are_forgotten() {
        let mut inc = Incidents::default();
        for n in 0..(ENDED_KEPT + 3) {
            let world = World::new(1..=5);
            let mut findings = stalled(1..=5, NOW - 2000.0 + n as f64 * 1000.0);
            world.observe(&mut inc, &mut findings, NOW + n as f64 * 100.0);
            World::new([]).observe(&mut inc, &mut [], NOW + n as f64 * 100.0 + 50.0);
        }
        assert_eq!(inc.list.len(), ENDED_KEPT);
        assert_eq!(inc.list[0].id, "inc-4", "the oldest went first");
        let text = serde_json::to_string(&inc).unwrap();
        let back: Incidents = serde_json::from_str(&text).unwrap();
        assert_eq!(back, inc);
    }
}
