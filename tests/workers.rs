//! Worker liveness (`[workers]` with `[jobs] worker`), through the real binary on real
//! PostgreSQL, MariaDB and SQLite: a job lives by its worker's heartbeat, a job whose worker
//! went silent or whose worker row is gone is found (and failed by `recover`), jobs of a live
//! worker are left alone across scans even with an old heartbeat of their own, the finding
//! carries its worker, and `validate --connect` names the `[workers]` key a missing table or
//! column comes from. `[jobs] worker` alone (no `[workers]`) is the finding's owner, with the
//! row's `host` and `pid`, and judges nothing.

mod common;

use std::path::PathBuf;

use common::{jobwarden, jobwarden_json, Backend, TestConfig, TestDb};

async fn tables(db: &TestDb) {
    db.workers_table(&format!(", host {}", db.ty("text"))).await;
    db.exec(&format!(
        "CREATE TABLE jobs (id {t} PRIMARY KEY, status {t} NOT NULL, created_at {ts}, \
         updated_at {ts}, error {long}, worker_id {big}, host {t}, pid {big})",
        t = db.ty("text"),
        ts = db.ty("ts"),
        long = db.ty("longtext"),
        big = db.ty("bigint"),
    ))
    .await;
    for (id, beat, host) in [(1, 0.2, "w-1"), (2, 45.0, "w-2")] {
        db.exec(&format!(
            "INSERT INTO jw_workers VALUES ({id}, {}, '{host}')",
            db.ago(beat)
        ))
        .await;
    }
    // (id, own heartbeat minutes ago, worker)
    for (id, beat, worker) in [
        // A live worker's jobs: alive whatever their own heartbeat says.
        ("alive-no-beat", None, Some(1)),
        ("alive-old-beat", Some(50.0), Some(1)),
        // Worker 2 went silent 45 minutes ago.
        ("silent", None, Some(2)),
        // Worker 3 has no row: the job's own heartbeat judges it.
        ("gone-old", Some(40.0), Some(3)),
        ("gone-young", Some(2.0), Some(3)),
        // No worker: its own heartbeat, as without [workers].
        ("own", Some(1.0), None),
    ] {
        db.exec(&format!(
            "INSERT INTO jobs (id, status, created_at, updated_at, worker_id) VALUES \
             ('{id}', 'running', {}, {}, {})",
            db.ago(120.0),
            beat.map_or("NULL".to_string(), |b| db.ago(b)),
            worker.map_or("NULL".to_string(), |w: i32| w.to_string()),
        ))
        .await;
    }
}

fn config(db: &TestDb, name: &str, workers: &str) -> PathBuf {
    TestConfig::new(db.jobwarden_url())
        .jobs("worker = \"worker_id\"\nerror = \"error\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section(workers)
        .state(&db.dir().join(format!("state-{name}")))
        .write(db.dir().join(format!("{name}.toml")))
}

const WORKERS: &str =
    "[workers]\ntable = \"jw_workers\"\nheartbeat_at = \"last_heartbeat\"\nhost = \"host\"";

async fn worker_liveness(backend: Backend) {
    let db = TestDb::new(backend).await;
    tables(&db).await;
    let path = config(&db, "jw", WORKERS);

    let out = jobwarden(
        db.jobwarden_url(),
        &["validate", "--connect", "--config", path.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Several scans: the live worker's jobs are never found.
    for _ in 0..3 {
        let (code, report) = jobwarden_json(db.jobwarden_url(), &path, &["check"]);
        assert_eq!(code, 1, "{report}");
        assert_eq!(
            common::findings(&report),
            common::expect(&[("gone-old", "stalled", "hb"), ("silent", "stalled", "hb")]),
            "{report}"
        );
        let by = |id: &str| {
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["job_id"] == id)
                .unwrap()
                .clone()
        };
        let silent = by("silent");
        let message = silent["message"].as_str().unwrap();
        assert!(
            message.starts_with("worker 2 last beat at ") && message.contains("45m"),
            "{message}"
        );
        // Aged by the worker's beat (45 minutes), not the job's creation (2 hours).
        let age = silent["age_seconds"].as_u64().unwrap();
        assert!((45 * 60..46 * 60).contains(&age), "{age}");
        assert_eq!(silent["worker"]["id"], "2");
        assert_eq!(silent["worker"]["gone"], false);
        assert_eq!(silent["worker"]["host"], "w-2");
        assert!(silent["worker"]["heartbeat_at"].is_string(), "{silent}");
        let gone = by("gone-old");
        assert!(
            gone["message"]
                .as_str()
                .unwrap()
                .starts_with("worker 3 is gone; no heartbeat for 40m"),
            "{gone}"
        );
        assert_eq!(gone["worker"], serde_json::json!({"id": "3", "gone": true}));
    }

    let (code, report) = jobwarden_json(db.jobwarden_url(), &path, &["recover"]);
    assert_eq!(code, 0, "{report}");
    let mut applied = common::applied(&report);
    applied.sort();
    assert_eq!(applied, ["gone-old", "silent"], "{report}");
    let rows = db.rows("SELECT id, status FROM jobs ORDER BY id").await;
    let statuses: Vec<(String, String)> = rows
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("alive-no-beat", "running"),
            ("alive-old-beat", "running"),
            ("gone-old", "failed"),
            ("gone-young", "running"),
            ("own", "running"),
            ("silent", "failed"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    // The worker comes back: its job is alive again.
    db.exec(&format!(
        "UPDATE jw_workers SET last_heartbeat = {} WHERE id = 1",
        db.ago(0.0)
    ))
    .await;
    let (code, report) = jobwarden_json(db.jobwarden_url(), &path, &["check"]);
    assert_eq!((code, common::findings(&report)), (0, vec![]), "{report}");
}

per_backend!(worker_liveness_is_read_once_and_judged, worker_liveness);

async fn workers_misconfigured(backend: Backend) {
    let db = TestDb::new(backend).await;
    tables(&db).await;
    for (name, workers, key) in [
        (
            "no-table",
            WORKERS.replace("jw_workers", "jw_no_such_workers"),
            "workers.table",
        ),
        (
            "no-column",
            WORKERS.replace("last_heartbeat", "beat_at"),
            "workers.heartbeat_at",
        ),
    ] {
        let path = config(&db, name, &workers);
        let out = jobwarden(
            db.jobwarden_url(),
            &["validate", "--connect", "--config", path.to_str().unwrap()],
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{name}: {all}");
        assert!(
            all.contains(&format!("`{key}` (line ")),
            "{name}: the error names the key and its line: {all}"
        );
    }
}

per_backend!(
    a_missing_workers_table_or_column_names_its_key,
    workers_misconfigured
);

async fn the_worker_column_alone(backend: Backend) {
    let db = TestDb::new(backend).await;
    tables(&db).await;
    db.exec(
        "UPDATE jobs SET host = 'web-9', pid = 4242 WHERE id IN ('alive-old-beat', 'alive-no-beat')",
    )
    .await;
    let path = TestConfig::new(db.jobwarden_url())
        .jobs("worker = \"worker_id\"\nhost = \"host\"\npid = \"pid\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .state(&db.dir().join("state-alone"))
        .write(db.dir().join("alone.toml"));
    let (code, report) = jobwarden_json(db.jobwarden_url(), &path, &["check"]);
    assert_eq!(code, 1, "{report}");
    // Each job by its own heartbeat: a worker column alone says who held it, not whether it
    // lives.
    assert_eq!(
        common::findings(&report),
        common::expect(&[
            ("alive-no-beat", "stalled", "hb"),
            ("alive-old-beat", "stalled", "hb"),
            ("gone-old", "stalled", "hb"),
            ("silent", "stalled", "hb"),
        ]),
        "{report}"
    );
    let findings = report["findings"].as_array().unwrap();
    let by = |id: &str| findings.iter().find(|f| f["job_id"] == id).unwrap();
    let held = by("alive-old-beat");
    assert_eq!(held["worker"], serde_json::json!({"id": "1"}), "{held}");
    assert_eq!(
        (&held["host"], &held["pid"]),
        (&serde_json::json!("web-9"), &serde_json::json!(4242))
    );
    assert!(
        held["message"]
            .as_str()
            .unwrap()
            .starts_with("no heartbeat for 50m"),
        "{held}"
    );
    assert_eq!(by("gone-old")["worker"], serde_json::json!({"id": "3"}));
    assert!(by("silent").get("host").is_none(), "NULL: left out");
    // Nor does it make an incident of one worker's jobs.
    let incidents = report["incidents"].as_array().cloned().unwrap_or_default();
    assert!(
        incidents
            .iter()
            .all(|i| !i["cause"].to_string().contains("worker")),
        "{report}"
    );
    // The table for people names the owners after the findings: one line per owner, its
    // jobs named (a dead worker's thousand jobs are one line).
    let out = jobwarden(
        db.jobwarden_url(),
        &["check", "--config", path.to_str().unwrap()],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let owners: Vec<&str> = text
        .split("\nOWNERS\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        owners,
        [
            "2 jobs (alive-no-beat, alive-old-beat): worker 1; the row's host web-9, pid 4242",
            "1 job (gone-old): worker 3",
            "1 job (silent): worker 2",
        ],
        "{text}"
    );
}

per_backend!(
    the_worker_column_alone_is_the_findings_owner,
    the_worker_column_alone
);
