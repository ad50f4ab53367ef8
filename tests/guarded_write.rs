//! The guarded write against real databases: a row that changed between the read and the
//! write (a heartbeat, a progress step, a status, its worker) or whose worker (`[workers]`)
//! beat again or came back is never touched, and the finding says `raced`. The race is
//! driven deterministically: read, change the row, then write.

mod common;

use std::path::Path;

use common::{Backend, TestConfig, TestDb};
use jobwarden::adapters::store::Store;
use jobwarden::app::actions;
use jobwarden::app::scan::Scanner;
use jobwarden::config::{self, Config};
use jobwarden::core::detect::Outcome;

async fn setup(db: &TestDb) -> Config {
    db.exec(&format!(
        "CREATE TABLE jobs (id {t} PRIMARY KEY, status {t} NOT NULL, created_at {ts}, updated_at {ts}, \
         completed_at {ts}, error {long}, metadata {json})",
        t = db.ty("text"),
        ts = db.ty("ts"),
        long = db.ty("longtext"),
        json = db.ty("json"),
    ))
    .await;
    let text = TestConfig::new(&db.url)
        .jobs("progress = \"metadata.steps\"\nfinished_at = \"completed_at\"\nerror = \"error\"")
        .heartbeat_rule("hb", "30m", r#"action = "fail""#)
        .text();
    config::parse(&text, Path::new("race.toml"), None, &|_| None).expect("config")
}

async fn insert_stalled(db: &TestDb, id: &str) {
    db.exec(&format!(
        "INSERT INTO jobs (id, status, created_at, updated_at, metadata) VALUES \
         ('{id}', 'running', {}, {}, '{{\"steps\": [\"a\"]}}')",
        db.ago(120.0),
        db.ago(45.0)
    ))
    .await;
}

async fn row(db: &TestDb, id: &str) -> (String, Option<String>) {
    let rows = db
        .rows(&format!(
            "SELECT {}, {} FROM jobs WHERE id = '{id}'",
            db.text("status"),
            db.text("error")
        ))
        .await;
    (rows[0][0].clone().unwrap_or_default(), rows[0][1].clone())
}

/// Reads, lets `change` run against the row, then writes; returns the outcome.
async fn race(db: &TestDb, config: &Config, id: &str, change: Option<String>) -> Outcome {
    let mut scanner = Scanner::new(Store::connect(config).await.expect("connect"));
    let mut report = scanner.scan(config, None).await.expect("scan");
    report.findings.retain(|f| f.job_id == id);
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let planned = actions::plan(&report.findings, &config.jobs);
    if let Some(sql) = change {
        db.exec(&sql).await;
    }
    let audit = jobwarden::adapters::audit::Context {
        environment: None,
        now: report.checked_at,
        forced: false,
        requested_by: None,
        batch: None,
        reason: None,
    };
    let state = tempfile::tempdir().expect("state dir");
    actions::apply(
        scanner.store(),
        &mut report.findings,
        planned,
        false,
        &audit,
        actions::Trail {
            state_dir: state.path(),
            audit_max_size: jobwarden::config::DEFAULT_AUDIT_MAX_SIZE,
            stop: None,
            dry_seen: None,
        },
    )
    .await;
    scanner.store().close().await;
    report.findings[0].outcome
}

async fn raced_rows_are_left_alone(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = setup(&db).await;
    for id in ["beat", "step", "done", "quiet"] {
        insert_stalled(&db, id).await;
    }
    let changes = [
        (
            "beat",
            format!(
                "UPDATE jobs SET updated_at = {} WHERE id = 'beat'",
                db.ago(0.0)
            ),
        ),
        (
            "step",
            "UPDATE jobs SET metadata = '{\"steps\": [\"a\", \"b\"]}' WHERE id = 'step'"
                .to_string(),
        ),
        (
            "done",
            "UPDATE jobs SET status = 'completed' WHERE id = 'done'".to_string(),
        ),
    ];
    for (id, sql) in changes {
        assert_eq!(
            race(&db, &config, id, Some(sql)).await,
            Outcome::Raced,
            "{id}"
        );
        let (status, error) = row(&db, id).await;
        assert_ne!(status, "failed", "{id}");
        assert_eq!(error, None, "{id}");
    }
    // Many rounds of the same race: a heartbeat between read and write always wins.
    for round in 0..20 {
        let id = format!("r{round}");
        insert_stalled(&db, &id).await;
        let sql = format!(
            "UPDATE jobs SET updated_at = {} WHERE id = '{id}'",
            db.ago(0.0)
        );
        assert_eq!(
            race(&db, &config, &id, Some(sql)).await,
            Outcome::Raced,
            "round {round}"
        );
        assert_eq!(row(&db, &id).await.0, "running");
    }
    // The control: nothing moved, so the write lands.
    assert_eq!(race(&db, &config, "quiet", None).await, Outcome::Applied);
    let (status, error) = row(&db, "quiet").await;
    assert_eq!(status, "failed");
    assert!(error
        .unwrap_or_default()
        .starts_with("jobwarden: hb: no heartbeat for 45m"));
}
per_backend!(raced, raced_rows_are_left_alone);

async fn null_progress_still_matches(backend: Backend) {
    // A row with no metadata at all: NULL must compare equal to NULL in the guard.
    let db = TestDb::new(backend).await;
    let config = setup(&db).await;
    db.exec(&format!(
        "INSERT INTO jobs (id, status, created_at, updated_at) VALUES ('n', 'running', {}, NULL)",
        db.ago(120.0)
    ))
    .await;
    assert_eq!(race(&db, &config, "n", None).await, Outcome::Applied);
    assert_eq!(row(&db, "n").await.0, "failed");
}
per_backend!(null_guards, null_progress_still_matches);

/// Jobs whose worker (`[workers]`) judges them: `jobs` (or, with `view`, a view over it, as
/// an application's own view of its queue would be) and `jw_workers`.
async fn setup_workers(db: &TestDb, view: bool) -> Config {
    db.workers_table("").await;
    db.exec(&format!(
        "CREATE TABLE jobs (id {t} PRIMARY KEY, status {t} NOT NULL, created_at {ts}, \
         updated_at {ts}, error {long}, worker_id {big})",
        t = db.ty("text"),
        ts = db.ty("ts"),
        long = db.ty("longtext"),
        big = db.ty("bigint"),
    ))
    .await;
    if view {
        db.exec("CREATE VIEW jobs_v AS SELECT * FROM jobs").await;
    }
    // (job, its own heartbeat minutes ago, its worker, that worker's beat minutes ago)
    for (id, own, worker, beat) in [
        ("beats", None, 1, Some(45.0)),
        ("silent", None, 2, Some(45.0)),
        ("comes-back", Some(40.0), 3, None),
        ("still-gone", Some(40.0), 4, None),
        ("handed-over", None, 5, Some(45.0)),
    ] {
        if let Some(beat) = beat {
            db.exec(&format!(
                "INSERT INTO jw_workers VALUES ({worker}, {})",
                db.ago(beat)
            ))
            .await;
        }
        db.exec(&format!(
            "INSERT INTO jobs (id, status, created_at, updated_at, worker_id) VALUES \
             ('{id}', 'running', {}, {}, {worker})",
            db.ago(120.0),
            own.map_or("NULL".to_string(), |m| db.ago(m)),
        ))
        .await;
    }
    let text = TestConfig::new(&db.url)
        .jobs("worker = \"worker_id\"\nerror = \"error\"")
        .heartbeat_rule("hb", "30m", r#"action = "fail""#)
        .section("[workers]\ntable = \"jw_workers\"\nheartbeat_at = \"last_heartbeat\"")
        .text();
    let text = match view {
        true => text.replace("table = \"jobs\"", "table = \"jobs_v\""),
        false => text,
    };
    config::parse(&text, Path::new("race.toml"), None, &|_| None).expect("config")
}

async fn a_worker_that_moves_between_read_and_write(db: &TestDb, config: &Config) {
    let changes = [
        // The silent worker beats again: its job is alive.
        (
            "beats",
            format!(
                "UPDATE jw_workers SET last_heartbeat = {} WHERE id = 1",
                db.ago(0.0)
            ),
        ),
        // The gone worker comes back.
        (
            "comes-back",
            format!("INSERT INTO jw_workers VALUES (3, {})", db.ago(0.0)),
        ),
        // Another worker took the job.
        (
            "handed-over",
            "UPDATE jobs SET worker_id = 2 WHERE id = 'handed-over'".to_string(),
        ),
    ];
    for (id, sql) in changes {
        assert_eq!(
            race(db, config, id, Some(sql)).await,
            Outcome::Raced,
            "{id}"
        );
        assert_eq!(row(db, id).await, ("running".to_string(), None), "{id}");
    }
    // Nothing moved: a worker still silent, or still gone, lets the write land.
    for id in ["silent", "still-gone"] {
        assert_eq!(race(db, config, id, None).await, Outcome::Applied, "{id}");
        assert_eq!(row(db, id).await.0, "failed", "{id}");
    }
}

async fn worker_races(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = setup_workers(&db, false).await;
    a_worker_that_moves_between_read_and_write(&db, &config).await;
    // Through a view as the jobs table, where the database writes one (SQLite needs a
    // trigger, which tests/views.rs covers).
    if backend != Backend::Sqlite {
        let db = TestDb::new(backend).await;
        let config = setup_workers(&db, true).await;
        a_worker_that_moves_between_read_and_write(&db, &config).await;
    }
}
per_backend!(worker_raced, worker_races);
