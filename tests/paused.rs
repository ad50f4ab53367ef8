//! The daemon in-process on Tokio's paused clock: hours of its schedule in seconds, with a real
//! SQLite table and real receivers on 127.0.0.1.
//!
//! Time moves only when the test moves it. A blocking task held for the whole test keeps Tokio
//! from jumping the paused clock ahead by itself (it would otherwise jump to the next timer
//! whenever every task waits, even while a query or an HTTP exchange is in flight on another
//! thread); [`Clock::step`] advances it in small steps and gives the real I/O a moment
//! between them. The daemon reads wall-clock time through `Clock::following_tokio`, so its
//! alerts' timestamps move with the paused clock too. (The database's clock does not: job ages
//! are judged on it, so they stay what they were when the test began.)

mod common;

use std::time::Duration;

use common::{Backend, Receiver, TestConfig, TestDb};
use jobwarden::adapters::clock::Clock as DaemonClock;
use jobwarden::adapters::notify::Notifier;
use jobwarden::daemon;
use tokio::time::Instant;

/// The test's hold on Tokio's paused clock.
struct Clock {
    release: std::sync::mpsc::Sender<()>,
}

impl Clock {
    fn hold() -> Clock {
        let (release, held) = std::sync::mpsc::channel::<()>();
        // While a blocking task runs, a paused clock does not advance by itself.
        tokio::task::spawn_blocking(move || {
            let _ = held.recv();
        });
        Clock { release }
    }

    /// Advances the paused clock by `total`, `step` at a time, letting real I/O (SQLite's
    /// worker thread, sockets) land between steps.
    async fn step(&self, total: Duration, step: Duration) {
        let end = Instant::now() + total;
        while Instant::now() < end {
            tokio::time::advance(step).await;
            std::thread::sleep(Duration::from_micros(300));
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        }
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        let _ = self.release.send(());
    }
}

/// A daemon running in this runtime.
struct InProcess {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    port: u16,
}

impl InProcess {
    async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    async fn stop(self, clock: &Clock) {
        let _ = self.stop.send(());
        clock
            .step(Duration::from_secs(5), Duration::from_millis(100))
            .await;
        self.task.await.expect("daemon task");
    }
}

/// Starts the daemon in this runtime on `config`, on port 0.
async fn start(config: &std::path::Path) -> InProcess {
    let config = jobwarden::config::load(config, None, &|_| None).expect("config");
    let listener = daemon::bind(&config).await.expect("bind");
    let port = listener.local_addr().expect("bound address").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (_reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let options = daemon::Options {
        dry_run: false,
        reload: Box::new(|| {
            Err(jobwarden::config::ConfigError::Read {
                path: "unused".into(),
                source: std::io::Error::other("no reloads in this test"),
            })
        }),
        notifier: Notifier::disabled(),
        clock: DaemonClock::following_tokio(),
    };
    let task = tokio::spawn(async move {
        let _keep = _reload_tx;
        daemon::run(
            config,
            prometheus::Registry::new(),
            listener,
            options,
            reload_rx,
            async {
                let _ = stopped.await;
            },
        )
        .await
        .expect("daemon");
    });
    InProcess { stop, task, port }
}

#[tokio::test(start_paused = true)]
async fn reminders_and_alertmanager_resends_follow_the_clock_over_hours() {
    let clock = Clock::hold();
    let db = TestDb::new(Backend::Sqlite).await;
    let hook = Receiver::start(0, &[]).await;
    let am = Receiver::start(0, &[]).await;
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\nrepeat_every = \"1h\"\n\n\
         [[alerts]]\nkind = \"alertmanager\"\nurl = \"{}\"",
        hook.url("/hook"),
        am.url("")
    );
    let daemon = stalled_job_daemon(&db, "interval = \"30s\"\ndry_run = true", "", &sinks).await;

    // Two and a half hours: the first firing, then a reminder at 1h and at 2h.
    clock
        .step(Duration::from_secs(9000), Duration::from_secs(1))
        .await;
    let firing: Vec<_> = hook
        .got()
        .into_iter()
        .filter(|r| r.body["state"] == "firing")
        .collect();
    let reminders = firing.iter().filter(|r| r.body["reminder"] == true).count();
    assert_eq!(
        (firing.len(), reminders),
        (3, 2),
        "one firing and a reminder each hour: {firing:#?}"
    );
    // Alertmanager gets the open set again at the first cycle a minute after the last post
    // (cycles are 30 s apart: every 60 to 90 s), each time with endsAt four minutes ahead.
    let posts = am.got();
    assert!(
        (100..=151).contains(&posts.len()),
        "a post every 60 to 90 s over 150 minutes: {}",
        posts.len()
    );
    let span = |alert: &serde_json::Value| {
        let at = |key: &str| {
            chrono::DateTime::parse_from_rfc3339(alert[key].as_str().unwrap_or_default())
                .map(|t| t.timestamp() as f64)
                .unwrap_or_else(|e| panic!("{key} in {alert}: {e}"))
        };
        at("endsAt") - at("startsAt")
    };
    let open = &posts[posts.len() - 1].body[0];
    assert_eq!(open["labels"]["alertname"], "JobwardenStalled", "{open}");
    assert!(
        (9000.0..9400.0).contains(&span(open)),
        "endsAt runs four minutes ahead of the paused clock: {open}"
    );

    // The job finishes: the webhook hears the resolution, and Alertmanager an endsAt at it.
    db.exec("UPDATE jobs SET status = 'completed' WHERE id = 1")
        .await;
    clock
        .step(Duration::from_secs(120), Duration::from_secs(1))
        .await;
    let resolved: Vec<_> = hook
        .got()
        .into_iter()
        .filter(|r| r.body["state"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    let posts = am.got();
    let ended = &posts.last().expect("a post").body[0];
    assert!(
        (8900.0..9100.0).contains(&span(ended)),
        "endsAt is the resolution, about 150 minutes after startsAt: {ended}"
    );
    daemon.stop(&clock).await;
}

#[tokio::test(start_paused = true)]
async fn a_database_that_is_down_is_retried_with_backoff_then_scanned_on_schedule() {
    let clock = Clock::hold();
    let dir = tempfile::tempdir().expect("temp dir");
    // Not there yet: every connection attempt fails at once.
    let data = dir.path().join("data");
    let url = format!("sqlite://{}", data.join("jobs.db").display());
    let config = TestConfig::new(&url)
        .top("interval = \"30s\"\ndry_run = true")
        .heartbeat_rule("hb", "30m", "")
        .state(&dir.path().join("state"))
        .http(0)
        .write(dir.path().join("jw.toml"));
    let daemon = start(&config).await;
    let count = |m: &str, name: &str| common::metric(m, name).unwrap_or(0.0);

    // Ten minutes down: retries at 0.5 s, 1 s, 2 s ... doubling up to the interval (30 s),
    // each between half and all of its step; never a tight loop, never a stop.
    clock
        .step(Duration::from_secs(600), Duration::from_millis(250))
        .await;
    let m = daemon.metrics().await;
    let failed = count(&m, "jobwarden_scan_errors_total{source=\"database\"}");
    assert!(
        (24.0..=48.0).contains(&failed),
        "between 24 and 48 attempts in 10 minutes of backoff: {failed}"
    );
    assert_eq!(count(&m, "jobwarden_database_up"), 0.0);
    assert_eq!(count(&m, "jobwarden_scans_total"), 0.0);

    // The database appears: the next retry (at most one interval away) reaches it, and from
    // then on scans run every 30 s on a fixed schedule.
    std::fs::create_dir_all(&data).expect("mkdir");
    let db = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
        .await
        .expect("create");
    sqlx::query(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT, created_at TEXT, updated_at TEXT)",
    )
    .execute(&db)
    .await
    .expect("create table");
    db.close().await;
    clock
        .step(Duration::from_secs(30), Duration::from_millis(250))
        .await;
    let m = daemon.metrics().await;
    assert_eq!(count(&m, "jobwarden_database_up"), 1.0, "{m}");
    let first = count(&m, "jobwarden_scans_total");
    assert!(first >= 1.0, "{m}");
    clock
        .step(Duration::from_secs(300), Duration::from_millis(250))
        .await;
    let m = daemon.metrics().await;
    assert_eq!(
        count(&m, "jobwarden_scans_total") - first,
        10.0,
        "one scan every 30 s for 5 minutes"
    );
    assert_eq!(
        count(&m, "jobwarden_scan_errors_total{source=\"database\"}"),
        failed,
        "no failure once it is up"
    );
    daemon.stop(&clock).await;
}

/// The row's status, read outside the daemon.
async fn status(db: &TestDb) -> String {
    db.rows("SELECT status FROM jobs WHERE id = 1").await[0][0]
        .clone()
        .unwrap_or_default()
}

/// A stalled job under a `fail` rule, and a daemon with these `[safety]` keys.
async fn failing_daemon(db: &TestDb, safety: &str) -> InProcess {
    stalled_job_daemon(
        db,
        "interval = \"60s\"",
        "action = \"fail\"",
        &format!("[safety]\n{safety}"),
    )
    .await
}

/// One job, its heartbeat 90 minutes old, under a 30-minute heartbeat rule with `rule` keys,
/// and a daemon in this runtime with `top` keys and `section`. Queries may take a minute of
/// paused time: the test's steps let SQLite's real work land, not the timeout.
async fn stalled_job_daemon(db: &TestDb, top: &str, rule: &str, section: &str) -> InProcess {
    db.small_jobs_table().await;
    db.running(1, 120.0, 90.0).await;
    let config = TestConfig::new(&db.url)
        .top(top)
        .database("query_timeout = \"60s\"")
        .heartbeat_rule("hb", "30m", rule)
        .section(section)
        .state(&db.dir().join("state"))
        .http(0)
        .write(db.dir().join("jw.toml"));
    start(&config).await
}

#[tokio::test(start_paused = true)]
async fn the_startup_grace_only_reports() {
    let clock = Clock::hold();
    let db = TestDb::new(Backend::Sqlite).await;
    let daemon = failing_daemon(&db, "startup_grace = \"5m\"\nconfirm_scans = 1").await;
    clock
        .step(Duration::from_secs(270), Duration::from_millis(500))
        .await;
    assert_eq!(
        status(&db).await,
        "running",
        "4.5 minutes into a 5-minute grace"
    );
    clock
        .step(Duration::from_secs(90), Duration::from_millis(500))
        .await;
    assert_eq!(
        status(&db).await,
        "failed",
        "the first scan after the grace writes"
    );
    daemon.stop(&clock).await;
}

#[tokio::test(start_paused = true)]
async fn confirm_scans_waits_for_that_many_consecutive_scans() {
    let clock = Clock::hold();
    let db = TestDb::new(Backend::Sqlite).await;
    let daemon = failing_daemon(&db, "startup_grace = \"0s\"\nconfirm_scans = 3").await;
    // Scans at 0 s and 60 s: seen twice.
    clock
        .step(Duration::from_secs(90), Duration::from_millis(500))
        .await;
    assert_eq!(status(&db).await, "running", "seen on 2 of 3 scans");
    let m = daemon.metrics().await;
    assert_eq!(
        common::metric(
            &m,
            "jobwarden_actions_total{action=\"fail\",outcome=\"limited\"}"
        ),
        Some(2.0),
        "held back at each of the two scans: {m}"
    );
    // The third, at 120 s.
    clock
        .step(Duration::from_secs(60), Duration::from_millis(500))
        .await;
    assert_eq!(status(&db).await, "failed");
    daemon.stop(&clock).await;
}

#[tokio::test(start_paused = true)]
async fn a_receivers_retry_after_is_honoured() {
    let clock = Clock::hold();
    let db = TestDb::new(Backend::Sqlite).await;
    // Busy at first, and says when to come back: in two minutes.
    let hook = Receiver::start(0, &[503]).await;
    hook.retry_after(120);
    let sink = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"",
        hook.url("/hook")
    );
    let daemon = stalled_job_daemon(&db, "interval = \"30s\"\ndry_run = true", "", &sink).await;
    // The backoff alone would have retried within a second; Retry-After says 120 s.
    clock
        .step(Duration::from_secs(100), Duration::from_millis(500))
        .await;
    assert_eq!(hook.got().len(), 1, "no retry before Retry-After ran out");
    clock
        .step(Duration::from_secs(40), Duration::from_millis(500))
        .await;
    let got = hook.got();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!((got[0].status, got[1].status), (503, 200));
    assert_eq!(got[1].body["state"], "firing");
    daemon.stop(&clock).await;
}
