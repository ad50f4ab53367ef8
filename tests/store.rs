//! The daemon against a database that stops cooperating: sessions refused, queries that run
//! long when it is told to stop, rows locked by another writer. Each drives the real binary
//! against a real database and asserts what an operator would see.

mod common;

use std::time::Duration;

use common::{get, metric, wait_for, Backend, Daemon, TestConfig, TestDb};
use jobwarden::adapters::store::Store;
use jobwarden::app::actions;
use jobwarden::app::scan::Scanner;
use jobwarden::core::detect::Outcome;

/// The value of `jobwarden_database_up` once it reads `want`.
async fn database_up(daemon: &Daemon, want: f64) {
    wait_for(
        &format!("jobwarden_database_up {want}"),
        Duration::from_secs(30),
        || async {
            get(&daemon.url("/metrics"))
                .await
                .filter(|(_, m)| metric(m, "jobwarden_database_up") == Some(want))
        },
    )
    .await;
}

/// A PostgreSQL login role made for one test, dropped when it goes out of scope, panic or
/// not. Declare it before the [`TestDb`] its grants are in: that database goes first, taking
/// the grants with it, so nothing holds the role back.
struct Role(String);

impl Role {
    fn new(prefix: &str) -> Role {
        Role(format!("{prefix}_{}", std::process::id()))
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let sql = format!("DROP ROLE IF EXISTS {}", self.0);
        let url = std::env::var("JOBWARDEN_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        // The test's runtime may be gone: a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let _ = sqlx::query(&sql).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// CONNECT revoked mid-run, and every session of jobwarden's role terminated: the server
/// still answers (with "permission denied for database"), but no session can be had, and
/// `jobwarden_database_up` says 0 until CONNECT is granted back.
#[tokio::test]
async fn revoked_connect_takes_database_up_to_zero_and_back() {
    let role = Role::new("jw_sessions");
    let db = TestDb::new(Backend::Postgres).await;
    db.exec("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status text, created_at timestamptz, updated_at timestamptz)")
        .await;
    db.exec(&format!(
        "INSERT INTO jobs VALUES (1, 'running', {}, {})",
        db.ago(10.0),
        db.ago(0.1)
    ))
    .await;
    let role = &role.0;
    let database = db.rows("SELECT current_database()::text").await[0][0]
        .clone()
        .expect("database name");
    db.exec(&format!("DROP ROLE IF EXISTS {role}")).await;
    db.exec(&format!("CREATE ROLE {role} LOGIN")).await;
    db.exec(&format!("GRANT SELECT ON jobs TO {role}")).await;
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.url, "the test URL names the postgres user");
    let config = TestConfig::new(&url)
        .top("interval = \"300ms\"\ndry_run = true")
        .database("query_timeout = \"2s\"")
        .heartbeat_rule("hb", "30m", "")
        .state(&db.dir().join("state"))
        .http(0)
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    database_up(&daemon, 1.0).await;

    db.exec(&format!(
        "REVOKE CONNECT ON DATABASE {database} FROM PUBLIC, {role}"
    ))
    .await;
    db.exec(&format!(
        "SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity WHERE usename = '{role}'"
    ))
    .await;
    database_up(&daemon, 0.0).await;
    let (code, body) = get(&daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("permission denied"), "{body}");
    let metrics = get(&daemon.url("/metrics")).await.expect("metrics").1;
    assert!(
        metric(&metrics, "jobwarden_scan_errors_total{source=\"database\"}").unwrap_or(0.0) >= 1.0,
        "an outage, not a rejected query: {metrics}"
    );

    db.exec(&format!("GRANT CONNECT ON DATABASE {database} TO {role}"))
        .await;
    database_up(&daemon, 1.0).await;
    assert_eq!(daemon.stop().await, 0);
}

/// SIGTERM while the scan's query runs (a `where` that takes 20 s, a query timeout of 60 s):
/// the query is not waited for, and the daemon exits 0 within 5 s. On PostgreSQL the
/// statement itself is cancelled on the server; on MariaDB its connection is closed.
async fn sigterm_ends_a_slow_scan(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.native_jobs_table().await;
    db.exec(&format!(
        "INSERT INTO jobs VALUES (1, 'running', {}, {})",
        db.ago(90.0),
        db.ago(45.0)
    ))
    .await;
    let state = db.dir().join("state");
    let config = TestConfig::new(&db.url)
        .top("interval = \"1s\"")
        .database("query_timeout = \"60s\"")
        .jobs(match backend {
            Backend::Postgres => "where = \"pg_sleep(20) IS NOT NULL\"",
            _ => "where = \"SLEEP(20) = 0\"",
        })
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section("[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1")
        .state(&state)
        .http(0)
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    let sleeping = || async {
        let rows = db
            .rows(match backend {
                Backend::Postgres => {
                    "SELECT pid::text FROM pg_stat_activity WHERE state = 'active' \
                     AND query LIKE '%pg_sleep(20) IS%' AND datname = current_database() \
                     AND pid <> pg_backend_pid()"
                }
                _ => {
                    "SELECT CAST(ID AS CHAR) FROM information_schema.PROCESSLIST \
                     WHERE INFO LIKE '%SLEEP(20) =%' AND DB = DATABASE() AND ID <> CONNECTION_ID()"
                }
            })
            .await;
        (!rows.is_empty()).then_some(())
    };
    wait_for(
        "the scan's query running",
        Duration::from_secs(20),
        sleeping,
    )
    .await;

    let asked = tokio::time::Instant::now();
    let code = daemon.stop().await;
    let took = asked.elapsed();
    assert_eq!(code, 0);
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    if backend == Backend::Postgres {
        // The statement itself was cancelled on the server, not left to run out its 20 s.
        wait_for(
            "the statement cancelled on the server",
            Duration::from_secs(3),
            || async { sleeping().await.is_none().then_some(()) },
        )
        .await;
    }
    assert_eq!(
        db.rows("SELECT status FROM jobs").await[0][0].as_deref(),
        Some("running"),
        "nothing written by a scan that never finished"
    );
    // The audit trail is whole: no intent without its outcome.
    let trail = std::fs::read_to_string(state.join("audit.jsonl")).unwrap_or_default();
    let stages: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line"))
        .collect();
    let intents = stages.iter().filter(|e| e["stage"] == "intent").count();
    let outcomes = stages.iter().filter(|e| e["stage"] == "outcome").count();
    assert_eq!(intents, outcomes, "{trail}");
}

per_backend!(
    sigterm_mid_scan,
    sigterm_ends_a_slow_scan,
    postgres => Postgres,
    mysql => MySql
);

/// One scan of the library's, and its actions.
async fn scan_and_act(
    scanner: &mut Scanner,
    config: &jobwarden::config::Config,
) -> (jobwarden::app::scan::Report, actions::Executed) {
    let mut report = scanner.scan(config, None).await.expect("scan");
    let executed = actions::execute(
        scanner.store(),
        config,
        &mut report,
        actions::Execute::default(),
    )
    .await;
    (report, executed)
}

/// Writes of rows another transaction holds (PostgreSQL and MariaDB: `SELECT ... FOR UPDATE`;
/// SQLite: `BEGIN IMMEDIATE`) give up within the scan's lock budget (each 1 s, 3 s in all),
/// not a query timeout per row: every write is held back as locked, none is an error, and
/// once the lock goes the same writes are made.
async fn locked_rows_are_held_back_within_the_budget(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.native_jobs_table().await;
    for id in 1..=6 {
        db.running(id, 90.0, 45.0).await;
    }
    let text = TestConfig::new(&db.url)
        .database("query_timeout = \"20s\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .text();
    let mut config =
        jobwarden::config::parse(&text, db.dir().join("jw.toml").as_path(), None, &|_| None)
            .expect("config");
    let state = tempfile::tempdir().expect("state dir");
    config.state_dir = state.path().to_path_buf();
    config.safety.max_stuck_fraction = 1.0;
    let mut holder = db.pool.acquire().await.expect("connection");
    let hold: &[&str] = match backend {
        Backend::Sqlite => &["BEGIN IMMEDIATE"],
        _ => &["BEGIN", "SELECT id FROM jobs FOR UPDATE"],
    };
    for sql in hold {
        sqlx::query(sql)
            .execute(&mut *holder)
            .await
            .expect("hold the rows");
    }
    let store = Store::connect(&config).await.expect("connect");
    let mut scanner = Scanner::new(store);
    let since = tokio::time::Instant::now();
    let (report, executed) = scan_and_act(&mut scanner, &config).await;
    let took = since.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "six locked writes took {took:?}"
    );
    assert!(executed.applied.is_empty(), "{:?}", executed.applied);
    assert_eq!(executed.limited.len(), 6, "{:?}", executed.limited);
    assert!(executed
        .limited
        .iter()
        .all(|(_, why)| why.label() == "locked"));
    assert!(report
        .findings
        .iter()
        .all(|f| f.outcome == Outcome::Limited));
    assert!(
        executed.any_error(),
        "recover exits 3: found, and could not fix"
    );

    sqlx::query("ROLLBACK")
        .execute(&mut *holder)
        .await
        .expect("release");
    drop(holder);
    let (_, executed) = scan_and_act(&mut scanner, &config).await;
    assert_eq!(
        executed
            .applied
            .iter()
            .filter(|a| a.outcome == Outcome::Applied)
            .count(),
        6,
        "{:?}",
        executed.applied
    );
    scanner.store().close().await;
}

per_backend!(locked_rows, locked_rows_are_held_back_within_the_budget);

/// The server ends every one of jobwarden's read sessions between two scans (a restart, an
/// operator's kill): the next scan runs on a new session and succeeds. A session idle less
/// than a minute is not pinged before use (that was a round trip per scan), so the scan's
/// own statement is what finds it gone, and the store runs it again on another.
async fn read_sessions_ended_between_scans(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.native_jobs_table().await;
    db.exec(&format!(
        "INSERT INTO jobs VALUES (1, 'running', {}, {}), (2, 'running', {}, {})",
        db.ago(3600.0),
        db.ago(10.0),
        db.ago(3600.0),
        db.ago(2400.0)
    ))
    .await;
    let path = TestConfig::new(&db.url)
        .heartbeat_rule("hb", "30m", "")
        .write(db.dir().join("jw.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let config = jobwarden::config::parse(&text, &path, None, &|_| None).expect("config");
    let spare = sessions(&db, backend).await;
    let mut scanner = Scanner::new(Store::connect(&config).await.expect("connect"));
    let stalled = |report: &jobwarden::app::scan::Report| -> Vec<String> {
        report.findings.iter().map(|f| f.job_id.clone()).collect()
    };
    let first = scanner.scan(&config, None).await.expect("first scan");
    assert_eq!(stalled(&first), ["2"]);
    for round in 1..=2 {
        let ended = end_other_sessions(&db, backend, &spare).await;
        assert!(
            ended >= 1,
            "round {round}: no session of jobwarden's to end"
        );
        let report = scanner.scan(&config, None).await.unwrap_or_else(|e| {
            panic!("round {round}: the scan after {ended} sessions ended: {e}")
        });
        assert_eq!(stalled(&report), ["2"], "round {round}");
    }
    scanner.store().close().await;
}

/// The ids of the test database's sessions (PostgreSQL pids, MariaDB connection ids).
async fn sessions(db: &TestDb, backend: Backend) -> Vec<String> {
    let sql = match backend {
        Backend::Postgres => {
            "SELECT pid::text FROM pg_stat_activity WHERE datname = current_database()"
        }
        _ => "SELECT CAST(ID AS CHAR) FROM information_schema.PROCESSLIST WHERE DB = DATABASE()",
    };
    let rows = db.rows(sql).await;
    rows.into_iter().filter_map(|mut r| r.remove(0)).collect()
}

/// Ends the test database's sessions but `spare` (the test's own); returns how many.
async fn end_other_sessions(db: &TestDb, backend: Backend, spare: &[String]) -> usize {
    let ended: Vec<String> = sessions(db, backend)
        .await
        .into_iter()
        .filter(|id| !spare.contains(id))
        .collect();
    for id in &ended {
        match backend {
            Backend::Postgres => db.exec(&format!("SELECT pg_terminate_backend({id})")).await,
            _ => db.exec(&format!("KILL {id}")).await,
        }
    }
    ended.len()
}

per_backend!(
    ended_sessions,
    read_sessions_ended_between_scans,
    postgres => Postgres,
    mysql => MySql
);

/// The store keeps one read session aside from its pool between reads (sqlx pings a session
/// handed back to its pool). Reads at once, more than the pool holds, each get a session:
/// none waits for the kept one, with a pool of one or of two.
async fn reads_at_once_each_get_a_session(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.native_jobs_table().await;
    for pool in [1, 2] {
        let path = TestConfig::new(&db.url)
            .database(&format!("max_connections = {pool}\nquery_timeout = \"2s\""))
            .heartbeat_rule("hb", "30m", "")
            .write(db.dir().join(format!("jw-{pool}.toml")));
        let text = std::fs::read_to_string(&path).unwrap();
        let config = jobwarden::config::parse(&text, &path, None, &|_| None).expect("config");
        let store = Store::connect(&config).await.expect("connect");
        for round in 0..3 {
            let mut reads = tokio::task::JoinSet::new();
            for _ in 0..6 {
                let store = store.clone();
                reads.spawn(async move { store.clock().await });
            }
            while let Some(read) = reads.join_next().await {
                read.expect("the read's task")
                    .unwrap_or_else(|e| panic!("pool of {pool}, round {round}: {e}"));
            }
        }
        store.close().await;
    }
}

per_backend!(
    reads_at_once,
    reads_at_once_each_get_a_session,
    postgres => Postgres,
    mysql => MySql
);
