//! The four example configs in `config/`, each against its own table shape on real
//! PostgreSQL, MariaDB and SQLite, through the real binary: healthy jobs are left alone,
//! stuck ones are found, `check` and `recover --dry-run` write nothing, `recover` fails exactly
//! the right rows, and `--env` changes the thresholds.

mod common;

use common::{expect, findings, jobwarden, jobwarden_json, Backend, TestDb};

/// `validate --connect` proves the ready config on a table of its documented shape: exit 0.
fn validates(db: &TestDb, config: &std::path::Path) {
    let out = jobwarden(
        &db.url,
        &[
            "validate",
            "--connect",
            "--config",
            config.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: {}\n{}",
        config.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// research_jobs, as a Supabase app keeps it: uuid ids, timestamptz, metadata jsonb with steps
// and phase, sub-jobs pointing at a main job.

const R_HEALTHY: &str = "a0000000-0000-0000-0000-000000000001";
const R_STALLED: &str = "a0000000-0000-0000-0000-000000000002";
const R_SILENT: &str = "a0000000-0000-0000-0000-000000000003";
const R_PENDING_OLD: &str = "a0000000-0000-0000-0000-000000000004";
const R_CHILD: &str = "a0000000-0000-0000-0000-000000000005";
const R_PARENT_FAILED: &str = "a0000000-0000-0000-0000-000000000006";
const R_DONE: &str = "a0000000-0000-0000-0000-000000000007";
const R_NO_TIMES: &str = "a0000000-0000-0000-0000-000000000008";

async fn research_table(db: &TestDb) -> std::path::PathBuf {
    let id = if db.backend == Backend::Postgres {
        "uuid"
    } else {
        db.ty("text")
    };
    db.exec(&format!(
        "CREATE TABLE research_jobs (id {id} PRIMARY KEY, status {t} NOT NULL, created_at {ts}, \
         updated_at {ts}, completed_at {ts}, error {long}, metadata {json}, main_job_id {id})",
        t = db.ty("text"),
        ts = db.ty("ts"),
        long = db.ty("longtext"),
        json = db.ty("json"),
    ))
    .await;
    db.exec("CREATE INDEX research_jobs_status ON research_jobs (status)")
        .await;
    let rows = [
        (
            R_HEALTHY,
            "running",
            Some(20.0),
            Some(1.0),
            r#"{"phase":"designing","steps":["plan","search"]}"#,
            None,
        ),
        (
            R_STALLED,
            "running",
            Some(120.0),
            Some(45.0),
            r#"{"phase":"assessing","steps":["plan"]}"#,
            None,
        ),
        // Silent for 90 minutes: no heartbeat and no progress.
        (
            R_SILENT,
            "running",
            Some(200.0),
            Some(90.0),
            r#"{"phase":"designing","steps":["a","b","c"]}"#,
            None,
        ),
        (
            R_PENDING_OLD,
            "pending",
            Some(120.0),
            None,
            r#"{"steps":[]}"#,
            None,
        ),
        // Beating until 3 minutes ago (past [safety] min_age), under a failed parent.
        (
            R_CHILD,
            "running",
            Some(10.0),
            Some(3.0),
            r#"{"phase":"designing","steps":[]}"#,
            Some(R_PARENT_FAILED),
        ),
        (
            R_PARENT_FAILED,
            "failed",
            Some(15.0),
            Some(12.0),
            r#"{"steps":[]}"#,
            None,
        ),
        (
            R_DONE,
            "completed",
            Some(600.0),
            Some(500.0),
            r#"{"steps":["x"]}"#,
            None,
        ),
        (R_NO_TIMES, "running", None, None, r#"{"steps":[]}"#, None),
    ];
    for (id, status, created, updated, metadata, parent) in rows {
        let t = |m: Option<f64>| m.map_or("NULL".to_string(), |m| db.ago(m));
        db.exec(&format!(
            "INSERT INTO research_jobs (id, status, created_at, updated_at, metadata, main_job_id) \
             VALUES ('{id}', '{status}', {}, {}, '{metadata}', {})",
            t(created),
            t(updated),
            parent.map_or("NULL".to_string(), |p| format!("'{p}'"))
        ))
        .await;
    }
    let edits: &[(&str, &str)] = match db.backend {
        Backend::Postgres => &[],
        _ => &[(
            "table = \"public.research_jobs\"",
            "table = \"research_jobs\"",
        )],
    };
    db.config("supabase-research-jobs.toml", edits)
}

async fn research(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = research_table(&db).await;
    validates(&db, &config);
    let before = db.dump("research_jobs").await;

    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["environment"], "production");
    assert_eq!(report["jobs"]["running"], 5);
    assert_eq!(report["jobs"]["pending"], 1);
    assert_eq!(
        findings(&report),
        expect(&[
            (R_STALLED, "stalled", "stalled-heartbeat"),
            (R_SILENT, "stalled", "stalled-heartbeat"),
            (R_SILENT, "stalled", "stalled-progress"),
            (R_PENDING_OLD, "overdue", "pending-too-long"),
            (R_CHILD, "orphaned_child", "stalled-heartbeat"),
        ])
    );
    let stalled = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["job_id"] == R_STALLED)
        .unwrap();
    assert_eq!(
        stalled["phase"], "assessing",
        "phase read from metadata.phase"
    );
    assert_eq!(stalled["threshold_seconds"], 1800);
    let age = stalled["age_seconds"].as_u64().unwrap();
    assert!((2690..2760).contains(&age), "age {age}");
    assert!(stalled["message"]
        .as_str()
        .unwrap()
        .starts_with("no heartbeat for 45m"));
    let warnings = report["warnings"].as_array().unwrap();
    let (rows, scan): (Vec<_>, Vec<_>) = warnings.iter().partition(|w| w["job_id"].is_string());
    // The row with no timestamps is dated from this first sight (judged at later scans), so
    // no row needs a warning.
    assert_eq!(rows.len(), 0, "{warnings:?}");
    assert!(!findings(&report).iter().any(|(id, _, _)| id == R_NO_TIMES));
    // The config's report folder is not there in this test: said, and no missing_artifact.
    assert_eq!(scan.len(), 1, "{warnings:?}");
    assert!(scan[0]["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("artifact root `reports` ("));

    // Neither check nor a dry run writes anything.
    let (code, dry) = jobwarden_json(&db.url, &config, &["recover", "--dry-run"]);
    assert_eq!(code, 1);
    let outcomes: Vec<_> = dry["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["outcome"].as_str().unwrap().to_string())
        .collect();
    assert!(outcomes.contains(&"dry_run".to_string()), "{outcomes:?}");
    assert_eq!(
        db.dump("research_jobs").await,
        before,
        "check and recover --dry-run wrote to the table"
    );

    // Development thresholds are shorter (progress 10m), and the healthy job stays healthy.
    let (_, dev) = jobwarden_json(&db.url, &config, &["check", "--env", "development"]);
    assert_eq!(dev["environment"], "development");
    assert!(findings(&dev).contains(&(
        R_STALLED.to_string(),
        "stalled".into(),
        "stalled-progress".into()
    )));
    assert!(!findings(&dev).iter().any(|f| f.0 == R_HEALTHY));

    let (code, done) = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(code, 1);
    let applied: Vec<_> = common::applied(&done);
    // One write each; the silent job's progress finding is alert-only and stays `none`.
    assert_eq!(applied.len(), 3, "{done}");
    let rows = db
        .rows(&format!(
            "SELECT {}, {}, {}, {} FROM research_jobs ORDER BY 1",
            db.text("id"),
            db.text("status"),
            db.text("completed_at"),
            db.text("error")
        ))
        .await;
    for row in rows {
        let id = row[0].clone().unwrap();
        let status = row[1].clone().unwrap();
        let failed_by_us = [R_STALLED, R_SILENT, R_CHILD].contains(&id.as_str());
        if failed_by_us {
            assert_eq!(status, "failed", "{id}");
            assert!(row[2].is_some(), "{id}: completed_at set");
            let error = row[3].clone().unwrap();
            assert!(
                error.starts_with("jobwarden: stalled-heartbeat: "),
                "{id}: {error}"
            );
        } else {
            assert!(row[3].is_none(), "{id} was touched: {row:?}");
            if id != R_PARENT_FAILED {
                assert_ne!(status, "failed", "{id}");
            }
        }
    }
    // After recovery only the alert-only findings remain.
    let (_, after) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!(
        findings(&after),
        expect(&[(R_PENDING_OLD, "overdue", "pending-too-long")])
    );
}
per_backend!(research_jobs_example, research);

// ---------------------------------------------------------------------------------------------
// qualification_runs, as a Next.js/Prisma app keeps it: uppercase statuses (a PostgreSQL enum),
// camelCase columns, timestamps without a time zone, no heartbeat.

async fn qualification(backend: Backend) {
    let db = TestDb::new(backend).await;
    let status_type = if backend == Backend::Postgres {
        db.exec(
            "CREATE TYPE \"RunStatus\" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')",
        )
        .await;
        "\"RunStatus\""
    } else {
        db.ty("text")
    };
    db.exec(&format!(
        "CREATE TABLE qualification_runs (id {t} PRIMARY KEY, status {status_type} NOT NULL, \
         {created} {naive} NOT NULL, {completed} {naive}, {total} INTEGER)",
        t = db.ty("text"),
        naive = db.ty("naive"),
        created = db.quote("createdAt"),
        completed = db.quote("completedAt"),
        total = db.quote("totalProspects"),
    ))
    .await;
    let naive_ago = |m: f64| match backend {
        // SQLite's own CURRENT_TIMESTAMP shape: "YYYY-MM-DD HH:MM:SS", UTC.
        Backend::Sqlite => format!("datetime('now', '-{} seconds')", (m * 60.0) as i64),
        _ => db.ago(m),
    };
    for (id, status, minutes) in [
        ("cmrecent", "PROCESSING", 10.0),
        ("cmstuck", "PROCESSING", 45.0),
        ("cmwaiting", "PENDING", 120.0),
        ("cmfresh", "PENDING", 2.0),
        ("cmdone", "COMPLETED", 300.0),
    ] {
        db.exec(&format!(
            "INSERT INTO qualification_runs (id, status, {}, {}) VALUES ('{id}', '{status}', {}, 10)",
            db.quote("createdAt"),
            db.quote("totalProspects"),
            naive_ago(minutes)
        ))
        .await;
    }
    let config = common::example("qualification-runs.toml");
    validates(&db, &config);
    let (code, prod) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!(code, 1, "{prod}");
    assert_eq!(
        findings(&prod),
        expect(&[
            ("cmstuck", "overdue", "processing-overdue"),
            ("cmwaiting", "overdue", "pending-overdue"),
        ])
    );
    // In development a 10-minute run is already overdue (5m).
    let (_, dev) = jobwarden_json(&db.url, &config, &["check", "--env", "development"]);
    assert_eq!(
        findings(&dev),
        expect(&[
            ("cmrecent", "overdue", "processing-overdue"),
            ("cmstuck", "overdue", "processing-overdue"),
            ("cmwaiting", "overdue", "pending-overdue"),
        ])
    );
    let (_, done) = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(common::applied(&done).len(), 2, "{done}");
    let rows = db
        .rows(&format!(
            "SELECT id, {}, {} FROM qualification_runs ORDER BY id",
            db.text("status"),
            db.text(&db.quote("completedAt"))
        ))
        .await;
    let summary: Vec<_> = rows
        .iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap(), r[2].is_some()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("cmdone".to_string(), "COMPLETED".to_string(), false),
            ("cmfresh".into(), "PENDING".into(), false),
            ("cmrecent".into(), "PROCESSING".into(), false),
            ("cmstuck".into(), "FAILED".into(), true),
            ("cmwaiting".into(), "FAILED".into(), true),
        ]
    );
    // The written completedAt reads back as "now" on the same clock jobwarden measures with.
    let (_, again) = jobwarden_json(&db.url, &config, &["check", "--env", "development"]);
    assert_eq!(
        findings(&again),
        expect(&[("cmrecent", "overdue", "processing-overdue")])
    );
}
per_backend!(qualification_runs_example, qualification);

// ---------------------------------------------------------------------------------------------
// local_training_jobs: Unix-second timestamps, several words per class, pid and host.

async fn training(backend: Backend) {
    let db = TestDb::new(backend).await;
    let id = match backend {
        Backend::Postgres => "bigserial PRIMARY KEY",
        Backend::MySql => "BIGINT AUTO_INCREMENT PRIMARY KEY",
        Backend::Sqlite => "INTEGER PRIMARY KEY",
    };
    db.exec(&format!(
        "CREATE TABLE local_training_jobs (id {id}, status {t} NOT NULL, created_at {b}, updated_at {b}, \
         completed_at {b}, error_message {long}, pid INTEGER, hostname {t})",
        t = db.ty("text"),
        b = db.ty("bigint"),
        long = db.ty("longtext"),
    ))
    .await;
    let host = jobwarden::adapters::process::hostname();
    let alive = std::process::id();
    let dead = common::dead_pid();
    // id, status, created and updated (minutes ago), pid, host
    type TrainingRow<'a> = (i64, &'a str, f64, f64, Option<u32>, &'a str);
    let rows: [TrainingRow; 7] = [
        (1, "running", 30.0, 1.0, Some(alive), host.as_str()),
        (2, "running", 60.0, 30.0, None, ""),
        // Its trainer died; silent for 5 minutes, past [safety] min_age (1m), so it may be failed.
        (3, "running", 10.0, 5.0, Some(dead), host.as_str()),
        (4, "paused", 300.0, 120.0, None, ""),
        (5, "queued", 180.0, 180.0, None, ""),
        (6, "running", 10.0, 1.0, Some(dead), "some-other-host"),
        (7, "completed", 900.0, 800.0, None, ""),
    ];
    for (id, status, created, updated, pid, hostname) in rows {
        db.exec(&format!(
            "INSERT INTO local_training_jobs (id, status, created_at, updated_at, pid, hostname) \
             VALUES ({id}, '{status}', {}, {}, {}, '{hostname}')",
            db.epoch_ago(created),
            db.epoch_ago(updated),
            pid.map_or("NULL".to_string(), |p| p.to_string())
        ))
        .await;
    }
    let config = common::example("local-training-jobs.toml");
    validates(&db, &config);
    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        report["jobs"]["running"], 5,
        "running and paused are both running-class"
    );
    assert_eq!(report["jobs"]["pending"], 1);
    assert_eq!(
        findings(&report),
        expect(&[
            ("2", "stalled", "stalled-training"),
            ("3", "dead_process", "stalled-training"),
            ("5", "overdue", "queued-too-long"),
        ])
    );
    let (_, done) = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(common::applied(&done).len(), 2);
    let rows = db
        .rows(&format!(
            "SELECT {}, {}, {}, {} FROM local_training_jobs WHERE {} = 'failed' ORDER BY id",
            db.text("id"),
            db.text("completed_at"),
            db.text(&db.epoch_ago(0.0)),
            db.text("error_message"),
            "status"
        ))
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in rows {
        // completed_at is written as Unix seconds, like the rest of the table.
        let written: i64 = row[1].clone().unwrap().parse().unwrap();
        let now: i64 = row[2].clone().unwrap().parse().unwrap();
        assert!((now - written).abs() < 60, "{row:?}");
        assert!(
            row[3].clone().unwrap().contains("stalled-training"),
            "{row:?}"
        );
    }
}
per_backend!(local_training_jobs_example, training);

// ---------------------------------------------------------------------------------------------
// operations: only the in-process phases may be failed; worker phases get alerts after hours.

async fn operations(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.exec(&format!(
        "CREATE TABLE operations (operation_id {t} PRIMARY KEY, status {t} NOT NULL, phase {t}, \
         created_at {ts} NOT NULL, last_heartbeat_at {ts}, completed_at {ts}, error_message {long}, \
         parent_operation_id {t})",
        t = db.ty("text"),
        ts = db.ty("ts"),
        long = db.ty("longtext"),
    ))
    .await;
    // id, status, phase, created and heartbeat (minutes ago), parent
    type OperationRow<'a> = (&'a str, &'a str, &'a str, f64, Option<f64>, Option<&'a str>);
    let rows: [OperationRow; 8] = [
        ("op_design", "running", "designing", 30.0, Some(15.0), None),
        ("op_train", "running", "training", 180.0, Some(120.0), None),
        (
            "op_backtest",
            "running",
            "backtesting",
            600.0,
            Some(420.0),
            None,
        ),
        (
            "op_report",
            "running",
            "reporting",
            180.0,
            Some(120.0),
            None,
        ),
        ("op_assess", "running", "assessing", 20.0, None, None),
        (
            "op_child",
            "running",
            "training",
            30.0,
            Some(1.0),
            Some("op_parent"),
        ),
        ("op_parent", "completed", "assessing", 60.0, Some(5.0), None),
        ("op_fresh", "running", "designing", 3.0, Some(0.5), None),
    ];
    for (id, status, phase, created, beat, parent) in rows {
        db.exec(&format!(
            "INSERT INTO operations (operation_id, status, phase, created_at, last_heartbeat_at, parent_operation_id) \
             VALUES ('{id}', '{status}', '{phase}', {}, {}, {})",
            db.ago(created),
            beat.map_or("NULL".to_string(), |b| db.ago(b)),
            parent.map_or("NULL".to_string(), |p| format!("'{p}'"))
        ))
        .await;
    }
    let config = common::example("operations.toml");
    validates(&db, &config);
    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        findings(&report),
        expect(&[
            ("op_assess", "stalled", "in-process-orphaned"),
            ("op_backtest", "stalled", "worker-phase-slow"),
            ("op_child", "orphaned_child", "worker-phase-slow"),
            ("op_design", "stalled", "in-process-orphaned"),
            ("op_report", "stalled", "running-stalled"),
        ])
    );
    let (_, done) = jobwarden_json(&db.url, &config, &["recover"]);
    let mut applied: Vec<_> = common::applied(&done);
    applied.sort();
    assert_eq!(
        applied,
        ["op_assess", "op_design"],
        "only in-process phases are failed"
    );
    let failed = db
        .rows(&format!(
            "SELECT operation_id FROM operations WHERE status = 'failed' AND completed_at IS NOT NULL \
             AND {} LIKE 'jobwarden: in-process-orphaned: %' ORDER BY operation_id",
            db.text("error_message")
        ))
        .await;
    assert_eq!(failed.len(), 2, "{failed:?}");
}
per_backend!(operations_example, operations);
