//! Printing a scan for people (an aligned table) and for scripts (`--json`).

/// How a command prints its result: the human table, or one JSON object (`--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use crate::app::actions::Applied;
use crate::app::scan::Report;
use crate::core::detect::{format_age, Outcome};
use crate::core::safety::HeldBack;

/// Writes the report as one JSON object and a newline.
pub fn write_json(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    serde_json::to_writer(&mut *out, report).map_err(io::Error::other)?;
    writeln!(out)
}

/// Writes the report as a summary line, a table of findings and the warnings. `outcomes` adds
/// the OUTCOME column (`recover`).
pub fn write_human(out: &mut dyn Write, report: &Report, outcomes: bool) -> io::Result<()> {
    let counts = report
        .jobs
        .iter()
        .map(|(class, n)| format!("{n} {}", class.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let env = report.environment.as_deref().unwrap_or("no environment");
    let n = report.findings.len();
    writeln!(
        out,
        "{env}: {counts}; {n} finding{}, checked {}",
        if n == 1 { "" } else { "s" },
        crate::core::job::rfc3339(report.checked_at)
    )?;
    if n > 0 {
        let mut header = vec![
            "JOB", "STATUS", "PHASE", "AGE", "PROGRESS", "KIND", "RULE", "ACTION",
        ];
        if outcomes {
            header.push("OUTCOME");
        }
        header.push("MESSAGE");
        let rows: Vec<Vec<String>> = report
            .findings
            .iter()
            .map(|f| {
                let mut row = vec![
                    f.job_id.clone(),
                    f.status.clone(),
                    f.phase.clone().unwrap_or_else(|| "-".into()),
                    format_age(f.age_seconds as f64),
                    f.progress
                        .as_deref()
                        .map_or_else(|| "-".into(), summarize_progress),
                    f.kind.as_str().into(),
                    f.rule.clone(),
                    f.action.as_str().into(),
                ];
                if outcomes {
                    row.push(f.outcome.as_str().into());
                }
                row.push(f.message.clone());
                row
            })
            .collect();
        writeln!(out)?;
        write_table(out, &header, &rows)?;
    }
    let with_files: Vec<_> = report
        .findings
        .iter()
        .filter(|f| !f.artifacts.is_empty())
        .collect();
    if !with_files.is_empty() {
        writeln!(out, "\nARTIFACTS")?;
        for f in with_files {
            let files = f
                .artifacts
                .iter()
                .map(|a| format!("{} ({} B)", a.path, a.size))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                out,
                "{} {} ({}): {files}",
                f.job_id,
                f.kind.as_str(),
                f.rule
            )?;
        }
    }
    // One line per owner with its jobs named, as the held-back lines are: the worker that
    // died with 2,000 jobs is one line, not 2,000.
    let mut owners: Vec<(String, Vec<&str>)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut named: HashSet<(usize, &str)> = HashSet::new();
    for f in &report.findings {
        let Some(owner) =
            crate::core::detect::owner_words(f.worker.as_ref(), f.host.as_deref(), f.pid)
        else {
            continue;
        };
        let i = *at.entry(owner).or_insert_with_key(|owner| {
            owners.push((owner.clone(), Vec::new()));
            owners.len() - 1
        });
        // A job with two findings is named once.
        if named.insert((i, f.job_id.as_str())) {
            owners[i].1.push(&f.job_id);
        }
    }
    if !owners.is_empty() {
        writeln!(out, "\nOWNERS")?;
        for (owner, ids) in owners {
            writeln!(
                out,
                "{} job{} ({}): {owner}",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" },
                named_ids(&ids)
            )?;
        }
    }
    if !report.late.is_empty() {
        writeln!(out, "\n{}", late_line(&report.late))?;
    }
    if !report.warnings.is_empty() {
        writeln!(out)?;
        for w in &report.warnings {
            match &w.job_id {
                Some(id) => writeln!(out, "warning: job {id}: {}", w.message)?,
                None => writeln!(out, "warning: {}", w.message)?,
            }
        }
    }
    Ok(())
}

/// How many job ids a line names before it says how many more.
const NAMED_IDS: usize = 10;

/// One line for the jobs first seen late, so an operator knows why they are not flagged yet.
fn late_line(ids: &[String]) -> String {
    let n = ids.len();
    format!(
        "first seen late: {n} job{s} ({named}) show{v} a signal older than {its} rule, but jobwarden counts from its first sight of {them}: not flagged before the rule's limit has passed since then",
        named = named_ids(ids),
        s = if n == 1 { "" } else { "s" },
        v = if n == 1 { "s" } else { "" },
        its = if n == 1 { "its" } else { "their" },
        them = if n == 1 { "it" } else { "them" },
    )
}

/// "1, 2, 3" or "1, 2, ... 10 and 290 more": at most [`NAMED_IDS`] ids.
fn named_ids<S: AsRef<str>>(ids: &[S]) -> String {
    let mut named = ids
        .iter()
        .take(NAMED_IDS)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > NAMED_IDS {
        named.push_str(&format!(" and {} more", ids.len() - NAMED_IDS));
    }
    named
}

/// The writes a safety limit, a snooze or a pause held back, one line per reason (not per
/// job), with the next step for the reasons a person can lift.
pub fn write_held(
    out: &mut dyn Write,
    limited: &[(crate::core::plan::Write, HeldBack)],
) -> io::Result<()> {
    for (text, why, writes) in crate::core::safety::by_reason(limited) {
        let ids: Vec<&str> = writes.iter().map(|w| w.job_id.as_str()).collect();
        writeln!(
            out,
            "held back: {} job{} ({}): {text}",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" },
            named_ids(&ids)
        )?;
        if let Some(next) = next_step(why) {
            writeln!(out, "  next: {next}")?;
        }
    }
    Ok(())
}

/// What a person can do about writes held back for this reason, if anything.
fn next_step(why: &HeldBack) -> Option<&'static str> {
    match why {
        HeldBack::MassStall(_) => Some(
            "if the workers really died, `jobwarden recover --force` (or the console's actions on each job)",
        ),
        HeldBack::PerScanCap(_) => Some("run `jobwarden recover` again, or with `--force` to lift the cap"),
        HeldBack::MinAge { .. } => Some("run `jobwarden recover` again once the findings are older than `[safety] min_age`"),
        HeldBack::Suspicion(_) => Some(
            "set `[database] timezone` (see `jobwarden validate --connect`); if the ages are right, `jobwarden recover --force`",
        ),
        HeldBack::TimeUnknown(_) => Some("set `[database] timezone` (see `jobwarden validate --connect`)"),
        HeldBack::HoldsLost(_) => Some(
            "check the operator's pauses and snoozes are as they should be, then end the hold with `jobwarden pause --for 0s`",
        ),
        HeldBack::Locked => Some("another writer holds those rows: run `jobwarden recover` again once it lets go"),
        _ => None,
    }
}

/// The closing line of `recover`: what was written, what raced, what was held back, what only
/// alerts.
pub fn recover_summary(report: &Report, applied: &[Applied], held: usize) -> String {
    let count = |o: Outcome| applied.iter().filter(|a| a.outcome == o).count();
    let alert_only = report
        .findings
        .iter()
        .filter(|f| f.action == crate::config::Action::Alert && !f.job_id.is_empty())
        .map(|f| f.job_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let mut parts = vec![format!("{} written", count(Outcome::Applied))];
    for (n, what) in [
        (count(Outcome::DryRun), "would be written (dry run)"),
        (
            count(Outcome::Raced),
            "raced (the row changed since it was read: left alone)",
        ),
        (count(Outcome::Error), "refused by the database"),
        (held, "held back"),
        (alert_only, "left alone (their rule only alerts)"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let left = if left_for_a_person(report) {
        "findings remain"
    } else {
        "nothing is left to do"
    };
    format!("recover: {}; {left}", parts.join(", "))
}

/// Whether a finding is left for a person after `recover`: one that was not written nor found
/// alive again (exit 1; else 0).
pub fn left_for_a_person(report: &Report) -> bool {
    report
        .findings
        .iter()
        .any(|f| !matches!(f.outcome, Outcome::Applied | Outcome::Raced))
}

/// Writes what `recover` did, one line per write.
pub fn write_applied(out: &mut dyn Write, applied: &[Applied]) -> io::Result<()> {
    if applied.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    for a in applied {
        let verb = match a.outcome {
            Outcome::DryRun => "would write",
            Outcome::Applied => "wrote",
            Outcome::Raced => "raced",
            Outcome::Error => "error",
            Outcome::Limited => "held back",
            Outcome::None => "skipped",
        };
        writeln!(out, "{verb}: job {}: {}", a.write.job_id, a.detail)?;
    }
    Ok(())
}

fn write_table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// A short form of a progress value: `[3 items]` for a JSON array, else the value cut to 16
/// characters.
fn summarize_progress(value: &str) -> String {
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(value) {
        let n = items.len();
        return format!("[{n} item{}]", if n == 1 { "" } else { "s" });
    }
    let mut s: String = value.chars().take(16).collect();
    if value.chars().count() > 16 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_first_seen_late_are_named_on_one_line() {
        assert_eq!(
            late_line(&["7".into()]),
            "first seen late: 1 job (7) shows a signal older than its rule, but jobwarden counts from its first sight of it: not flagged before the rule's limit has passed since then"
        );
        let many: Vec<String> = (1..=12).map(|i| i.to_string()).collect();
        assert!(late_line(&many).starts_with(
            "first seen late: 12 jobs (1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more) show a signal"
        ));
    }

    #[test]
    fn held_writes_are_told_once_per_reason_with_the_next_step() {
        let write = |id: usize| crate::core::plan::Write {
            job_id: id.to_string(),
            action: crate::config::Action::Fail,
            status_before: "running".into(),
            status_after: "failed".into(),
            guard: Default::default(),
            reason: String::new(),
            rule: String::new(),
            bump_attempts: false,
        };
        let stall = HeldBack::MassStall("302 of 303 active jobs look stuck at once".into());
        let mut limited: Vec<_> = (1..=302).map(|i| (write(i), stall.clone())).collect();
        limited.push((
            write(303),
            HeldBack::MinAge {
                age: 5,
                min_age: 60,
            },
        ));
        let mut out = Vec::new();
        write_held(&mut out, &limited).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "held back: 302 jobs (1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 292 more): 302 of 303 active jobs look stuck at once",
                "  next: if the workers really died, `jobwarden recover --force` (or the console's actions on each job)",
                "held back: 1 job (303): younger than min_age (5s < 60s)",
                "  next: run `jobwarden recover` again once the findings are older than `[safety] min_age`",
            ]
        );
    }

    #[test]
    fn progress_is_summarized() {
        assert_eq!(summarize_progress("[\"a\",\"b\"]"), "[2 items]");
        assert_eq!(summarize_progress("7"), "7");
        assert_eq!(
            summarize_progress("abcdefghijklmnopqrstu"),
            "abcdefghijklmnop…"
        );
    }
}
