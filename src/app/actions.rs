//! Applying planned writes, and recording what became of each.
//!
//! The plan is pure ([`crate::core::plan`]): at most one write per job (a `fail` beats a
//! `requeue`), with the reason text that lands in the `error` column. [`apply`] runs it
//! through the store, or only describes it in a dry run, and sets every finding's `outcome`.
//! A failed write is logged and recorded as `error`; it never stops the other writes.

use crate::adapters::audit::Recorded;
use crate::adapters::store::Store;
use crate::config::Action;
use crate::core::detect::{Finding, Outcome};
pub use crate::core::plan::{plan, Planned, Write};
use crate::core::safety::HeldBack;

/// What [`apply`] did, for the caller to print.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub write: Write,
    pub outcome: Outcome,
    /// The SQL in words (dry run) or the error (error).
    pub detail: String,
    /// The audit trail's line for it.
    pub audit: crate::adapters::audit::Entry,
}

/// Stops writes between two of them: set on SIGTERM/SIGINT, checked before each write, so the
/// write in flight finishes (and is recorded) and nothing after it starts.
/// The daemon also ends its reads in flight with it ([`Stop::halt`]).
#[derive(Debug, Clone, Default)]
pub struct Stop(crate::adapters::store::Halt);

impl Stop {
    pub fn set(&self) {
        self.0.set();
    }

    pub fn is_set(&self) -> bool {
        self.0.is_set()
    }

    /// The same signal, for a store's reads ([`crate::adapters::store::Store::with_halt`]).
    pub fn halt(&self) -> crate::adapters::store::Halt {
        self.0.clone()
    }
}

/// Where writes are recorded, and what may stop them.
#[derive(Debug, Clone, Copy)]
pub struct Trail<'a> {
    /// The state directory holding `audit.jsonl`.
    pub state_dir: &'a std::path::Path,
    /// `[audit] max_size`: the trail rotates before an append would take it past this.
    pub audit_max_size: u64,
    pub stop: Option<&'a Stop>,
    /// Dry-run writes already logged and audited on an earlier scan (the daemon's): counted
    /// again, not logged or audited again.
    pub dry_seen: Option<&'a std::collections::HashSet<String>>,
}

/// What [`apply`] came to.
#[derive(Debug, Default)]
pub struct Applying {
    pub applied: Vec<Applied>,
    /// Not written: the audit trail could not take its intent, or jobwarden is stopping.
    pub held: Vec<(Planned, HeldBack)>,
    /// The last failure to write the audit trail, if any.
    pub audit_error: Option<String>,
    /// The keys of this scan's dry-run writes.
    pub dry_keys: std::collections::HashSet<String>,
}

/// The key of a dry-run write: the same write, on an unchanged row, is logged once.
fn dry_key(w: &Write) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{:?}",
        w.job_id,
        w.action.as_str(),
        w.status_before,
        w.guard
    )
}

/// How long the writes of one scan may wait, in all, for other writers' locks. Each write
/// waits at most [`crate::adapters::store::LOCK_WAIT`]; once the scan's writes have waited
/// this long, the rest are held back (`HeldBack::Locked`) without trying, and tried again at
/// the next scan. So an application's transaction that holds the table for 30 s delays a scan
/// by about 3 s, not 30 s per write, and the loop keeps its schedule.
pub const LOCK_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// Applies (or, with `dry_run`, describes) the planned writes and records each outcome on its
/// findings. Each real write's intent is appended to the audit trail and flushed *before* the
/// `UPDATE`, and its outcome after; a write whose intent cannot be recorded is not made
/// (`limited`). Once `trail.stop` is set, no further write starts.
pub async fn apply(
    store: &Store,
    findings: &mut [Finding],
    planned: Vec<Planned>,
    dry_run: bool,
    audit: &crate::adapters::audit::Context,
    trail: Trail<'_>,
) -> Applying {
    let mut out = Applying::default();
    let mut dry_entries = Vec::new();
    let mut lock_waited = std::time::Duration::ZERO;
    for p in planned {
        if trail.stop.is_some_and(Stop::is_set) {
            out.held.push((p, HeldBack::Stopping));
            continue;
        }
        if !dry_run && lock_waited >= LOCK_BUDGET {
            out.held.push((p, HeldBack::Locked));
            continue;
        }
        let mut entry = crate::adapters::audit::entry(&p.write, &findings[p.findings[0]], audit);
        if store.queries().sets_more(p.write.action) {
            entry.statement = Some(store.queries().describe(&p.write, audit.now));
        }
        let mut quiet = false;
        let (outcome, detail) = if dry_run {
            let key = dry_key(&p.write);
            quiet = trail.dry_seen.is_some_and(|seen| seen.contains(&key));
            out.dry_keys.insert(key);
            (
                Outcome::DryRun,
                store.queries().describe(&p.write, audit.now),
            )
        } else {
            let intent = crate::adapters::audit::Entry {
                stage: crate::adapters::audit::Stage::Intent,
                outcome: Recorded::Intent,
                ..entry.clone()
            };
            if let Err(e) =
                crate::adapters::audit::append(trail.state_dir, trail.audit_max_size, &[intent])
            {
                let why = HeldBack::AuditUnwritable(e.to_string());
                tracing::error!(
                    job_id = p.write.job_id.as_str(), path = %crate::adapters::audit::path(trail.state_dir).display(),
                    "not written, since its record cannot be kept: {why}"
                );
                out.audit_error = Some(why.to_string());
                out.held.push((p, why));
                continue;
            }
            let started = tokio::time::Instant::now();
            match store.apply(&p.write, &entry, audit.now).await {
                Ok(true) => (
                    Outcome::Applied,
                    store.queries().describe(&p.write, audit.now),
                ),
                Ok(false) => (
                    Outcome::Raced,
                    "the row changed since it was read; left alone".to_string(),
                ),
                Err(e @ crate::adapters::store::StoreError::Locked { .. }) => {
                    lock_waited += started.elapsed();
                    tracing::warn!(job_id = %p.write.job_id, outcome = "limited", "not written: {e}; tried again at the next scan");
                    entry.outcome = Recorded::NotWritten;
                    if let Err(e) = crate::adapters::audit::append_outcome(
                        trail.state_dir,
                        trail.audit_max_size,
                        &entry,
                    ) {
                        tracing::error!(job_id = %p.write.job_id, "cannot record the outcome of a write: {e}");
                        out.audit_error = Some(format!("audit trail not writable: {e}"));
                    }
                    out.held.push((p, HeldBack::Locked));
                    continue;
                }
                Err(e) => (Outcome::Error, e.to_string()),
            }
        };
        for &i in &p.findings {
            findings[i].outcome = outcome;
        }
        let first = &findings[p.findings[0]];
        match outcome {
            Outcome::Error => tracing::error!(
                job_id = p.write.job_id.as_str(), kind = first.kind.as_str(), rule = %first.rule,
                age_seconds = first.age_seconds, outcome = "error", error = detail.as_str(),
                "could not {} job", p.write.action.as_str()
            ),
            // A dry run said once; a person's bulk action says itself in one line (its
            // caller's), each row being in the audit trail: not 5,000 lines for 5,000 rows.
            _ if quiet || audit.batch.is_some() => {}
            _ => tracing::info!(
                job_id = p.write.job_id.as_str(), kind = first.kind.as_str(), rule = %first.rule,
                age_seconds = first.age_seconds, outcome = outcome.as_str(),
                "{} job: {} -> {}", p.write.action.as_str(), p.write.status_before, p.write.status_after
            ),
        }
        // apply's outcomes are all writes (or their dry-run descriptions).
        entry.outcome = Recorded::of(outcome).unwrap_or(Recorded::Other);
        if dry_run {
            if !quiet {
                dry_entries.push(entry.clone());
            }
        } else if let Err(e) =
            crate::adapters::audit::append_outcome(trail.state_dir, trail.audit_max_size, &entry)
        {
            // The write is made and its intent is on disk: the next start resolves it.
            tracing::error!(
                job_id = p.write.job_id.as_str(),
                "cannot record the outcome of a write: {e}"
            );
            out.audit_error = Some(format!("audit trail not writable: {e}"));
        }
        out.applied.push(Applied {
            write: p.write,
            outcome,
            detail,
            audit: entry,
        });
    }
    // A dry run writes nothing, so a trail that cannot take its notes holds nothing back.
    if let Err(e) =
        crate::adapters::audit::append(trail.state_dir, trail.audit_max_size, &dry_entries)
    {
        tracing::warn!("cannot record dry-run writes in the audit trail: {e}");
    }
    let locked = out.held.iter().filter(|(_, why)| *why == HeldBack::Locked);
    let locked = locked.count();
    if locked > 0 {
        tracing::warn!(
            writes = locked,
            "{locked} write{} held back by other writers' locks (each waits at most {:?}, a scan's writes {:?} in all); tried again at the next scan",
            if locked == 1 { "" } else { "s" },
            crate::adapters::store::LOCK_WAIT,
            LOCK_BUDGET
        );
    }
    for (p, why) in &out.held {
        for &i in &p.findings {
            findings[i].outcome = Outcome::Limited;
            findings[i].held = Some(why.to_string());
        }
    }
    out
}

/// Resolves the writes a crashed jobwarden on this host left with an intent and no outcome:
/// the row tells whether it happened (it has the status the write set, or not). Intents of
/// processes still alive, or of other hosts, are left alone.
pub async fn resolve_pending(
    store: &Store,
    state_dir: &std::path::Path,
    audit_max_size: u64,
) -> usize {
    let pending = match crate::adapters::audit::pending(state_dir) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("cannot read the audit trail to resolve interrupted writes: {e}");
            return 0;
        }
    };
    // Intents of this host's processes, by pid; those whose process is gone are orphans.
    let host = crate::adapters::process::hostname();
    let local: Vec<(i64, &crate::adapters::audit::Entry)> = pending
        .iter()
        .filter_map(|e| {
            let (h, pid) = e.replica.rsplit_once(':')?;
            Some((pid.parse().ok().filter(|_| h == host)?, e))
        })
        .collect();
    let dead = crate::adapters::process::dead_pids(local.iter().map(|(pid, _)| *pid));
    let orphans: Vec<&crate::adapters::audit::Entry> = local
        .into_iter()
        .filter(|(pid, _)| dead.contains(pid))
        .map(|(_, e)| e)
        .collect();
    if orphans.is_empty() {
        return 0;
    }
    let ids: Vec<&str> = orphans.iter().map(|e| e.job_id.as_str()).collect();
    let statuses: std::collections::HashMap<String, String> = match store.lookup(&ids).await {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) => {
            tracing::error!("cannot read the rows of interrupted writes: {e}");
            return 0;
        }
    };
    let outcomes: Vec<crate::adapters::audit::Entry> = orphans
        .iter()
        .map(|intent| {
            let written = statuses.get(&intent.job_id) == Some(&intent.status_after);
            crate::adapters::audit::Entry {
                stage: crate::adapters::audit::Stage::Outcome,
                outcome: if written {
                    Recorded::Applied
                } else {
                    Recorded::NotWritten
                },
                recovered: true,
                ..(*intent).clone()
            }
        })
        .collect();
    match crate::adapters::audit::append(state_dir, audit_max_size, &outcomes) {
        Ok(()) => {
            tracing::warn!(
                writes = outcomes.len(),
                "resolved writes a stopped jobwarden left unrecorded: {} applied, {} not written",
                outcomes
                    .iter()
                    .filter(|e| e.outcome == Recorded::Applied)
                    .count(),
                outcomes
                    .iter()
                    .filter(|e| e.outcome == Recorded::NotWritten)
                    .count()
            );
            outcomes.len()
        }
        Err(e) => {
            tracing::error!("cannot record the outcome of interrupted writes: {e}");
            0
        }
    }
}

/// How one scan's findings are acted on.
#[derive(Debug, Default)]
pub struct Execute<'a> {
    /// Print the writes instead of making them.
    pub dry_run: bool,
    /// `recover --force`.
    pub force: bool,
    /// The daemon is within its startup grace.
    pub grace: bool,
    /// The daemon's confirmation counts; `None` acts on one scan (`recover`).
    pub confirm: Option<&'a mut crate::core::safety::Confirmations>,
    /// `recover --only`: write only these job ids.
    pub only: Option<&'a [String]>,
    /// `recover --exclude`: never write these job ids.
    pub exclude: &'a [String],
    /// Set on SIGTERM/SIGINT: no write starts after it.
    pub stop: Option<&'a Stop>,
    /// The daemon's dry-run writes of the last scan, logged and audited already.
    pub dry_seen: Option<&'a std::collections::HashSet<String>>,
    /// Every write is held back, and why: an operator's pause, or the operator's holds
    /// were lost (see `core::holds::Holds::every_write_held`).
    pub held: Option<HeldBack>,
    /// Jobs an operator snoozed, and until when: never written meanwhile.
    pub snoozed: &'a [(String, f64)],
}

/// What one scan's actions came to.
#[derive(Debug, Default)]
pub struct Executed {
    pub applied: Vec<Applied>,
    /// Writes held back, with why.
    pub limited: Vec<(Write, HeldBack)>,
    /// The last failure to write the audit trail in this scan.
    pub audit_error: Option<String>,
    /// Writes not started because jobwarden was stopping.
    pub interrupted: usize,
    /// The keys of this scan's dry-run writes (see [`Trail::dry_seen`]).
    pub dry_keys: std::collections::HashSet<String>,
}

impl Executed {
    /// Whether any write failed with a database error (`recover` then exits 3).
    pub fn any_error(&self) -> bool {
        self.applied.iter().any(|a| a.outcome == Outcome::Error)
            || self.limited.iter().any(|(_, why)| *why == HeldBack::Locked)
    }

    /// The re-queues that were written: job id and the status written.
    pub fn requeued(&self) -> impl Iterator<Item = (&str, &str)> {
        self.applied
            .iter()
            .filter(|a| a.outcome == Outcome::Applied && a.write.action == Action::Requeue)
            .map(|a| (a.write.job_id.as_str(), a.write.status_after.as_str()))
    }
}

/// Plans the writes of a scan, passes them through the safety gate (and, in the daemon, the
/// confirmation count), applies what is left, records every write in the audit trail, and
/// adds a `mass_stall` finding to the report when one held everything back.
pub async fn execute(
    store: &Store,
    config: &crate::config::Config,
    report: &mut crate::app::scan::Report,
    options: Execute<'_>,
) -> Executed {
    let mut planned = plan(&report.findings, &config.jobs);
    planned.retain(|p| {
        options.only.is_none_or(|ids| ids.contains(&p.write.job_id))
            && !options.exclude.contains(&p.write.job_id)
    });
    let mut waiting = Vec::new();
    if let Some(why) = &options.held {
        waiting.extend(
            std::mem::take(&mut planned)
                .into_iter()
                .map(|p| (p, why.clone())),
        );
    }
    if !options.snoozed.is_empty() {
        let until = |id: &str| {
            options
                .snoozed
                .iter()
                .find(|(s, _)| s == id)
                .map(|(_, u)| *u)
        };
        let (held, rest): (Vec<Planned>, Vec<Planned>) = std::mem::take(&mut planned)
            .into_iter()
            .partition(|p| until(&p.write.job_id).is_some());
        planned = rest;
        waiting.extend(held.into_iter().map(|p| {
            let until = until(&p.write.job_id).unwrap_or_default();
            (p, HeldBack::Snoozed { until })
        }));
    }
    if let Some(confirm) = options.confirm {
        let (ready, wait) = confirm.confirm(planned, &report.findings, config.safety.confirm_scans);
        planned = ready;
        waiting.extend(wait);
    }
    let ctx = crate::core::safety::Context {
        safety: &config.safety,
        active: report.jobs.values().sum::<u64>() as usize,
        force: options.force,
        grace: options.grace,
        now: report.checked_at,
        refusal: store.refusal(),
        suspicion: report
            .suspicion
            .as_deref()
            .filter(|_| report.suspicion_holds),
    };
    let mut gated = crate::core::safety::gate(planned, &report.findings, &ctx);
    gated.limited.extend(waiting);
    crate::core::safety::mark_limited(&mut report.findings, &gated);
    // One line per reason, not per job: a mass stall holds hundreds every scan, and the
    // daemon says it once as an incident (`check`/`recover` print the writes themselves).
    for (why, _, writes) in crate::core::safety::by_reason(&gated.limited) {
        tracing::debug!(
            writes = writes.len(),
            outcome = "limited",
            "held back: {why}"
        );
    }
    let context = crate::adapters::audit::Context {
        environment: config.environment.clone(),
        now: report.checked_at,
        forced: options.force,
        requested_by: None,
        batch: None,
        reason: None,
    };
    let applying = apply(
        store,
        &mut report.findings,
        std::mem::take(&mut gated.allowed),
        options.dry_run,
        &context,
        Trail {
            state_dir: &config.state_dir,
            audit_max_size: config.audit_max_size,
            stop: options.stop,
            dry_seen: options.dry_seen,
        },
    )
    .await;
    if let Some(stall) = gated.mass_stall.take() {
        tracing::debug!(outcome = "limited", "{}", stall.message);
        report.findings.push(stall);
    }
    let interrupted = applying
        .held
        .iter()
        .filter(|(_, why)| *why == HeldBack::Stopping)
        .count();
    Executed {
        applied: applying.applied,
        limited: gated
            .limited
            .into_iter()
            .chain(applying.held)
            .map(|(p, why)| (p.write, why))
            .collect(),
        audit_error: applying.audit_error,
        interrupted,
        dry_keys: applying.dry_keys,
    }
}
