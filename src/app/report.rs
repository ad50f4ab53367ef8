//! Printing a scan for people (an aligned table) and for scripts (`--json`).

/// How a command prints its result: the human table, or one JSON object (`--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

use std::io::{self, Write};

use crate::app::actions::Applied;
use crate::app::scan::Report;
use crate::core::detect::{format_age, Outcome};

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
    let mut named = ids
        .iter()
        .take(NAMED_IDS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if n > NAMED_IDS {
        named.push_str(&format!(" and {} more", n - NAMED_IDS));
    }
    format!(
        "first seen late: {n} job{s} ({named}) show{v} a signal older than {its} rule, but jobwarden counts from its first sight of {them}: not flagged before the rule's limit has passed since then",
        s = if n == 1 { "" } else { "s" },
        v = if n == 1 { "s" } else { "" },
        its = if n == 1 { "its" } else { "their" },
        them = if n == 1 { "it" } else { "them" },
    )
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
    fn progress_is_summarized() {
        assert_eq!(summarize_progress("[\"a\",\"b\"]"), "[2 items]");
        assert_eq!(summarize_progress("7"), "7");
        assert_eq!(
            summarize_progress("abcdefghijklmnopqrstu"),
            "abcdefghijklmnop…"
        );
    }
}
