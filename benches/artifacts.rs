//! What the artifact index costs at 100,000 files in 10,000 job folders, next to 1,000 files in
//! 100 folders and next to the bare filesystem work it cannot avoid.
//!
//! In a temp dir (`TMPDIR`, default /tmp) it builds two trees for the pattern `{job_id}/**`:
//! `JW_BENCH_FOLDERS` (default 10,000) numeric job folders and 100 job folders, 10 small files in
//! each (100 to 400 bytes), one `draft.pdf.part` in every tenth active folder. Building them is
//! timed and shown, but it is not jobwarden's cost. Each tree gets its own SQLite database: a
//! `jobs` table (index on `status`) with 100 `running` rows whose folders exist, spread evenly
//! over the ids, and every other id as a `completed` row, so no id is an orphan.
//!
//! Then, in this order:
//!   1. Index memory: VmRSS (from /proc/self/status) and the live heap (a counting global
//!      allocator in this bench) before and after `Index::new` + `reconcile` of each tree, the
//!      index kept alive; `malloc_trim(0)` before each reading, as the daemon does after a scan.
//!   2. The initial walk: `Index::new` + `reconcile` (what `commands::artifact_indexes` does),
//!      `JW_BENCH_WALKS` times (default 5) per tree, alternating with the baseline, a bare
//!      recursive `std::fs::read_dir` + `metadata` walk of the same tree (the same syscalls,
//!      none of jobwarden's bookkeeping). The page cache is warm: the trees were just written.
//!   3. One event's work: `Index::refresh` of one existing file, 201 times per tree.
//!   4. Steady-state scans, `Scanner::scan` through the SQLite `Store`, five scanners per
//!      iteration so that drift hits each alike: `watch = "auto"` on each tree (the index stays
//!      in events mode, as between two reconciles: no walk), `watch = "poll"` on each tree (a
//!      walk every scan), and the 100,000-file table without `[[artifacts]]`. `JW_BENCH_WARMUP`
//!      (default 3) untimed iterations first (the first scan looks the new ids up in the table),
//!      then `JW_BENCH_ITERS` (default 30) timed.
//!   5. The watcher: a quiet window first (the baseline for CPU), then `artifacts::watch` on the
//!      large tree (notify, debounced), 1 s to settle and one untimed probe file, then
//!      `JW_BENCH_EVENTS` (default 20) times: write `<id>/new-<n>.md` and look at the shared
//!      index every 1 ms until `files_of` lists it (the baseline is the debounce window the
//!      watcher waits for, `DEBOUNCE`, 100 ms). Then a quiet window with the watcher running:
//!      this process's CPU, and how long the index lock stayed taken (tried every 1 ms, never
//!      waited for); then `JW_BENCH_WARMUP` untimed and up to `JW_BENCH_ITERS` timed scans on
//!      the watcher's own index, as the daemon makes them (at most 60 s in all). The waiting and sampling run on threads of their own
//!      (`spawn_blocking`), so a runtime worker kept busy by the watcher cannot bias them.
//!
//! The result is one markdown table on stdout, every figure against a baseline measured in the
//! same run. Speed and memory are reported here, never asserted. Progress notes go to stderr.
//!
//! Run it with `cargo bench --bench artifacts` or `scripts/bench-artifacts`. Built by
//! `cargo test --benches` (or `--all-targets`) it is started without `--bench` and exits at
//! once: it is not a test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

mod common;

use common::{
    append_summary, env_number as number, fmt, max, median, p90, summary_line, thousands,
};
use jobwarden::adapters::artifacts::{self, Index};
use jobwarden::adapters::store::Store;
use jobwarden::app::scan::Scanner;
use jobwarden::config::{self, Config};
use tokio::time::Instant;

/// The debounce window of `artifacts::watch` (`DEBOUNCE` in src/adapters/artifacts.rs).
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Files in every job folder.
const FILES_PER_FOLDER: u64 = 10;
/// Folders of the small tree.
const SMALL_FOLDERS: u64 = 100;
/// `running` rows with a folder, in each table.
const ACTIVE: u64 = 100;
/// How long a created file may take to show up before it counts as missed.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first (untimed) created file may take to show up after `watch()`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// The quiet windows around the watcher.
const QUIET: Duration = Duration::from_secs(5);
/// At most this long for the scans on the watcher's index (checked between scans).
const SCAN_BUDGET: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Live heap bytes, counted by a global allocator wrapped around the system one.

static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated around it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

fn live_heap() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64
}

/// This process's VmRSS, bytes.
fn rss() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0)
        .expect("VmRSS in /proc/self/status")
}

/// Returns free heap pages to the system, as the daemon does after each scan.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// CPU time this process has used (user + system, every thread), ms.
fn cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(
            libc::getrusage(libc::RUSAGE_SELF, &mut usage),
            0,
            "getrusage"
        );
        usage
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// What a quiet window cost: CPU, and how long the index lock stayed taken.
struct Quiet {
    /// Percent of one core.
    cpu_percent: f64,
    /// Longest stretch of 1 ms samples that found the index locked, ms.
    longest_locked_ms: f64,
    /// Whether that stretch was still going when the window ended.
    locked_at_end: bool,
    /// Share of the samples that found the index locked, percent.
    locked_percent: f64,
}

/// The index, if its lock is free right now.
fn try_lock(shared: &artifacts::Shared) -> Option<std::sync::MutexGuard<'_, Index>> {
    match shared.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Sits still for `window`, trying the index lock (when there is one) every 1 ms without
/// waiting for it, and measures this process's CPU and how long the lock stayed taken. Runs on
/// a thread of its own (`spawn_blocking`): a runtime worker stuck in the watcher's synchronous
/// work delays Tokio's timers, and would bias the samples.
async fn quiet_window(shared: Option<&artifacts::Shared>, window: Duration) -> Quiet {
    let shared = shared.cloned();
    tokio::task::spawn_blocking(move || quiet_window_blocking(shared.as_ref(), window))
        .await
        .expect("the quiet window's thread")
}

fn quiet_window_blocking(shared: Option<&artifacts::Shared>, window: Duration) -> Quiet {
    let cpu0 = cpu_ms();
    let started = Instant::now();
    let (mut longest, mut samples, mut locked) = (0.0_f64, 0_u32, 0_u32);
    let mut locked_since: Option<Instant> = None;
    while started.elapsed() < window {
        if let Some(shared) = shared {
            samples += 1;
            if try_lock(shared).is_some() {
                if let Some(since) = locked_since.take() {
                    longest = longest.max(ms(since));
                }
            } else {
                locked += 1;
                locked_since.get_or_insert_with(Instant::now);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = ms(started);
    let locked_at_end = locked_since.is_some();
    if let Some(since) = locked_since {
        longest = longest.max(ms(since));
    }
    Quiet {
        cpu_percent: (cpu_ms() - cpu0) / elapsed * 100.0,
        longest_locked_ms: longest,
        locked_at_end,
        locked_percent: f64::from(locked) / f64::from(samples.max(1)) * 100.0,
    }
}

// ---------------------------------------------------------------------------------------------

struct Settings {
    folders: u64,
    iters: usize,
    warmup: usize,
    walks: usize,
    events: usize,
}

/// One tree of job folders and what went into it.
struct Tree {
    label: &'static str,
    root: PathBuf,
    folders: u64,
    files: u64,
    partials: u64,
    bytes: u64,
    active: Vec<u64>,
    build_ms: f64,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "benches/artifacts: not started by `cargo bench`; skipping (run `scripts/bench-artifacts`)"
        );
        return;
    }
    // As `jobwarden run`: two runtime workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start the Tokio runtime");
    runtime.block_on(run(settings()));
    // The watcher task may still be busy in a synchronous refresh; do not wait for it.
    runtime.shutdown_background();
}

fn settings() -> Settings {
    let folders = number("JW_BENCH_FOLDERS", 10_000);
    assert!(
        folders >= SMALL_FOLDERS,
        "JW_BENCH_FOLDERS must be at least {SMALL_FOLDERS}"
    );
    let count = |name: &str, default: u64| -> usize {
        let n = usize::try_from(number(name, default)).expect("fits usize");
        assert!(n > 0, "{name} must be at least 1");
        n
    };
    Settings {
        folders,
        iters: count("JW_BENCH_ITERS", 30),
        warmup: usize::try_from(number("JW_BENCH_WARMUP", 3)).expect("fits usize"),
        walks: count("JW_BENCH_WALKS", 5),
        events: count("JW_BENCH_EVENTS", 20),
    }
}

/// The ids of the `running` rows: `ACTIVE` of them, spread evenly over 1..=folders.
fn active_ids(folders: u64) -> Vec<u64> {
    let n = ACTIVE.min(folders);
    (0..n).map(|k| 1 + k * folders / n).collect()
}

/// Writes `folders` job folders of `FILES_PER_FOLDER` small files under `root`.
fn make_tree(label: &'static str, root: PathBuf, folders: u64) -> Tree {
    let started = Instant::now();
    let active = active_ids(folders);
    let partial_owners: Vec<u64> = active.iter().copied().step_by(10).collect();
    let (mut files, mut partials, mut bytes) = (0, 0, 0);
    std::fs::create_dir_all(&root).expect("create the tree's root");
    for id in 1..=folders {
        let dir = root.join(id.to_string());
        std::fs::create_dir(&dir).expect("create a job folder");
        for i in 0..FILES_PER_FOLDER {
            let name = match i {
                0 => "report.md".to_string(),
                1 => "summary.json".to_string(),
                9 if partial_owners.contains(&id) => "draft.pdf.part".to_string(),
                9 => "log.txt".to_string(),
                n => format!("data-{n}.csv"),
            };
            let line = format!("job {id}, file {i}: some small output of the research job\n");
            let text = line.repeat(2 + ((id + i) % 6) as usize);
            std::fs::write(dir.join(&name), &text).expect("write a file");
            files += 1;
            bytes += text.len() as u64;
            partials += u64::from(name.ends_with(".part"));
        }
    }
    Tree {
        label,
        root,
        folders,
        files,
        partials,
        bytes,
        active,
        build_ms: ms(started),
    }
}

/// A bare recursive walk: `read_dir` of every folder and `metadata` of every file, the
/// syscalls `Index::reconcile` makes, without its bookkeeping. Returns (files, bytes).
fn bare_walk(root: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let m = entry.metadata().expect("metadata");
                files += 1;
                bytes += m.len();
            }
        }
    }
    (files, bytes)
}

/// Creates the tree's SQLite database: `ACTIVE` running rows, every other id completed.
async fn make_db(path: &Path, tree: &Tree) -> f64 {
    use sqlx::sqlite::SqlitePoolOptions;
    let started = Instant::now();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .expect("create the SQLite database");
    let active = tree
        .active
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let ts = |ago: &str| format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '{ago}')");
    let sql = format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT, created_at TEXT, updated_at TEXT, completed_at TEXT);
         CREATE INDEX jobs_status_idx ON jobs (status);
         INSERT INTO jobs (id, status, created_at, updated_at, completed_at)
             WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n})
             SELECT x, 'completed', {created}, {done}, {done} FROM g;
         UPDATE jobs SET status = 'running', updated_at = {now}, completed_at = NULL
             WHERE id IN ({active});",
        n = tree.folders,
        created = ts("-3 hours"),
        done = ts("-2 hours"),
        now = ts("+0 seconds"),
    );
    sqlx::raw_sql(&sql)
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("filling {} failed: {e}", path.display()));
    pool.close().await;
    ms(started)
}

fn bench_config(dir: &Path, db: &Path, tree: &Tree, watch: &str) -> Config {
    let text = format!(
        r#"
[database]
url = "sqlite://{db}"

[jobs]
table = "jobs"
heartbeat_at = "updated_at"
finished_at = "completed_at"

[jobs.statuses]
running = ["running"]
succeeded = ["completed"]

[[artifacts]]
name = "reports"
root = "{root}"
pattern = "{{job_id}}/**"
partial = ["*.part"]
required = []
watch = "{watch}"

[state]
dir = "{state}"
"#,
        db = db.display(),
        root = tree.root.display(),
        state = dir.join("state").display(),
    );
    let path = dir.join(format!("jobwarden-{}-{watch}.toml", tree.label));
    config::parse(&text, &path, None, &|_| None)
        .unwrap_or_else(|e| panic!("the bench config does not load: {e}"))
}

/// An index as `commands::artifact_indexes` builds it: `Index::new` + `reconcile`.
fn build_index(config: &Config) -> Index {
    let mut index = Index::new(&config.artifacts[0]);
    index.reconcile();
    index
}

/// One scanner and its timings.
struct ScanRun {
    config: Config,
    scanner: Scanner,
    ms: Vec<f64>,
    artifact_ms: Vec<f64>,
    findings: usize,
}

impl ScanRun {
    async fn new(config: Config, index: Option<Index>) -> ScanRun {
        let store = Store::connect(&config)
            .await
            .expect("jobwarden connects to the bench database");
        let mut scanner = Scanner::new(store);
        if let Some(index) = index {
            scanner = scanner.with_artifacts(vec![Arc::new(Mutex::new(index))]);
        }
        ScanRun {
            config,
            scanner,
            ms: Vec::new(),
            artifact_ms: Vec::new(),
            findings: 0,
        }
    }

    async fn scan(&mut self, timed: bool) {
        let t = Instant::now();
        let report = self
            .scanner
            .scan(&self.config, None)
            .await
            .expect("scanner.scan()");
        let elapsed = ms(t);
        self.findings = report.findings.len();
        if timed {
            self.ms.push(elapsed);
            if let Some(s) = report.artifact_seconds {
                self.artifact_ms.push(s * 1000.0);
            }
        }
    }

    fn mode(&self) -> &'static str {
        self.scanner
            .artifacts()
            .first()
            .map_or("none", |s| artifacts::lock(s).mode.as_str())
    }
}

/// Median time of `Index::refresh` of one existing file, µs.
fn refresh_us(index: &mut Index, path: &Path) -> f64 {
    let before = index.len();
    let mut us = Vec::new();
    for _ in 0..201 {
        let t = Instant::now();
        index.refresh(path);
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    assert_eq!(
        index.len(),
        before,
        "refresh of an unchanged file keeps the index"
    );
    median(&us)
}

/// What `artifacts::watch` did on the large tree.
struct Latency {
    /// From `watch()` being called to its return (placing the watch, then the one walk), ms.
    watch_ms: f64,
    /// From `watch()` being called to the probe file being written, ms.
    probe_at_ms: f64,
    /// From `watch()` being called to the probe file showing up, ms.
    ready_ms: Option<f64>,
    mode_before: &'static str,
    mode_after: &'static str,
    ms: Vec<f64>,
    missed: usize,
    /// The same process, quiet, before `watch()` and after the timed files.
    before: Quiet,
    after: Quiet,
    /// Scans whose index is the watcher's, ms.
    scans: Vec<f64>,
}

/// Writes `root/rel` and waits up to `timeout` for `files_of(id)` to list it, looking every
/// 1 ms without waiting for the index lock (so the timeout holds while the watcher keeps it).
/// Returns the time from just before the write to the listing, ms. On a thread of its own, as
/// the quiet window.
async fn create_and_wait(
    shared: &artifacts::Shared,
    root: &Path,
    id: String,
    rel: String,
    timeout: Duration,
) -> Option<f64> {
    let shared = shared.clone();
    let path = root.join(&rel);
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        std::fs::write(&path, format!("new file {rel}\n")).expect("write a new file");
        while started.elapsed() < timeout {
            let seen = try_lock(&shared).is_some_and(|index| {
                index
                    .files_of(&id, jobwarden::adapters::clock::Clock::System.now())
                    .iter()
                    .any(|f| f.path == rel)
            });
            if seen {
                return Some(ms(started));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    })
    .await
    .expect("the waiting thread")
}

/// The index's mode, read without waiting more than `PROBE_TIMEOUT` for its lock.
async fn mode_of(shared: &artifacts::Shared) -> &'static str {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        while started.elapsed() < PROBE_TIMEOUT {
            if let Some(index) = try_lock(&shared) {
                return index.mode.as_str();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        "unknown (index locked)"
    })
    .await
    .expect("the waiting thread")
}

async fn event_latency(
    config: &Config,
    tree: &Tree,
    events: usize,
    warmup: usize,
    scans: usize,
) -> Latency {
    let spec = &config.artifacts[0];
    let before = quiet_window(None, QUIET).await;
    let started = Instant::now();
    let (shared, task) = artifacts::watch(spec).await;
    let watch_ms = ms(started);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mode_before = mode_of(&shared).await;
    let probe_id = tree.active[0].to_string();
    let probe = format!("{probe_id}/probe.md");
    let probe_at = ms(started);
    let ready_ms = create_and_wait(&shared, &tree.root, probe_id, probe, PROBE_TIMEOUT)
        .await
        .map(|t| probe_at + t);
    eprintln!(
        "benches/artifacts: probe file {}",
        ready_ms.map_or("never listed".into(), |t| format!(
            "listed {t:.0} ms after watch()"
        ))
    );
    let mut out = Vec::new();
    let mut missed = 0;
    if ready_ms.is_some() {
        for n in 0..events as u64 {
            // Spread over the tree: a different folder each time.
            let id = (1 + (n * 4_801) % tree.folders).to_string();
            let rel = format!("{id}/new-{n}.md");
            match create_and_wait(&shared, &tree.root, id, rel, EVENT_TIMEOUT).await {
                Some(t) => out.push(t),
                None => {
                    missed += 1;
                    if missed == 3 {
                        break;
                    }
                }
            }
            // Let the watcher go quiet before the next file.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!("benches/artifacts: quiet window, watcher running");
    let after = quiet_window(Some(&shared), QUIET).await;
    // Scans as the daemon makes them: on the watcher's index (a scan waits for its lock).
    eprintln!("benches/artifacts: scans on the watcher's index");
    let store = Store::connect(config)
        .await
        .expect("jobwarden connects to the bench database");
    let mut scanner = Scanner::new(store).with_artifacts(vec![shared.clone()]);
    let mut scan_ms = Vec::new();
    let budget = Instant::now();
    let mut done = 0;
    // The first `warmup` scans are not kept: the first looks every new id up in the table.
    while scan_ms.len() < scans && budget.elapsed() < SCAN_BUDGET {
        let t = Instant::now();
        scanner.scan(config, None).await.expect("scanner.scan()");
        if done >= warmup {
            scan_ms.push(ms(t));
        }
        done += 1;
    }
    scanner.store().close().await;
    let mode_after = mode_of(&shared).await;
    // The task may be deep in a synchronous refresh that an abort cannot interrupt: it is not
    // waited for (main shuts the runtime down in the background).
    task.abort();
    Latency {
        watch_ms,
        probe_at_ms: probe_at,
        ready_ms,
        mode_before,
        mode_after,
        ms: out,
        missed,
        before,
        after,
        scans: scan_ms,
    }
}

/// The commit the bench was built from, and whether src/ had uncommitted changes.
fn build_id() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--", "src"]).is_some_and(|s| !s.is_empty());
            format!(
                "`{head}`{}",
                if dirty {
                    " with uncommitted changes in src/"
                } else {
                    ""
                }
            )
        }
        None => "unknown (no git)".into(),
    }
}

fn inotify_limit(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/fs/inotify/{name}"))
        .map_or_else(|_| "?".to_string(), |v| v.trim().to_string())
}

async fn run(s: Settings) {
    let dir = tempfile::Builder::new()
        .prefix("jw-bench-artifacts-")
        .tempdir()
        .expect("create a temp dir");
    eprintln!(
        "benches/artifacts: building the trees under {}",
        dir.path().display()
    );
    let small = make_tree("small", dir.path().join("small"), SMALL_FOLDERS);
    let big = make_tree("large", dir.path().join("big"), s.folders);
    let small_db = dir.path().join("jobs-small.db");
    let big_db = dir.path().join("jobs-big.db");
    let small_db_ms = make_db(&small_db, &small).await;
    let big_db_ms = make_db(&big_db, &big).await;
    let small_auto = bench_config(dir.path(), &small_db, &small, "auto");
    let big_auto = bench_config(dir.path(), &big_db, &big, "auto");
    let small_poll = bench_config(dir.path(), &small_db, &small, "poll");
    let big_poll = bench_config(dir.path(), &big_db, &big, "poll");

    // 1. Memory, first, before anything else has grown the heap.
    eprintln!("benches/artifacts: index memory");
    let measure = |config: &Config| -> (Index, f64, f64) {
        trim();
        let (rss0, heap0) = (rss(), live_heap());
        let index = build_index(config);
        trim();
        (index, rss() - rss0, live_heap() - heap0)
    };
    let (mut small_index, small_rss, small_heap) = measure(&small_auto);
    let (mut big_index, big_rss, big_heap) = measure(&big_auto);
    assert_eq!(
        small_index.len() as u64,
        small.files,
        "every small file indexed"
    );
    assert_eq!(
        big_index.len() as u64,
        big.files,
        "every large file indexed"
    );

    // 2. The initial walk against the bare walk.
    eprintln!(
        "benches/artifacts: {} initial walks of each tree, alternating with the bare walk",
        s.walks
    );
    let (mut walk_small, mut walk_big, mut bare_small, mut bare_big) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..s.walks {
        for (tree, config, walk, bare) in [
            (&small, &small_auto, &mut walk_small, &mut bare_small),
            (&big, &big_auto, &mut walk_big, &mut bare_big),
        ] {
            let mut jobwarden = || {
                let t = Instant::now();
                let index = build_index(config);
                walk.push(ms(t));
                assert_eq!(index.len() as u64, tree.files);
                drop(index);
            };
            let mut plain = || {
                let t = Instant::now();
                let (files, bytes) = bare_walk(&tree.root);
                bare.push(ms(t));
                assert_eq!((files, bytes), (tree.files, tree.bytes));
            };
            if i % 2 == 0 {
                plain();
                jobwarden();
            } else {
                jobwarden();
                plain();
            }
        }
    }
    trim();

    // 3. One event's work on the index.
    let one_file = |tree: &Tree| tree.root.join(format!("{}/report.md", tree.active[0]));
    let refresh_small = refresh_us(&mut small_index, &one_file(&small));
    let refresh_big = refresh_us(&mut big_index, &one_file(&big));

    // 4. Steady-state scans.
    let poll_small_index = build_index(&small_poll);
    let poll_big_index = build_index(&big_poll);
    let mut runs = [
        ScanRun::new(small_auto.clone(), Some(small_index)).await,
        ScanRun::new(big_auto.clone(), Some(big_index)).await,
        ScanRun::new(small_poll.clone(), Some(poll_small_index)).await,
        ScanRun::new(big_poll.clone(), Some(poll_big_index)).await,
        ScanRun::new(big_auto.clone(), None).await,
    ];
    eprintln!(
        "benches/artifacts: {} warm-up + {} timed iterations of five scans",
        s.warmup, s.iters
    );
    for i in 0..s.warmup + s.iters {
        for run in runs.iter_mut() {
            run.scan(i >= s.warmup).await;
        }
    }
    let modes: Vec<&str> = runs.iter().map(ScanRun::mode).collect();
    let findings: Vec<usize> = runs.iter().map(|r| r.findings).collect();
    for run in &runs {
        run.scanner.store().close().await;
    }
    let [ev_small, ev_big, poll_small, poll_big, no_artifacts] = &runs;

    // 5. From a file's creation to the index.
    eprintln!(
        "benches/artifacts: event latency, {} files, watching {} folders",
        s.events, big.folders
    );
    let latency = event_latency(&big_auto, &big, s.events, s.warmup, s.iters).await;

    // The report.
    let command = format!(
        "JW_BENCH_FOLDERS={} JW_BENCH_WALKS={} JW_BENCH_ITERS={} JW_BENCH_WARMUP={} JW_BENCH_EVENTS={} cargo bench --bench artifacts",
        s.folders, s.walks, s.iters, s.warmup, s.events
    );
    let big_name = format!("{} files", thousands(big.files));
    let small_name = format!("{} files", thousands(small.files));
    println!("## jobwarden artifact index benchmark");
    println!();
    println!(
        "- command: `{command}` (or `scripts/bench-artifacts` with the same environment); build {}",
        build_id()
    );
    for tree in [&small, &big] {
        println!(
            "- tree `{}`: {} files ({} `*.part`, {:.1} MiB) in {} job folders, pattern `{{job_id}}/**`; written in {:.0} ms (not jobwarden's cost)",
            tree.label,
            thousands(tree.files),
            tree.partials,
            tree.bytes as f64 / MIB,
            thousands(tree.folders),
            tree.build_ms
        );
    }
    println!(
        "- SQLite tables: {ACTIVE} `running` rows with folders, the other ids `completed`, index on `status`; built in {small_db_ms:.0} ms and {big_db_ms:.0} ms"
    );
    println!(
        "- scans: {} warm-up then {} timed iterations of five scanners in turn; modes at the end: {}; findings per scan: {}",
        s.warmup,
        s.iters,
        modes.join(", "),
        findings
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "- `artifacts::watch` on the {big_name}: `watch()` (placing the watch, then its one walk) returned in {:.0} ms; index mode 1 s later `{}`, at the end `{}`; the untimed probe file was listed {}; {} of {} timed files listed within {} s; inotify max_user_watches {}, max_user_instances {}",
        latency.watch_ms,
        latency.mode_before,
        latency.mode_after,
        latency
            .ready_ms
            .map_or(format!("never within {} s (timed files skipped)", PROBE_TIMEOUT.as_secs()), |t| format!("{t:.0} ms after `watch()` was called (written at {:.0} ms)", latency.probe_at_ms)),
        latency.ms.len(),
        if latency.ready_ms.is_some() { latency.ms.len() + latency.missed } else { 0 },
        EVENT_TIMEOUT.as_secs(),
        inotify_limit("max_user_watches"),
        inotify_limit("max_user_instances"),
    );
    println!();
    println!("| figure | measured | baseline | baseline value | measured / baseline | target |");
    println!("| --- | ---: | --- | ---: | ---: | --- |");
    // The headline rows, also appended to $JW_BENCH_SUMMARY for scripts/bench-all.
    let mut headlines = Vec::new();
    let mut row = |figure: String, value: f64, baseline: String, base: f64, target: &str| {
        println!(
            "| {figure} | {} | {baseline} | {} | {:.2} | {target} |",
            fmt(value),
            fmt(base),
            value / base
        );
        let headline = [
            "initial walk",
            "index memory, ",
            "scan, `watch = \"auto\"` (events",
            "file created",
        ]
        .iter()
        .any(|p| figure.starts_with(p))
            && !figure.contains("live heap")
            && !figure.contains(", max of")
            && !figure.contains(", p90 of");
        if headline {
            headlines.push(summary_line(
                &format!("artifacts: {figure}"),
                value,
                &baseline,
                base,
                target,
            ));
        }
    };
    let walks = s.walks;
    row(
        format!("initial walk (`Index::new` + `reconcile`), {big_name}, median of {walks}, ms"),
        median(&walk_big),
        format!("same, {small_name}"),
        median(&walk_small),
        "< 2,000 ms",
    );
    row(
        format!("initial walk, {big_name}, median of {walks}, ms"),
        median(&walk_big),
        "bare `read_dir` + `metadata` walk of the same tree".into(),
        median(&bare_big),
        "",
    );
    row(
        format!("initial walk, {small_name}, median of {walks}, ms"),
        median(&walk_small),
        "bare walk of the same tree".into(),
        median(&bare_small),
        "",
    );
    row(
        format!("index memory, {big_name}: VmRSS after - before, MiB"),
        big_rss / MIB,
        format!("same, {small_name}"),
        small_rss / MIB,
        "< 40 MiB",
    );
    row(
        format!("index memory, {big_name}: live heap after - before, MiB"),
        big_heap / MIB,
        format!("same, {small_name}"),
        small_heap / MIB,
        "",
    );
    row(
        format!("scan, `watch = \"auto\"` (events, no walk), {big_name}, median ms"),
        median(&ev_big.ms),
        format!("same, {small_name}"),
        median(&ev_small.ms),
        "about 1",
    );
    row(
        format!("scan, `watch = \"auto\"`, {big_name}, p90 ms"),
        p90(&ev_big.ms),
        format!("same, {small_name}"),
        p90(&ev_small.ms),
        "about 1",
    );
    row(
        format!("of which the artifact part (`report.artifact_seconds`), {big_name}, median ms"),
        median(&ev_big.artifact_ms),
        format!("same, {small_name}"),
        median(&ev_small.artifact_ms),
        "",
    );
    row(
        format!("scan, `watch = \"auto\"`, {big_name}, median ms"),
        median(&ev_big.ms),
        "scan of the same table without `[[artifacts]]`".into(),
        median(&no_artifacts.ms),
        "",
    );
    row(
        format!("scan, `watch = \"poll\"` (a walk every scan), {big_name}, median ms"),
        median(&poll_big.ms),
        format!("same, {small_name}"),
        median(&poll_small.ms),
        "",
    );
    row(
        format!("scan, `watch = \"poll\"`, {big_name}, median ms"),
        median(&poll_big.ms),
        format!("scan, `watch = \"auto\"`, {big_name}"),
        median(&ev_big.ms),
        "",
    );
    row(
        format!("one event's work: `Index::refresh` of one file, {big_name}, median µs"),
        refresh_big,
        format!("same, {small_name}"),
        refresh_small,
        "",
    );
    if latency.ms.is_empty() {
        println!(
            "| file created -> listed by `files_of`, `artifacts::watch`, {big_name} | never seen | debounce window (`DEBOUNCE`) | {} | | |",
            fmt(DEBOUNCE.as_secs_f64() * 1000.0)
        );
    } else {
        for (what, value) in [
            ("median", median(&latency.ms)),
            ("p90", p90(&latency.ms)),
            ("max", max(&latency.ms)),
        ] {
            row(
                format!(
                    "file created -> listed by `files_of`, `artifacts::watch`, {big_name}, {what} of {} ms",
                    latency.ms.len()
                ),
                value,
                "debounce window (`DEBOUNCE`)".into(),
                DEBOUNCE.as_secs_f64() * 1000.0,
                "",
            );
        }
    }
    let (b, a) = (&latency.before, &latency.after);
    println!(
        "| CPU while quiet, `artifacts::watch` running on the {big_name}, % of one core over {} s | {} | same process, same window before `watch()` | {} | {} | near zero |",
        QUIET.as_secs(),
        fmt(a.cpu_percent),
        fmt(b.cpu_percent),
        if b.cpu_percent > 0.0 { format!("{:.2}", a.cpu_percent / b.cpu_percent) } else { "n/a".into() },
    );
    println!(
        "| longest the index stayed locked in that window (tried every 1 ms), ms | {}{} | debounce window (`DEBOUNCE`) | {} | {:.2} |  |",
        if a.locked_at_end { ">= " } else { "" },
        fmt(a.longest_locked_ms),
        fmt(DEBOUNCE.as_secs_f64() * 1000.0),
        a.longest_locked_ms / (DEBOUNCE.as_secs_f64() * 1000.0),
    );
    println!(
        "| share of those 1 ms tries that found the index locked, % | {} |  |  |  |  |",
        fmt(a.locked_percent),
    );
    if !latency.scans.is_empty() {
        row(
            format!(
                "scan on the running watcher's index, {big_name}, median of {} ms",
                latency.scans.len()
            ),
            median(&latency.scans),
            format!("scan, `watch = \"auto\"`, {big_name}, no watcher task"),
            median(&ev_big.ms),
            "about 1",
        );
        row(
            format!("scan on the running watcher's index, {big_name}, p90 ms"),
            p90(&latency.scans),
            "same, no watcher task, p90".into(),
            p90(&ev_big.ms),
            "",
        );
        row(
            format!("scan on the running watcher's index, {big_name}, max ms"),
            max(&latency.scans),
            "same, no watcher task, max".into(),
            max(&ev_big.ms),
            "",
        );
    }
    println!();
    append_summary(&headlines);
    drop(dir);
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}
