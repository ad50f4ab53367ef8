//! Ages you can trust: naive timestamps in databases whose zone is not UTC, ORM-written UTC,
//! timestamps in the future, re-queued jobs and `--older-than`, on the real servers through
//! the real binary.
//!
//! PostgreSQL: each zone is a test database of its own with `ALTER DATABASE ... SET timezone`,
//! which is what jobwarden must discover. MariaDB: the zone an application's session gets is
//! the server's global `time_zone`, so those tests `SET GLOBAL time_zone` and restore it; they
//! hold [`MYSQL_GLOBAL`] so they never overlap, and this file is a test binary of its own, so
//! no other test's MariaDB session starts while the global is changed (cargo runs test
//! binaries one after another).
//!
//! The rows are inserted the way the application would: in a session in the database's own
//! zone (`SET timezone`/`SET time_zone` to the default the application's session gets),
//! filled by `now()` / `NOW(6)`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{findings, jobwarden, jobwarden_json, Backend, Daemon, TestConfig, TestDb};
use sqlx::Row;

/// The zones under test: PostgreSQL's name, and MariaDB's offset for it in December.
const ZONES: [(&str, &str); 3] = [
    ("UTC", "+00:00"),
    ("America/New_York", "-05:00"),
    ("Asia/Kolkata", "+05:30"),
];

/// Held by every test that changes MariaDB's global `time_zone`.
static MYSQL_GLOBAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sets MariaDB's global `time_zone` and puts the old value back when dropped, even after a
/// failed assertion.
struct GlobalZone {
    url: String,
    old: String,
}

impl GlobalZone {
    async fn set(db: &TestDb, zone: &str) -> GlobalZone {
        let old = db.rows("SELECT CAST(@@global.time_zone AS CHAR)").await[0][0]
            .clone()
            .unwrap_or_else(|| "SYSTEM".into());
        db.exec(&format!("SET GLOBAL time_zone = '{zone}'")).await;
        GlobalZone {
            url: db.url.clone(),
            old,
        }
    }
}

impl Drop for GlobalZone {
    fn drop(&mut self) {
        let (url, old) = (self.url.clone(), self.old.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                sqlx::any::install_default_drivers();
                if let Ok(pool) = sqlx::AnyPool::connect(&url).await {
                    let _ = sqlx::query(&format!("SET GLOBAL time_zone = '{old}'"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// A database whose sessions get `zone` by default: a PostgreSQL database of its own with
/// `ALTER DATABASE ... SET timezone`, or MariaDB with the global `time_zone` set (the caller
/// holds the guard).
async fn zoned_db(backend: Backend, pg_zone: &str) -> TestDb {
    let db = TestDb::new(backend).await;
    if backend == Backend::Postgres {
        db.exec(&format!(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), '{pg_zone}'); END $$"
        ))
        .await;
    }
    db
}

/// Runs statements in one session with the zone an application's session would get.
async fn as_application(db: &TestDb, pg_zone: &str, statements: &[String]) {
    let mut conn = db.pool.acquire().await.expect("connection");
    let set = match db.backend {
        Backend::Postgres => format!("SET timezone = '{pg_zone}'"),
        Backend::MySql => "SET time_zone = @@global.time_zone".to_string(),
        Backend::Sqlite => "SELECT 1".to_string(),
    };
    sqlx::query(&set)
        .execute(&mut *conn)
        .await
        .expect("set zone");
    for sql in statements {
        sqlx::query(sql)
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}\n=> {e}"));
    }
    // The connection goes back to the pool with the zone reset to the driver's UTC.
    let reset = match db.backend {
        Backend::Postgres => "SET timezone = 'UTC'",
        Backend::MySql => "SET time_zone = '+00:00'",
        Backend::Sqlite => "SELECT 1",
    };
    sqlx::query(reset).execute(&mut *conn).await.expect("reset");
}

/// How the application writes "now" into a naive column.
#[derive(Clone, Copy, PartialEq)]
enum Writer {
    /// The database fills it (`DEFAULT now()`, `NOW(6)`): wall time in the session's zone.
    Database,
    /// An ORM writes UTC (Prisma's `timestamp(3)`).
    Utc,
}

/// A `jobs` table with naive `timestamp(3)` / `DATETIME(3)` columns, and two running jobs:
/// 1 beat 2 minutes ago, 2 beat 10 minutes ago. Both created 15 minutes ago.
async fn naive_jobs(db: &TestDb, pg_zone: &str, writer: Writer) {
    let ts = db.ty("naive");
    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {} NOT NULL, created_at {ts} NOT NULL, \
         updated_at {ts} NOT NULL, completed_at {ts} NULL, error {} NULL)",
        db.ty("text"),
        db.ty("longtext")
    ))
    .await;
    let now = match (db.backend, writer) {
        (Backend::Postgres, Writer::Database) => "LOCALTIMESTAMP".to_string(),
        (Backend::Postgres, Writer::Utc) => "(now() AT TIME ZONE 'UTC')".to_string(),
        (Backend::MySql, Writer::Database) => "NOW(6)".to_string(),
        (Backend::MySql, Writer::Utc) => "UTC_TIMESTAMP(6)".to_string(),
        (Backend::Sqlite, _) => "datetime('now')".to_string(),
    };
    let minus = |minutes: i64| match db.backend {
        Backend::Postgres => format!("{now} - interval '{minutes} minutes'"),
        Backend::MySql => format!("{now} - INTERVAL {minutes} MINUTE"),
        Backend::Sqlite => format!("datetime('now', '-{minutes} minutes')"),
    };
    let rows: Vec<String> = [(1, 2), (2, 10)]
        .iter()
        .map(|(id, beat)| {
            format!(
                "INSERT INTO jobs (id, status, created_at, updated_at) VALUES ({id}, 'running', {}, {})",
                minus(15),
                minus(*beat)
            )
        })
        .collect();
    as_application(db, pg_zone, &rows).await;
}

/// The config of those tables: a heartbeat rule over after 5 minutes that fails the job.
fn naive_config(db: &TestDb, timezone: Option<&str>, extra: &str) -> PathBuf {
    let mut c = TestConfig::new(db.jobwarden_url())
        .jobs("finished_at = \"completed_at\"")
        .jobs("error = \"error\"")
        .heartbeat_rule("hb", "5m", "action = \"fail\"")
        .state(&db.dir().join("state"));
    if let Some(tz) = timezone {
        c = c.database(&format!("timezone = \"{tz}\""));
    }
    if !extra.is_empty() {
        c = c.section(extra);
    }
    c.write(db.dir().join(format!(
        "jw-{}.toml",
        timezone.unwrap_or("unset").replace('/', "-")
    )))
}

async fn statuses(db: &TestDb) -> Vec<(String, String)> {
    db.rows(&format!(
        "SELECT {}, {} FROM jobs ORDER BY id",
        db.text("id"),
        db.text("status")
    ))
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap_or_default(),
        )
    })
    .collect()
}

fn running(ids: &[&str]) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| (id.to_string(), "running".to_string()))
        .collect()
}

/// Seconds between `completed_at` and "now" as the application's session sees it.
async fn completed_skew(db: &TestDb, pg_zone: &str, id: i64) -> f64 {
    let mut conn = db.pool.acquire().await.expect("connection");
    let set = match db.backend {
        Backend::Postgres => format!("SET timezone = '{pg_zone}'"),
        _ => "SET time_zone = @@global.time_zone".to_string(),
    };
    sqlx::query(&set).execute(&mut *conn).await.expect("set");
    let sql = match db.backend {
        Backend::Postgres => format!(
            "SELECT (extract(epoch from (LOCALTIMESTAMP - completed_at)))::float8 FROM jobs WHERE id = {id}"
        ),
        _ => format!(
            "SELECT CAST(TIMESTAMPDIFF(MICROSECOND, completed_at, NOW(6)) / 1e6 AS DOUBLE) FROM jobs WHERE id = {id}"
        ),
    };
    let row = sqlx::query(&sql).fetch_one(&mut *conn).await.expect(&sql);
    let skew: f64 = row.try_get(0).expect("skew");
    let reset = match db.backend {
        Backend::Postgres => "SET timezone = 'UTC'",
        _ => "SET time_zone = '+00:00'",
    };
    sqlx::query(reset).execute(&mut *conn).await.expect("reset");
    skew
}

/// `validate --connect`: the exit code and everything it printed.
fn validate_connect(db: &TestDb, config: &std::path::Path) -> (i32, String) {
    let out = jobwarden(
        db.jobwarden_url(),
        &[
            "validate",
            "--connect",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The age jobwarden reports for a job, in seconds.
fn age_of(report: &serde_json::Value, id: &str) -> Option<u64> {
    report["findings"]
        .as_array()?
        .iter()
        .find(|f| f["job_id"] == id)
        .and_then(|f| f["age_seconds"].as_u64())
}

/// With `timezone = "database"` (filled by `now()`) or `"UTC"` (an ORM writing UTC), in every
/// zone: the 2-minute-old job is left alone and the 10-minute-old one is found, by `check`
/// and by `recover`, which writes `completed_at` in the zone the application reads it in.
async fn zone_is_followed(backend: Backend, pg_zone: &str, my_zone: &str, writer: Writer) {
    let db = zoned_db(backend, pg_zone).await;
    let _global = match backend {
        Backend::MySql => Some(GlobalZone::set(&db, my_zone).await),
        _ => None,
    };
    naive_jobs(&db, pg_zone, writer).await;
    let setting = match writer {
        Writer::Database => "database",
        Writer::Utc => "UTC",
    };
    let config = naive_config(&db, Some(setting), "");
    let (code, text) = validate_connect(&db, &config);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("jobs.heartbeat_at"), "{text}");

    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["check"]);
    assert_eq!(
        findings(&report),
        common::expect(&[("2", "stalled", "hb")]),
        "{backend:?} {pg_zone} {setting}: {report}"
    );
    assert_eq!(code, 1);
    let age = age_of(&report, "2").unwrap_or_default();
    eprintln!(
        "{backend:?} zone {pg_zone} timezone={setting}: job silent for 600 s reported {age} s"
    );
    assert!((600..700).contains(&age), "age {age}");

    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["recover"]);
    assert_eq!(code, 0, "job 2 failed, nothing left: {report}");
    let mut expected = running(&["1"]);
    expected.push(("2".into(), "failed".into()));
    assert_eq!(statuses(&db).await, expected);
    if backend != Backend::Sqlite && writer == Writer::Database {
        let skew = completed_skew(&db, pg_zone, 2).await;
        assert!(
            skew.abs() < 60.0,
            "completed_at is {skew} s off in the application's zone"
        );
    }
}

/// With `timezone` unset and a zone that is not UTC: findings are reported (reading as UTC),
/// nothing is written, and `validate --connect` exits 2 naming the column.
async fn unset_zone_never_writes(backend: Backend, pg_zone: &str, my_zone: &str) {
    let db = zoned_db(backend, pg_zone).await;
    let _global = match backend {
        Backend::MySql => Some(GlobalZone::set(&db, my_zone).await),
        _ => None,
    };
    naive_jobs(&db, pg_zone, Writer::Database).await;
    let config = naive_config(&db, None, "");
    let (code, text) = validate_connect(&db, &config);
    let before = statuses(&db).await;
    if pg_zone == "UTC" {
        assert_eq!(code, 0, "{text}");
        let (_, report) = jobwarden_json(db.jobwarden_url(), &config, &["recover"]);
        assert_eq!(findings(&report), common::expect(&[("2", "stalled", "hb")]));
        return;
    }
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("`jobs.heartbeat_at` (line ") && text.contains("(`updated_at`, "),
        "names the column: {text}"
    );
    assert!(
        text.contains("timezone = \"UTC\"") && text.contains("timezone = \"database\""),
        "gives both choices: {text}"
    );

    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["recover"]);
    let outcomes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["outcome"].as_str().unwrap_or_default())
        .collect();
    assert!(
        outcomes.iter().all(|o| *o == "limited"),
        "{pg_zone}: every write held back: {report}"
    );
    assert_eq!(statuses(&db).await, before, "nothing written");
    if pg_zone == "America/New_York" {
        // Read as UTC, New York's wall time looks five hours old: both found, neither written.
        eprintln!(
            "{backend:?} zone {pg_zone} timezone unset: job silent for 600 s reported {} s",
            age_of(&report, "2").unwrap_or_default()
        );
        assert_eq!(code, 1);
        assert_eq!(
            findings(&report),
            common::expect(&[("1", "stalled", "hb"), ("2", "stalled", "hb")])
        );
    } else {
        // Read as UTC, Kolkata's wall time is 5h 30m ahead of the clock: warnings, no finding.
        assert_eq!(findings(&report), vec![], "{report}");
        let warnings = report["warnings"].to_string();
        eprintln!("{backend:?} zone {pg_zone} timezone unset: {warnings}");
        assert!(
            warnings.contains("ahead of the database clock"),
            "{warnings}"
        );
    }
}

#[tokio::test]
async fn postgres_naive_columns_filled_by_now_with_timezone_database() {
    for (pg, my) in ZONES {
        zone_is_followed(Backend::Postgres, pg, my, Writer::Database).await;
    }
}

#[tokio::test]
async fn postgres_prisma_utc_columns_with_timezone_utc() {
    for (pg, my) in ZONES {
        zone_is_followed(Backend::Postgres, pg, my, Writer::Utc).await;
    }
}

#[tokio::test]
async fn postgres_naive_columns_without_timezone_are_never_written() {
    for (pg, my) in ZONES {
        unset_zone_never_writes(Backend::Postgres, pg, my).await;
    }
}

#[tokio::test]
async fn mariadb_datetime_columns_in_every_zone() {
    let _lock = MYSQL_GLOBAL.lock().await;
    for (pg, my) in ZONES {
        zone_is_followed(Backend::MySql, pg, my, Writer::Database).await;
        zone_is_followed(Backend::MySql, pg, my, Writer::Utc).await;
        unset_zone_never_writes(Backend::MySql, pg, my).await;
    }
}

/// MariaDB rows written by `NOW()` in New York, read with `timezone = "UTC"` (the Django
/// `USE_TZ=False` mistake): every row looks five hours old, so the zone is named, `validate
/// --connect` refuses the config, and `recover` writes nothing, not even to the job that beat
/// two minutes ago.
#[tokio::test]
async fn mariadb_new_york_rows_read_as_utc_are_held_with_the_zones_advice() {
    let _lock = MYSQL_GLOBAL.lock().await;
    let db = zoned_db(Backend::MySql, "America/New_York").await;
    let _global = GlobalZone::set(&db, "-05:00").await;
    naive_jobs(&db, "America/New_York", Writer::Database).await;
    let config = naive_config(&db, Some("UTC"), "");
    let advice = "rows look written in UTC-5; set `[database] timezone`";
    let (code, text) = validate_connect(&db, &config);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("`database.timezone` (line ")
            && text.contains("the newest heartbeat is 5h 2m old")
            && text.contains(advice),
        "{text}"
    );
    let before = statuses(&db).await;
    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["recover"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report["findings"]
            .as_array()
            .is_some_and(|f| f.len() == 2 && f.iter().all(|f| f["outcome"] == "limited")),
        "every write held back: {report}"
    );
    assert!(report["warnings"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains(advice)));
    assert_eq!(statuses(&db).await, before, "nothing written");
}

#[tokio::test]
async fn mariadb_daemon_follows_the_database_zone() {
    let _lock = MYSQL_GLOBAL.lock().await;
    daemon_follows_the_zone(Backend::MySql, "America/New_York", "-05:00").await;
}

#[tokio::test]
async fn postgres_daemon_follows_the_database_zone() {
    daemon_follows_the_zone(Backend::Postgres, "Asia/Kolkata", "+05:30").await;
    daemon_follows_the_zone(Backend::Postgres, "America/New_York", "-05:00").await;
}

#[test]
fn an_unknown_zone_name_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new("sqlite://x.db")
        .database("timezone = \"Mars/Olympus\"")
        .write(dir.path().join("jw.toml"));
    let out = jobwarden(
        "sqlite://x.db",
        &["validate", "--config", config.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`database.timezone`") && err.contains("Mars/Olympus"),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_text_without_offset_is_utc_unless_told() {
    zone_is_followed(Backend::Sqlite, "UTC", "+00:00", Writer::Database).await;
}

/// The daemon with `timezone = "database"` fails only the silent job.
async fn daemon_follows_the_zone(backend: Backend, pg_zone: &str, my_zone: &str) {
    let db = zoned_db(backend, pg_zone).await;
    let _global = match backend {
        Backend::MySql => Some(GlobalZone::set(&db, my_zone).await),
        _ => None,
    };
    naive_jobs(&db, pg_zone, Writer::Database).await;
    let port = 0;
    let config = naive_config(
        &db,
        Some("database"),
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n\n[safety]\nstartup_grace = \"0s\""),
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("interval = \"1s\"\n{text}")).unwrap();
    let daemon = Daemon::start(&config, &[]);
    common::wait_for("job 2 failed", Duration::from_secs(20), || async {
        (statuses(&db).await[1].1 == "failed").then_some(())
    })
    .await;
    let scans = scans_total(&daemon).await;
    wait_scans(&daemon, scans + 2.0).await;
    assert_eq!(statuses(&db).await[0], ("1".into(), "running".into()));
    assert_eq!(daemon.stop().await, 0);
}

async fn scans_total(daemon: &Daemon) -> f64 {
    common::get(&daemon.url("/metrics"))
        .await
        .and_then(|(_, body)| common::metric(&body, "jobwarden_scans_total"))
        .unwrap_or(0.0)
}

/// Waits until the daemon has finished `n` scans.
async fn wait_scans(daemon: &Daemon, n: f64) {
    common::wait_for("more scans", Duration::from_secs(20), || async {
        (scans_total(daemon).await >= n).then_some(())
    })
    .await;
}

/// A row whose heartbeat is two hours ahead of the database clock is a warning, never a
/// finding, never written.
#[tokio::test]
async fn a_timestamp_in_the_future_is_a_warning_and_never_written() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.exec(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT NOT NULL, created_at TEXT NOT NULL, \
         updated_at TEXT, error TEXT)",
    )
    .await;
    db.exec(
        "INSERT INTO jobs VALUES (1, 'running', datetime('now', '-3 hours'), datetime('now', '+2 hours'), NULL)",
    )
    .await;
    let config = TestConfig::new(db.jobwarden_url())
        .heartbeat_rule("hb", "5m", "action = \"fail\"")
        .section("[[rules]]\nname = \"old\"\nstatuses = [\"running\"]\nsignal = \"created\"\nafter = \"1h\"\naction = \"fail\"")
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["recover"]);
    assert_eq!((code, findings(&report)), (0, vec![]), "{report}");
    let message = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["job_id"] == "1")
        .and_then(|w| w["message"].as_str())
        .unwrap_or_default();
    assert!(
        message.starts_with("heartbeat_at is ")
            && message.ends_with(
                " ahead of the database clock: check `[database] timezone` (or the clock of whoever writes it); not judged"
            ),
        "{report}"
    );
    assert_eq!(statuses(&db).await, running(&["1"]));
}

// ------------------------------------------------------------------------------------------
// Re-queues: a job jobwarden re-queued counts its pending age from the re-queue.

/// A hung running job (silent 30 minutes, created an hour ago) and two rules: re-queue hung
/// running jobs, fail jobs pending longer than 10 minutes (the seed's rule).
async fn requeue_setup(backend: Backend, extra: &str) -> (TestDb, PathBuf) {
    let db = TestDb::new(backend).await;
    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {} NOT NULL, created_at {ts} NOT NULL, \
         updated_at {ts} NULL, error {} NULL)",
        db.ty("text"),
        db.ty("longtext"),
        ts = db.ty("ts")
    ))
    .await;
    db.exec(&format!(
        "INSERT INTO jobs (id, status, created_at, updated_at) VALUES (1, 'running', {}, {})",
        db.ago(60.0),
        db.ago(30.0)
    ))
    .await;
    let config = TestConfig::new(db.jobwarden_url())
        .top(extra)
        .jobs("error = \"error\"")
        .statuses(
            "pending = [\"pending\", \"queued\"]\nrunning = [\"running\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]",
        )
        .heartbeat_rule("hung", "5m", "action = \"requeue\"")
        .section(
            "[[rules]]\nname = \"pending-too-long\"\nstatuses = [\"pending\", \"queued\"]\n\
             signal = \"created\"\nafter = \"10m\"\naction = \"fail\"",
        )
        .state(&db.dir().join("state"));
    let path = config.write(db.dir().join("jw.toml"));
    (db, path)
}

async fn requeue_then_recover_again(backend: Backend) {
    let (db, config) = requeue_setup(backend, "").await;
    let (code, first) = jobwarden_json(db.jobwarden_url(), &config, &["recover"]);
    assert_eq!(code, 0, "re-queued: nothing left: {first}");
    assert_eq!(statuses(&db).await, vec![("1".into(), "pending".into())]);
    let (code, second) = jobwarden_json(db.jobwarden_url(), &config, &["recover"]);
    assert_eq!(
        (code, findings(&second)),
        (0, vec![]),
        "pending since the re-queue, not for an hour: {second}"
    );
    assert_eq!(statuses(&db).await, vec![("1".into(), "pending".into())]);
}

per_backend!(
    a_requeued_job_is_not_failed_by_the_next_recover,
    requeue_then_recover_again
);

async fn requeue_in_the_daemon(backend: Backend) {
    let port = 0;
    let (db, config) = requeue_setup(backend, "interval = \"1s\"").await;
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1\n"),
    )
    .unwrap();
    let daemon = Daemon::start(&config, &[]);
    common::wait_for("job 1 re-queued", Duration::from_secs(20), || async {
        (statuses(&db).await[0].1 == "pending").then_some(())
    })
    .await;
    let scans = scans_total(&daemon).await;
    wait_scans(&daemon, scans + 4.0).await;
    assert_eq!(
        statuses(&db).await,
        vec![("1".into(), "pending".into())],
        "{}",
        daemon.log()
    );
    assert_eq!(daemon.stop().await, 0);
}

per_backend!(
    a_requeued_job_is_not_failed_by_the_daemon,
    requeue_in_the_daemon
);

// ------------------------------------------------------------------------------------------
// `--older-than` by liveness, on the operations shape.

async fn older_than_on_operations(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (text, ts) = (db.ty("text"), db.ty("ts"));
    db.exec(&format!(
        "CREATE TABLE operations (operation_id {text} PRIMARY KEY, status {text} NOT NULL, phase {text} NULL, \
         created_at {ts} NOT NULL, last_heartbeat_at {ts} NULL, completed_at {ts} NULL, \
         error_message {} NULL, parent_operation_id {text} NULL)",
        db.ty("longtext")
    ))
    .await;
    for (id, phase, beat) in [
        ("train", "training", 0.5),
        ("design", "designing", 120.0),
        ("backtest", "backtesting", 120.0),
    ] {
        db.exec(&format!(
            "INSERT INTO operations (operation_id, status, phase, created_at, last_heartbeat_at) \
             VALUES ('{id}', 'running', '{phase}', {}, {})",
            db.ago(180.0),
            db.ago(beat)
        ))
        .await;
    }
    let config = db.config(
        "operations.toml",
        &[("[database]", "[database]\ntimezone = \"UTC\"")],
    );
    let (code, report) = jobwarden_json(
        db.jobwarden_url(),
        &config,
        &["recover", "--older-than", "1h"],
    );
    assert_eq!(code, 1);
    let status = |rows: Vec<Vec<Option<String>>>| -> Vec<(String, String)> {
        rows.into_iter()
            .map(|r| {
                (
                    r[0].clone().unwrap_or_default(),
                    r[1].clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    let query = format!(
        "SELECT {}, {} FROM operations ORDER BY operation_id",
        db.text("operation_id"),
        db.text("status")
    );
    assert_eq!(
        status(db.rows(&query).await),
        vec![
            ("backtest".into(), "running".into()),
            ("design".into(), "failed".into()),
            ("train".into(), "running".into()),
        ],
        "{report}"
    );
    if backend == Backend::MySql {
        // finished_at is written as the application would, with sub-second precision.
        let micros = db
            .rows("SELECT CAST(MICROSECOND(completed_at) AS CHAR) FROM operations WHERE operation_id = 'design'")
            .await;
        assert_ne!(micros[0][0].as_deref(), Some("0"), "NOW(6), not NOW()");
    }
    let older: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "older-than")
        .map(|f| {
            (
                f["job_id"].as_str().unwrap_or_default().to_string(),
                f["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        older,
        vec![
            ("backtest".to_string(), "alert".to_string()),
            ("design".to_string(), "fail".to_string()),
        ],
        "the operation that beat 30 s ago is not stuck; the worker phase is reported only"
    );
    // --force writes the alert-only phase too.
    let (_, forced) = jobwarden_json(
        db.jobwarden_url(),
        &config,
        &["recover", "--older-than", "1h", "--force"],
    );
    assert_eq!(
        status(db.rows(&query).await)[0],
        ("backtest".into(), "failed".into()),
        "{forced}"
    );
}

per_backend!(
    older_than_measures_liveness_and_respects_alert_only_rules,
    older_than_on_operations
);
