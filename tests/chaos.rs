//! Chaos, end to end, bounded in time (about two minutes), everything on 127.0.0.1.
//!
//! 1,000 jobs go through a private PostgreSQL in 25 waves, one every 3 s. Simulated workers
//! (one Tokio task per job, sharing one small sqlx pool) insert their row `running`, beat
//! (`updated_at = now()`) every 0.6 to 1.2 s, and after 3 to 20 s set it `completed`; half of
//! them write a report as `<id>/report.md.part` while they run and rename it to `report.md`
//! once the row says `completed`. 100 jobs are killed mid-job: they stop beating after 1 to
//! 12 s and their row stays `running`; 40 of those leave a half-written `report.md.part`.
//! Meanwhile, counted from the first daemon's start:
//!
//! - the daemon is restarted twice (SIGTERM, then a new process on the same config and state
//!   directory, so the alert book and the audit trail carry over): at 25 s and at 68 s;
//! - PostgreSQL is restarted once at 42 s (`pg_ctl stop -m fast`, 3 s down, `pg_ctl start`);
//! - the webhook receiver is down for the first full minute (nothing listens on its port),
//!   then answers 500 five times, then 200;
//! - the state directory (a 16 MiB tmpfs of its own) is filled to the last byte at 50 s and
//!   freed 6 s later: writes whose audit intent cannot be recorded must not be made, and are
//!   made once the trail takes them again.
//!
//! At the end the test counts checks: every killed job was found and failed exactly once (with
//! an `error` saying `jobwarden: ...`); no healthy job was ever failed; the audit trail has one
//! applied write per killed job and none else, and its ids are the table's `failed` rows; every
//! finding (a killed job's `stalled`, a half-written report's `incomplete_artifact`) got
//! exactly one accepted `firing` (a digest counts once per finding in it, for firings and for
//! resolutions alike) and exactly one
//! accepted `resolved`, and no other alert was sent. The jobs killed in the first minute are
//! found, failed and resolved while no receiver has heard of them, and a daemon restart lies
//! between that and the receiver's return: the alert book in the state directory must still
//! announce each of them (firing, then resolved) to the next daemon's receiver, which gets
//! the backlog as one digest. It prints `N passed, N failed` last, on stdout and stderr, and
//! fails when any check did (keeping the daemons' logs, the state files and every request
//! the receiver got under `$TMPDIR/jobwarden-chaos-<seed>`). `JOBWARDEN_CHAOS_SEED=<n>`
//! replays a run's jobs (which are killed, when each starts and for how long); the timeline
//! is fixed.
//!
//! Scaled parameters, and why:
//!
//! - `interval = "500ms"`, `confirm_scans = 2`, `startup_grace = "0s"`, `min_age = "1s"`:
//!   a killed job is failed about one second after it goes over its threshold, also right
//!   after a daemon restart.
//! - Heartbeat rule `after = "10s"` (action `fail`, severity `critical`) against beats every
//!   0.6-1.2 s. The threshold is not 4 s because of the PostgreSQL restart: while the server
//!   is down no worker can beat, and when it is back the daemon's first scan races the
//!   workers' next beat. A healthy job's heartbeat can then be as old as its last beat before
//!   the stop (up to 1.2 s) + the outage (a fast stop, 3 s down, a start: about 3.5 s, more
//!   on a loaded machine) + the wait for its next beat (up to 1.2 s, plus reconnecting):
//!   about 6 s, and 10 s leaves 4 s of slack. A worker never blocks on the database: each
//!   beat is tried once with a 1 s timeout and simply tried again at the next beat, so beats
//!   resume within one beat of the server's return. The test measures the longest gap
//!   between two successful writes of any healthy job's row and counts "the gap stayed under
//!   `after`" as a check of its own: if that one fails, a failed healthy job would be
//!   jobwarden being right, not wrong.
//! - `[[artifacts]]` `{job_id}/**`, partial `*.part`, `settle = "3s"`, no `required`: a
//!   live writer touches its `.part` file on every beat (also while its database writes fail),
//!   so only a dead writer's file settles; 3 s rather than 2 s leaves the same kind of margin
//!   over the 1.2 s beat. Healthy jobs rename their report only after the row says
//!   `completed`, so no healthy job's settled report is ever an `unreported_artifact`.
//! - `max_actions_per_scan = 1000`: the per-scan cap is not under test.
//! - `max_stuck_fraction = 1.0` (a fraction can never exceed it): towards the end of a wave
//!   the active set is mostly killed jobs (a few killed rows among even fewer live ones is
//!   "more than half stuck"), which would legitimately hold writes back and raise a
//!   `mass_stall`; that guard has its own tests in `tests/safety.rs`. `min_active` default.
//! - Restarts are timed so that the daemon is never stopped while the receiver accepts
//!   messages (the first while it is down, the second while it answers 500). A message
//!   counts as told only once its receipt reaches the daemon's loop, and a stopping daemon
//!   aborts its deliveries without draining the receipts still queued, so a message accepted
//!   in the last instant before a SIGTERM is sent again after the restart: delivery is at
//!   least once. This test asks for exactly once, so it keeps restarts out of that window.
//! - After every killed job is failed, the test deletes the half-written `.part` files (the
//!   operator cleaning up), so their `incomplete_artifact` findings clear and resolve: a
//!   partial file is a finding for as long as it exists, and jobwarden never deletes files.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, get, metric, Daemon, PrivatePostgres, Receiver, TestConfig};
use jobwarden::core::detect::FindingKey;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::time::{sleep, sleep_until, timeout, Instant};

const JOBS: i32 = 1000;
const KILLED: usize = 100;
const KILLED_WITH_PART: usize = 40;
const WAVES: i32 = 25;
const WAVE_EVERY: Duration = Duration::from_secs(3);
/// The heartbeat rule's `after`, in seconds.
const AFTER_SECS: u64 = 10;
/// The report folder's `settle`, in seconds.
const SETTLE_SECS: u64 = 3;
/// A worker's pause between beats, in milliseconds.
const BEAT_MS: (u64, u64) = (600, 1200);
/// How long a healthy job runs, and how long a killed one lives, in milliseconds.
const HEALTHY_MS: (u64, u64) = (3_000, 20_000);
const KILLED_MS: (u64, u64) = (1_000, 12_000);

const RESTART_DAEMON_1: Duration = Duration::from_secs(25);
const RESTART_POSTGRES: Duration = Duration::from_secs(42);
/// How long PostgreSQL stays stopped before it is started again.
const POSTGRES_DOWN: Duration = Duration::from_secs(3);
const RECEIVER_UP: Duration = Duration::from_secs(60);
/// The state directory (a small tmpfs) is filled to the last byte for a while, then freed.
const STATE_FULL_AT: Duration = Duration::from_secs(50);
const STATE_FULL_FOR: Duration = Duration::from_secs(6);
/// The size of that tmpfs: far more than a run's state, and quick to fill.
const STATE_FS: &str = "size=16m";
const RESTART_DAEMON_2: Duration = Duration::from_secs(68);
/// How many requests the receiver answers 500 once it is up.
const REFUSALS: usize = 5;

const INSERT: &str = "INSERT INTO jobs (id, status, created_at, updated_at) \
                      VALUES ($1, 'running', now(), now()) ON CONFLICT (id) DO NOTHING";
const BEAT: &str = "UPDATE jobs SET updated_at = now() WHERE id = $1 AND status = 'running'";
const COMPLETE: &str = "UPDATE jobs SET status = 'completed', completed_at = now(), \
                        updated_at = now() WHERE id = $1 AND status = 'running'";

fn config_text(db: &str, http: u16, hook: u16, reports: &Path, state: &Path) -> String {
    TestConfig::new(db)
        .top("interval = \"500ms\"\nenvironment = \"chaos\"\nterminal_counts_every = \"0\"")
        .database(r#"query_timeout = "2s""#)
        .jobs("finished_at = \"completed_at\"\nerror = \"error\"")
        .heartbeat_rule(
            "heartbeat",
            &format!("{AFTER_SECS}s"),
            "action = \"fail\"\nseverity = \"critical\"",
        )
        .section(&format!(
            "[[artifacts]]\nname = \"reports\"\nroot = \"{}\"\npattern = \"{{job_id}}/**\"\n\
             partial = [\"*.part\"]\nsettle = \"{SETTLE_SECS}s\"",
            reports.display()
        ))
        .section(
            "[safety]\nmax_actions_per_scan = 1000\nmax_stuck_fraction = 1.0\nmin_age = \"1s\"\n\
             startup_grace = \"0s\"\nconfirm_scans = 2",
        )
        .http(http)
        .state(state)
        .section(&format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook}/hook\""
        ))
        .text()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Healthy { report: bool },
    Killed { part: bool },
}

#[derive(Debug)]
struct Job {
    id: i32,
    start: Duration,
    run: Duration,
    fate: Fate,
    seed: u64,
}

/// What a worker saw.
#[derive(Debug, Default)]
struct Lived {
    id: i32,
    /// The longest time between two successful writes of the row (insert, beats, completion).
    max_gap: Duration,
    /// Things that must not happen to a healthy job.
    problems: Vec<String>,
}

fn millis(rng: &mut fastrand::Rng, (lo, hi): (u64, u64)) -> Duration {
    Duration::from_millis(rng.u64(lo..=hi))
}

/// One try at a write; `None` while the database is down or slow.
async fn write_row(pool: &PgPool, sql: &str, id: i32) -> Option<u64> {
    match timeout(
        Duration::from_secs(1),
        sqlx::query(sql).bind(id).execute(pool),
    )
    .await
    {
        Ok(Ok(done)) => Some(done.rows_affected()),
        _ => None,
    }
}

fn append(path: &Path, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// A simulated worker: inserts its row, beats, writes its report, and completes (or dies).
async fn work(pool: PgPool, reports: PathBuf, t0: Instant, job: Job) -> Lived {
    sleep_until(t0 + job.start).await;
    let mut rng = fastrand::Rng::with_seed(job.seed);
    let mut lived = Lived {
        id: job.id,
        ..Lived::default()
    };
    while write_row(&pool, INSERT, job.id).await.is_none() {
        sleep(Duration::from_millis(200)).await;
    }
    let mut last = Instant::now();
    let mut wrote = |lived: &mut Lived| {
        let now = Instant::now();
        lived.max_gap = lived.max_gap.max(now - last);
        last = now;
    };
    let part = match job.fate {
        Fate::Healthy { report: true } | Fate::Killed { part: true } => {
            let dir = reports.join(job.id.to_string());
            std::fs::create_dir_all(&dir).expect("report folder");
            let part = dir.join("report.md.part");
            append(&part, &format!("# report of job {}", job.id));
            Some(part)
        }
        _ => None,
    };
    let end = Instant::now() + job.run;
    while Instant::now() < end {
        sleep(millis(&mut rng, BEAT_MS)).await;
        if let Some(part) = &part {
            append(part, "- one more step");
        }
        match write_row(&pool, BEAT, job.id).await {
            Some(1) => wrote(&mut lived),
            Some(_) => {
                lived.problems.push(format!(
                    "job {}: a heartbeat found the row no longer running",
                    job.id
                ));
                return lived;
            }
            None => {} // The database is away: beat again next time.
        }
    }
    if let Fate::Killed { .. } = job.fate {
        // Killed mid-job: the row stays `running`, a half-written report stays where it is.
        return lived;
    }
    loop {
        if let Some(part) = &part {
            append(part, "- done");
        }
        match write_row(&pool, COMPLETE, job.id).await {
            Some(1) => {
                wrote(&mut lived);
                break;
            }
            Some(_) => {
                lived.problems.push(format!(
                    "job {}: completing found the row no longer running",
                    job.id
                ));
                return lived;
            }
            None => sleep(millis(&mut rng, BEAT_MS)).await,
        }
    }
    if let Some(part) = &part {
        std::fs::rename(part, part.with_file_name("report.md")).expect("finish the report");
    }
    lived
}

/// Polls `check` every 250 ms until it holds; false after `limit`.
/// A tmpfs of [`STATE_FS`] mounted on a folder for the test's life (the test runs as root:
/// its private PostgreSQL needs it too).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", STATE_FS, "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount a tmpfs on {} (run as root)", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

async fn until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(250)).await;
    }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

async fn daemon_metric(daemon: &Daemon, name: &str) -> Option<f64> {
    get(&daemon.url("/metrics"))
        .await
        .and_then(|(_, text)| metric(&text, name))
}

/// The finding's key, as jobwarden writes it.
fn key_of(finding: &serde_json::Value) -> String {
    let s = |k: &str| finding[k].as_str().unwrap_or("?").to_string();
    let kind = serde_json::from_value(finding["kind"].clone())
        .unwrap_or_else(|e| panic!("a finding's kind: {e}: {finding}"));
    FindingKey {
        kind,
        rule: s("rule"),
        job_id: s("job_id"),
    }
    .to_string()
}

/// Accepted firings and resolutions per alert key, a digest counting once per finding in it,
/// and the reason of each resolution.
#[derive(Debug, Default)]
struct Tally {
    firing: BTreeMap<String, usize>,
    resolved: BTreeMap<String, usize>,
    reasons: BTreeMap<String, String>,
    digests: usize,
    refused: usize,
    /// Incident messages by incident id: openings, endings, and the jobs each held at its end.
    incidents_opened: BTreeMap<String, usize>,
    incidents_ended: BTreeMap<String, usize>,
    incident_jobs: usize,
}

fn tally(hook: &Receiver) -> Tally {
    let mut t = Tally::default();
    for r in hook.got() {
        if r.status >= 300 {
            t.refused += 1;
            continue;
        }
        if let Some(id) = r.body["incident"]["id"].as_str() {
            let id = id.to_string();
            if r.body["state"] == "resolved" {
                *t.incidents_ended.entry(id).or_default() += 1;
                t.incident_jobs += r.body["incident"]["jobs"].as_u64().unwrap_or(0) as usize;
            } else {
                *t.incidents_opened.entry(id).or_default() += 1;
            }
            continue;
        }
        match r.body["state"].as_str() {
            Some("firing") if r.body["digest"] == true => {
                t.digests += 1;
                for f in r.body["findings"].as_array().into_iter().flatten() {
                    *t.firing.entry(key_of(f)).or_default() += 1;
                }
            }
            Some("firing") => *t.firing.entry(key_of(&r.body["finding"])).or_default() += 1,
            Some("resolved") if r.body["digest"] == true => {
                t.digests += 1;
                let reasons = r.body["reasons"].as_array().cloned().unwrap_or_default();
                for (i, f) in r.body["findings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let key = key_of(f);
                    *t.resolved.entry(key.clone()).or_default() += 1;
                    let reason = reasons.get(i).and_then(|r| r.as_str()).unwrap_or("");
                    t.reasons.insert(key, reason.to_string());
                }
            }
            Some("resolved") => {
                let key = key_of(&r.body["finding"]);
                *t.resolved.entry(key.clone()).or_default() += 1;
                t.reasons
                    .insert(key, r.body["reason"].as_str().unwrap_or("").to_string());
            }
            _ => *t.firing.entry(format!("unparsed: {}", r.body)).or_default() += 1,
        }
    }
    t
}

/// The first few of a list, for messages.
fn some<T: std::fmt::Debug>(items: &[T]) -> String {
    if items.len() <= 10 {
        format!("{items:?}")
    } else {
        format!("{:?} and {} more", &items[..10], items.len() - 10)
    }
}

#[derive(Default)]
struct Checks {
    passed: usize,
    failed: usize,
}

impl Checks {
    fn check(&mut self, ok: bool, what: &str, detail: String) {
        if ok {
            self.passed += 1;
            println!("ok     {what}");
        } else {
            self.failed += 1;
            println!("FAILED {what}: {detail}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_through_restarts_outages_and_a_refusing_receiver() {
    let seed = std::env::var("JOBWARDEN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("chaos: seed {seed} (JOBWARDEN_CHAOS_SEED={seed} replays these jobs)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let pg = Arc::new(PrivatePostgres::init());
    pg.start();
    let url = pg.url();
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&url)
        .await
        .expect("connect to the private PostgreSQL");
    for sql in [
        // A thousand jobs beating once a second is a lot of commits for a loaded test machine;
        // a crash would lose the last few, a clean restart loses nothing.
        "ALTER SYSTEM SET synchronous_commit = off",
        "SELECT pg_reload_conf()",
        "CREATE TABLE jobs (id integer PRIMARY KEY, status text NOT NULL, \
         created_at timestamptz NOT NULL, updated_at timestamptz, \
         completed_at timestamptz, error text)",
        "CREATE INDEX jobs_active ON jobs (status) WHERE status = 'running'",
    ] {
        sqlx::query(sql)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let reports = dir.path().join("reports");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let _state_fs = Tmpfs::mount(&state);
    let hook_port = free_port(); // nothing listens here for the first minute
    let text = config_text(&url, 0, hook_port, &reports, &state);
    // One file per daemon, so each keeps its own log (`jwN.log`).
    let configs: Vec<PathBuf> = (1..=3)
        .map(|n| {
            let path = dir.path().join(format!("jw{n}.toml"));
            std::fs::write(&path, &text).unwrap();
            path
        })
        .collect();

    // Who dies, when everyone starts, and for how long they run.
    let mut ids: Vec<i32> = (1..=JOBS).collect();
    rng.shuffle(&mut ids);
    let killed: BTreeSet<i32> = ids[..KILLED].iter().copied().collect();
    let with_part: BTreeSet<i32> = ids[..KILLED_WITH_PART].iter().copied().collect();
    let per_wave = JOBS / WAVES;
    let jobs: Vec<Job> = (1..=JOBS)
        .map(|id| {
            let wave = u32::try_from((id - 1) / per_wave).unwrap();
            let start = WAVE_EVERY * wave + millis(&mut rng, (0, 1000));
            let (fate, run) = if killed.contains(&id) {
                (
                    Fate::Killed {
                        part: with_part.contains(&id),
                    },
                    millis(&mut rng, KILLED_MS),
                )
            } else {
                (
                    Fate::Healthy { report: rng.bool() },
                    millis(&mut rng, HEALTHY_MS),
                )
            };
            Job {
                id,
                start,
                run,
                fate,
                seed: rng.u64(..),
            }
        })
        .collect();
    let healthy_reports = jobs
        .iter()
        .filter(|j| j.fate == Fate::Healthy { report: true })
        .count();

    let mut checks = Checks::default();
    let t0 = Instant::now();
    let at = || t0.elapsed().as_secs_f64();
    let first = Daemon::start(&configs[0], &[]);
    let workers: Vec<_> = jobs
        .into_iter()
        .map(|job| tokio::spawn(work(pool.clone(), reports.clone(), t0, job)))
        .collect();

    // Daemon restart 1, while the receiver is down.
    sleep_until(t0 + RESTART_DAEMON_1).await;
    let running = count(&pool, "SELECT count(*) FROM jobs WHERE status = 'running'").await;
    let code = first.stop().await;
    checks.check(
        code == 0 && running > 0,
        "daemon restart 1 hit live work and the daemon exited 0",
        format!("exit {code}, {running} jobs running"),
    );
    eprintln!(
        "chaos: {:5.1}s daemon restarted ({running} jobs running)",
        at()
    );
    let second = Daemon::start(&configs[1], &[]);

    // PostgreSQL restart: stop, a moment down, start.
    sleep_until(t0 + RESTART_POSTGRES).await;
    let running = count(&pool, "SELECT count(*) FROM jobs WHERE status = 'running'").await;
    let began = Instant::now();
    let server = pg.clone();
    tokio::task::spawn_blocking(move || {
        server.stop();
        std::thread::sleep(POSTGRES_DOWN);
        server.start();
    })
    .await
    .expect("restart PostgreSQL");
    let outage = began.elapsed();
    eprintln!(
        "chaos: {:5.1}s PostgreSQL restarted ({running} jobs running, down {outage:.1?})",
        at()
    );
    let back = until(Duration::from_secs(30), || async {
        get(&second.url("/readyz"))
            .await
            .is_some_and(|r| r.0 == 200)
    })
    .await;
    let errors = daemon_metric(&second, "jobwarden_scan_errors_total{source=\"database\"}")
        .await
        .unwrap_or(0.0);
    checks.check(
        running > 0 && errors > 0.0 && back,
        "the PostgreSQL restart hit live work; the daemon's scans failed, then it was ready again",
        format!("{running} jobs running, {errors} failed scans, ready again: {back}"),
    );

    // The state directory fills up: no write without its record, then writes go on.
    sleep_until(t0 + STATE_FULL_AT).await;
    let filler = state.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 32 << 20]);
    eprintln!("chaos: {:5.1}s state directory full", at());
    sleep_until(t0 + STATE_FULL_AT + STATE_FULL_FOR).await;
    let _ = std::fs::remove_file(&filler);
    let audit_errors = daemon_metric(&second, "jobwarden_audit_errors_total")
        .await
        .unwrap_or(0.0);
    eprintln!(
        "chaos: {:5.1}s state directory freed ({audit_errors} scans could not write the audit trail)",
        at()
    );
    let ready = until(Duration::from_secs(15), || async {
        get(&second.url("/readyz"))
            .await
            .is_some_and(|r| r.0 == 200)
    })
    .await;
    checks.check(
        ready,
        "the daemon was ready again once the state directory had room",
        format!("{audit_errors} scans held writes back for the audit trail"),
    );

    // The receiver has been down for a minute; the daemon must have noticed.
    sleep_until(t0 + RECEIVER_UP - Duration::from_secs(1)).await;
    let failures = daemon_metric(&second, "jobwarden_alert_failures_total{sink=\"webhook\"}")
        .await
        .unwrap_or(0.0);
    checks.check(
        failures > 0.0,
        "the daemon retried deliveries while the receiver was down",
        format!("jobwarden_alert_failures_total = {failures}"),
    );
    sleep_until(t0 + RECEIVER_UP).await;
    let hook = Receiver::start(hook_port, &[500; REFUSALS]).await;
    eprintln!(
        "chaos: {:5.1}s receiver up, answering 500 {REFUSALS} times",
        at()
    );

    // Daemon restart 2, while the receiver refuses.
    sleep_until(t0 + RESTART_DAEMON_2).await;
    let running = count(&pool, "SELECT count(*) FROM jobs WHERE status = 'running'").await;
    let code = second.stop().await;
    checks.check(
        code == 0 && running > 0,
        "daemon restart 2 hit live work and the daemon exited 0",
        format!("exit {code}, {running} jobs running"),
    );
    eprintln!(
        "chaos: {:5.1}s daemon restarted ({running} jobs running)",
        at()
    );
    let third = Daemon::start(&configs[2], &[]);

    let mut lived = Vec::with_capacity(JOBS as usize);
    for w in workers {
        lived.push(w.await.expect("worker task"));
    }
    eprintln!("chaos: {:5.1}s every worker finished or died", at());

    // Every killed job failed (nothing left running), its findings fired.
    let settled = until(Duration::from_secs(60), || async {
        count(&pool, "SELECT count(*) FROM jobs WHERE status = 'running'").await == 0
    })
    .await;
    eprintln!("chaos: {:5.1}s nothing running any more: {settled}", at());
    let incomplete_keys: BTreeSet<String> = with_part
        .iter()
        .map(|id| format!("incomplete_artifact/reports/{id}"))
        .collect();
    until(Duration::from_secs(60), || async {
        let t = tally(&hook);
        incomplete_keys.iter().all(|k| t.firing.contains_key(k))
    })
    .await;
    // The operator cleans up after the failed jobs: the half-written reports go.
    for id in &with_part {
        let _ = std::fs::remove_file(reports.join(id.to_string()).join("report.md.part"));
    }
    eprintln!("chaos: {:5.1}s half-written reports removed", at());

    let expected: BTreeSet<String> = killed
        .iter()
        .map(|id| format!("stalled/heartbeat/{id}"))
        .chain(incomplete_keys.iter().cloned())
        .collect();
    let delivered = until(Duration::from_secs(60), || async {
        let t = tally(&hook);
        let depth = daemon_metric(&third, "jobwarden_alert_queue_depth{sink=\"webhook\"}").await;
        expected
            .iter()
            .all(|k| t.firing.contains_key(k) && t.resolved.contains_key(k))
            && depth == Some(0.0)
    })
    .await;
    // A few more scans, for anything late or doubled to show.
    let scans = daemon_metric(&third, "jobwarden_scans_total")
        .await
        .unwrap_or(0.0);
    until(Duration::from_secs(20), || async {
        daemon_metric(&third, "jobwarden_scans_total")
            .await
            .is_some_and(|n| n >= scans + 6.0)
    })
    .await;
    eprintln!(
        "chaos: {:5.1}s alerts delivered: {delivered}; stopping",
        at()
    );
    let code = third.stop().await;
    checks.check(
        code == 0,
        "the last daemon exited 0",
        format!("exit {code}"),
    );

    // The table.
    let rows: Vec<(i32, String, Option<String>)> =
        sqlx::query_as("SELECT id, status, error FROM jobs ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("read the table");
    checks.check(
        rows.len() == JOBS as usize,
        "every job made it into the table",
        format!("{} rows", rows.len()),
    );
    let failed_rows: BTreeSet<i32> = rows
        .iter()
        .filter(|(_, s, _)| s == "failed")
        .map(|(id, _, _)| *id)
        .collect();
    let bad_killed: Vec<String> = rows
        .iter()
        .filter(|(id, _, _)| killed.contains(id))
        .filter(|(_, s, e)| s != "failed" || !e.as_deref().unwrap_or("").starts_with("jobwarden: "))
        .map(|(id, s, e)| format!("{id}: {s} {e:?}"))
        .collect();
    checks.check(
        bad_killed.is_empty() && rows.iter().filter(|r| killed.contains(&r.0)).count() == KILLED,
        &format!("every killed job ({KILLED}) is failed with error `jobwarden: ...`"),
        format!("{} are not: {}", bad_killed.len(), some(&bad_killed)),
    );
    let bad_healthy: Vec<String> = rows
        .iter()
        .filter(|(id, s, _)| !killed.contains(id) && s != "completed")
        .map(|(id, s, e)| format!("{id}: {s} {e:?}"))
        .collect();
    let problems: Vec<&String> = lived.iter().flat_map(|l| &l.problems).collect();
    checks.check(
        bad_healthy.is_empty() && problems.is_empty(),
        &format!(
            "no healthy job ({}) was ever failed: all completed",
            JOBS as usize - KILLED
        ),
        format!(
            "{} not completed: {}; workers saw: {}",
            bad_healthy.len(),
            some(&bad_healthy),
            some(&problems)
        ),
    );
    let (gap_job, max_gap) = lived
        .iter()
        .filter(|l| !killed.contains(&l.id))
        .map(|l| (l.id, l.max_gap))
        .max_by_key(|(_, g)| *g)
        .unwrap_or_default();
    eprintln!(
        "chaos: longest gap between two beats of a healthy job: {max_gap:.1?} (job {gap_job}); \
         PostgreSQL was down {outage:.1?}"
    );
    checks.check(
        max_gap < Duration::from_secs(AFTER_SECS),
        &format!("premise: no healthy job went {AFTER_SECS}s without a beat"),
        format!("job {gap_job} went {max_gap:.1?} (PostgreSQL down {outage:.1?})"),
    );

    // The audit trail.
    let audit_text = std::fs::read_to_string(state.join("audit.jsonl")).unwrap_or_default();
    // Outcome records only: each write also has its intent, recorded before it.
    let entries: Vec<serde_json::Value> = audit_text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["stage"] != "intent")
        .collect();
    let mut applied: BTreeMap<i32, usize> = BTreeMap::new();
    for e in entries.iter().filter(|e| e["outcome"] == "applied") {
        let id = e["job_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        *applied.entry(id).or_default() += 1;
    }
    let other_outcomes: BTreeMap<String, usize> = entries
        .iter()
        .filter(|e| e["outcome"] != "applied")
        .fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e["outcome"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
            m
        });
    eprintln!(
        "chaos: audit trail: {} lines, {} applied, others {other_outcomes:?}",
        entries.len(),
        applied.values().sum::<usize>()
    );
    let not_once: Vec<String> = killed
        .iter()
        .filter(|id| applied.get(id) != Some(&1))
        .map(|id| format!("{id}: {}", applied.get(id).copied().unwrap_or(0)))
        .collect();
    let strangers: Vec<&i32> = applied.keys().filter(|id| !killed.contains(id)).collect();
    let applied_ids: BTreeSet<i32> = applied.keys().copied().collect();
    checks.check(
        not_once.is_empty() && strangers.is_empty() && applied_ids == failed_rows,
        "the audit trail has one applied write per killed job, none else, and matches the table",
        format!(
            "killed jobs not written exactly once: {}; written but not killed: {}; \
             failed rows not audited: {}; audited rows not failed: {}",
            some(&not_once),
            some(&strangers),
            some(&failed_rows.difference(&applied_ids).collect::<Vec<_>>()),
            some(&applied_ids.difference(&failed_rows).collect::<Vec<_>>()),
        ),
    );

    // The alerts.
    let t = tally(&hook);
    eprintln!(
        "chaos: receiver: {} requests, {} refused, {} digests, {} keys fired, {} resolved",
        hook.got().len(),
        t.refused,
        t.digests,
        t.firing.len(),
        t.resolved.len()
    );
    checks.check(
        t.refused == REFUSALS,
        &format!("the receiver answered 500 {REFUSALS} times"),
        format!("it refused {}", t.refused),
    );
    // Killed jobs that died together are told as an incident (opened once, ended once), not
    // one by one: a stalled key told neither way is one of an incident's jobs.
    let in_incidents: Vec<&String> = expected
        .iter()
        .filter(|k| {
            k.starts_with("stalled/") && !t.firing.contains_key(*k) && !t.resolved.contains_key(*k)
        })
        .collect();
    let incidents_wrong = t.incidents_opened.values().any(|n| *n != 1)
        || t.incidents_opened.keys().ne(t.incidents_ended.keys())
        || t.incidents_ended.values().any(|n| *n != 1)
        || in_incidents.len() > t.incident_jobs;
    checks.check(
        !incidents_wrong,
        "each incident was opened once and ended once, and holds every killed job not told by itself",
        format!(
            "opened {:?}, ended {:?}, {} jobs in them, {} killed jobs told neither way",
            t.incidents_opened,
            t.incidents_ended,
            t.incident_jobs,
            in_incidents.len()
        ),
    );
    let expected: BTreeSet<String> = expected
        .iter()
        .filter(|k| !in_incidents.contains(k))
        .cloned()
        .collect();
    let firing_wrong: Vec<String> = expected
        .iter()
        .filter(|k| t.firing.get(*k) != Some(&1))
        .map(|k| format!("{k} x{}", t.firing.get(k).copied().unwrap_or(0)))
        .collect();
    let resolved_wrong: Vec<String> = expected
        .iter()
        .filter(|k| t.resolved.get(*k) != Some(&1))
        .map(|k| format!("{k} x{}", t.resolved.get(k).copied().unwrap_or(0)))
        .collect();
    let unexpected: Vec<&String> = t
        .firing
        .keys()
        .chain(t.resolved.keys())
        .filter(|k| !expected.contains(*k))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    checks.check(
        firing_wrong.is_empty() && resolved_wrong.is_empty() && unexpected.is_empty(),
        &format!(
            "every finding ({} stalled, {} incomplete_artifact) got exactly one firing and \
             one resolved, and nothing else was sent",
            KILLED, KILLED_WITH_PART
        ),
        format!(
            "{} without exactly one firing: {}; {} without exactly one resolved: {}; \
             unexpected keys: {}",
            firing_wrong.len(),
            some(&firing_wrong),
            resolved_wrong.len(),
            some(&resolved_wrong),
            some(&unexpected)
        ),
    );
    let wrong_reason: Vec<String> = killed
        .iter()
        .map(|id| format!("stalled/heartbeat/{id}"))
        .filter_map(|k| {
            let reason = t.reasons.get(&k)?;
            (reason != "jobwarden failed the job").then(|| format!("{k}: {reason}"))
        })
        .collect();
    checks.check(
        wrong_reason.is_empty(),
        "each killed job's stalled alert resolved as \"jobwarden failed the job\"",
        some(&wrong_reason),
    );
    let missing_incomplete: Vec<&String> = incomplete_keys
        .iter()
        .filter(|k| !t.firing.contains_key(*k))
        .collect();
    checks.check(
        missing_incomplete.is_empty(),
        &format!(
            "every half-written report ({KILLED_WITH_PART}) was alerted as incomplete_artifact \
             (and none of the {healthy_reports} finished ones: see unexpected keys)"
        ),
        format!("not alerted: {}", some(&missing_incomplete)),
    );

    if checks.failed > 0 {
        // Keep what explains it: the daemons' logs, the state, what the receiver got.
        let keep = std::env::temp_dir().join(format!("jobwarden-chaos-{seed}"));
        let _ = std::fs::create_dir_all(&keep);
        for n in 1..=3 {
            let _ = std::fs::copy(
                dir.path().join(format!("jw{n}.log")),
                keep.join(format!("jw{n}.log")),
            );
        }
        let _ = std::fs::copy(state.join("audit.jsonl"), keep.join("audit.jsonl"));
        let _ = std::fs::copy(state.join("alerts.json"), keep.join("alerts.json"));
        let received: Vec<serde_json::Value> = hook
            .got()
            .iter()
            .map(|r| serde_json::json!({"status": r.status, "body": r.body}))
            .collect();
        let _ = std::fs::write(
            keep.join("received.json"),
            serde_json::to_string_pretty(&received).unwrap_or_default(),
        );
        eprintln!(
            "chaos: logs, state and the receiver's requests kept in {}",
            keep.display()
        );
    }
    let closing = format!("{} passed, {} failed", checks.passed, checks.failed);
    println!("{closing}");
    eprintln!("{closing}");
    assert_eq!(checks.failed, 0, "{closing} (seed {seed})");
}
