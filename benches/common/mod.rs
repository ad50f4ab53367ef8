//! What the benches share: statistics over samples, number formatting, and the summary lines
//! `scripts/bench-all` collects. Not a bench target of its own (Cargo only discovers
//! `benches/*.rs`).
#![allow(dead_code)] // each bench uses its own part

use std::io::Write as _;
use std::path::Path;

pub fn sorted(ms: &[f64]) -> Vec<f64> {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

pub fn median(ms: &[f64]) -> f64 {
    let v = sorted(ms);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn max(ms: &[f64]) -> f64 {
    ms.iter().copied().fold(f64::NAN, f64::max)
}

/// Nearest-rank 90th percentile.
pub fn p90(ms: &[f64]) -> f64 {
    let v = sorted(ms);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (v.len() * 9).div_ceil(10).max(1);
    v[rank - 1]
}

/// Three significant digits or two decimals, whichever is more.
pub fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// `1000000` as `1,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A whole number from the environment (`1_000_000` allowed), or `default` when unset.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a whole number: {e}")),
        Err(_) => default,
    }
}

/// One row of the combined table `scripts/bench-all` prints: figure, measured, baseline,
/// baseline value, measured / baseline, target; tab-separated.
pub fn summary_line(figure: &str, value: f64, baseline: &str, base: f64, target: &str) -> String {
    format!(
        "{figure}\t{}\t{baseline}\t{}\t{:.2}\t{target}",
        fmt(value),
        fmt(base),
        value / base
    )
}

/// Appends summary lines to `$JW_BENCH_SUMMARY`, when it is set.
pub fn append_summary(lines: &[String]) {
    let Some(path) = std::env::var_os("JW_BENCH_SUMMARY") else {
        return;
    };
    let path = Path::new(&path);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    for line in lines {
        writeln!(file, "{line}").unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// CPU time this process has used, all threads, in nanoseconds.
pub fn process_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The CPU time of a local database server's processes (every thread of every process whose
/// name is one of `names`: `postgres` for PostgreSQL's backends and helpers, `mariadbd` or
/// `mysqld` for MySQL's threads), read from `/proc/<pid>/task/<tid>/schedstat`.
pub struct ServerCpu {
    names: &'static [&'static str],
}

impl ServerCpu {
    pub fn new(names: &'static [&'static str]) -> ServerCpu {
        ServerCpu { names }
    }

    /// Nanoseconds on the CPU so far, per thread: only threads seen at both ends of a
    /// measurement count (see [`ServerCpu::since`]).
    pub fn read(&self) -> std::collections::HashMap<u64, u64> {
        let mut out = std::collections::HashMap::new();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return out;
        };
        for p in procs.flatten() {
            let name = p.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            if !self.names.contains(&comm.trim()) {
                continue;
            }
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for t in tasks.flatten() {
                let tid: u64 = t
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let ns = std::fs::read_to_string(t.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok());
                if let Some(ns) = ns {
                    out.insert(tid, ns);
                }
            }
        }
        out
    }

    /// Nanoseconds the server's threads ran between `before` and `after`.
    pub fn since(
        before: &std::collections::HashMap<u64, u64>,
        after: &std::collections::HashMap<u64, u64>,
    ) -> u64 {
        after
            .iter()
            .filter_map(|(tid, ns)| Some(ns.saturating_sub(*before.get(tid)?)))
            .sum()
    }

    /// Whether any thread of the server was found (the server runs on this machine, and
    /// /proc shows it).
    pub fn visible(&self) -> bool {
        !self.read().is_empty()
    }
}
