//! The blast-radius limits through the real binary on SQLite: a mass stall writes nothing and
//! says so once, `--force` is the operator's explicit override (and the audit says so),
//! `--only`/`--exclude` pick rows, the per-scan cap holds, and the daemon confirms over two
//! scans before it writes.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{jobwarden_json, wait_for, Backend, Daemon, TestConfig, TestDb};

fn config(db: &TestDb, safety: &str, extra: &str) -> PathBuf {
    TestConfig::new(&db.url)
        .top(extra)
        .heartbeat_rule("hb", "30m", r#"action = "fail""#)
        .state(&db.dir().join("state"))
        .section(&format!("[safety]\n{safety}"))
        .write(db.dir().join("jw.toml"))
}

async fn jobs(db: &TestDb, stalled: usize, healthy: usize) {
    db.small_jobs_table().await;
    for id in 1..=stalled {
        db.running(id as u32, 120.0, 45.0 + id as f64).await;
    }
    for id in 1..=healthy {
        db.running(1000 + id as u32, 10.0, 0.1).await;
    }
}

async fn failed(db: &TestDb) -> usize {
    db.rows("SELECT CAST(id AS TEXT) FROM jobs WHERE status = 'failed'")
        .await
        .len()
}

fn audit(config: &Path) -> Vec<serde_json::Value> {
    let out = common::jobwarden(
        "",
        &[
            "audit",
            "--json",
            "--last",
            "100",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line"))
        .collect()
}

#[tokio::test]
async fn a_mass_stall_writes_nothing_until_forced() {
    let db = TestDb::new(Backend::Sqlite).await;
    jobs(&db, 12, 3).await;
    let cfg = config(&db, "max_actions_per_scan = 100", "");
    let (code, report) = jobwarden_json(&db.url, &cfg, &["recover"]);
    assert_eq!(code, 1);
    assert_eq!(failed(&db).await, 0, "a mass stall writes nothing");
    let findings = report["findings"].as_array().unwrap();
    let stalls: Vec<_> = findings
        .iter()
        .filter(|f| f["kind"] == "mass_stall")
        .collect();
    assert_eq!(stalls.len(), 1, "one mass_stall finding");
    assert_eq!(stalls[0]["severity"], "critical");
    assert!(stalls[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("12 of 15 active jobs look stuck at once"));
    assert_eq!(
        findings
            .iter()
            .filter(|f| f["outcome"] == "limited")
            .count(),
        12
    );
    assert!(audit(&cfg).is_empty(), "nothing written, nothing audited");
    // One incident, held back by the guard (said once, not per job).
    let incidents = report["incidents"].as_array().cloned().unwrap_or_default();
    assert_eq!(incidents.len(), 1, "{report}");
    assert_eq!(incidents[0]["cause"], "most active jobs look stuck at once");
    assert_eq!(incidents[0]["jobs"], 12);
    assert!(incidents[0]["held_back"]
        .as_str()
        .is_some_and(|h| h.starts_with("12 of 15 active jobs look stuck at once")));
    assert!(findings.iter().all(|f| f["incident"] == incidents[0]["id"]));
    // For a person: one line for the twelve, the next step, and a closing summary.
    let out = common::jobwarden(&db.url, &["recover", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text.matches("held back: ").count(), 1, "{text}");
    assert!(
        text.contains("held back: 12 jobs (")
            && text.contains("  next: if the workers really died, `jobwarden recover --force`"),
        "{text}"
    );
    assert!(
        text.trim_end()
            .ends_with("recover: 0 written, 12 held back; findings remain"),
        "{text}"
    );

    // The operator decides: --force lifts the guard for one run, and the audit records it.
    let (_, forced) = jobwarden_json(&db.url, &cfg, &["recover", "--force"]);
    assert_eq!(failed(&db).await, 12, "{forced}");
    let entries = audit(&cfg);
    assert_eq!(entries.len(), 12);
    assert!(entries.iter().all(|e| e["forced"] == true
        && e["outcome"] == "applied"
        && e["status_after"] == "failed"));
    assert!(entries
        .iter()
        .all(|e| e["replica"].as_str().unwrap().contains(':')));
}

#[tokio::test]
async fn a_restart_that_orphans_everything_uses_fraction_one() {
    let db = TestDb::new(Backend::Sqlite).await;
    jobs(&db, 12, 0).await;
    let cfg = config(
        &db,
        "max_stuck_fraction = 1.0\nmax_actions_per_scan = 100",
        "",
    );
    let (_, report) = jobwarden_json(&db.url, &cfg, &["recover"]);
    assert_eq!(failed(&db).await, 12, "{report}");
}

#[tokio::test]
async fn the_cap_only_and_exclude() {
    let db = TestDb::new(Backend::Sqlite).await;
    jobs(&db, 6, 0).await;
    let cfg = config(&db, "max_actions_per_scan = 2", "");
    let (_, report) = jobwarden_json(
        &db.url,
        &cfg,
        &["recover", "--only", "1,2,3", "--exclude", "2"],
    );
    let applied: Vec<_> = common::applied(&report);
    assert_eq!(applied.len(), 2, "{report}");
    assert!(!applied.contains(&"2".to_string()));
    let (_, report) = jobwarden_json(&db.url, &cfg, &["recover"]);
    let limited = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["outcome"] == "limited")
        .count();
    // 4 left: 2 written (the oldest first), 2 held back by the cap.
    assert_eq!((failed(&db).await, limited), (4, 2), "{report}");
    let out = common::jobwarden("", &["audit", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.contains("running -> failed (fail stalled, rule hb"),
        "{text}"
    );
}

#[tokio::test]
async fn the_daemon_confirms_over_two_scans_and_audits_once() {
    let db = TestDb::new(Backend::Sqlite).await;
    jobs(&db, 1, 1).await;
    let port = 0;
    let cfg = config(
        &db,
        "confirm_scans = 2\nstartup_grace = \"0s\"",
        &format!("interval = \"300ms\"\n[http]\nlisten = \"127.0.0.1:{port}\""),
    );
    // [http] must come after the top-level keys: move it to the end of the file.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let (head, rest) = text.split_once("[database]").unwrap();
    let (interval, http) = head.split_once("[http]").unwrap();
    std::fs::write(&cfg, format!("{interval}[database]{rest}\n[http]{http}")).unwrap();
    let daemon = Daemon::start(&cfg, &[]);
    wait_for(
        "the stalled job failed",
        Duration::from_secs(20),
        || async { (failed(&db).await == 1).then_some(()) },
    )
    .await;
    // The first scan saw it and held it back (confirming); it is not logged per job per
    // scan, but the finding's own line says the outcome of the scan that found it.
    assert!(
        daemon
            .log()
            .lines()
            .any(|l| l.contains("finding: no heartbeat") && l.contains("outcome=\"limited\"")),
        "{}",
        daemon.log()
    );
    assert_eq!(daemon.stop().await, 0);
    let entries = audit(&cfg);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["job_id"], "1");
    assert_eq!(entries[0]["kind"], "stalled");
}

#[tokio::test]
async fn requeue_counts_attempts_and_the_audit_table_commits_with_the_write() {
    let db = TestDb::new(Backend::Postgres).await;
    db.exec("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status text, created_at timestamptz, updated_at timestamptz, attempts integer)").await;
    db.exec(
        "CREATE TABLE jobwarden_audit (at timestamptz NOT NULL, environment text, job_id text NOT NULL, \
         status_before text, status_after text, action text, kind text, rule text, age_seconds bigint, \
         threshold_seconds bigint, outcome text, replica text)",
    )
    .await;
    for (id, attempts) in [(1, 0), (2, 3)] {
        db.exec(&format!(
            "INSERT INTO jobs VALUES ({id}, 'running', {}, {}, {attempts})",
            db.ago(120.0),
            db.ago(45.0)
        ))
        .await;
    }
    let cfg = TestConfig::new(&db.url)
        .jobs("attempts = \"attempts\"\nmax_attempts = 3")
        .statuses("pending = [\"queued\"]\nrunning = [\"running\"]\nfailed = [\"failed\"]")
        .heartbeat_rule("retry", "30m", r#"action = "requeue""#)
        .section("[audit]\ntable = \"jobwarden_audit\"")
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let (code, report) = jobwarden_json(&db.url, &cfg, &["recover"]);
    assert_eq!(code, 0, "both re-queued: nothing left: {report}");
    let rows = db
        .rows("SELECT id::text, status, attempts::text FROM jobs ORDER BY id")
        .await;
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
        .collect();
    assert_eq!(
        rows,
        [["1", "queued", "1"], ["2", "failed", "3"]],
        "{report}"
    );
    let audit_rows = db.rows("SELECT job_id, status_after, action, outcome, rule FROM jobwarden_audit ORDER BY job_id").await;
    let audit_rows: Vec<Vec<String>> = audit_rows
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
        .collect();
    assert_eq!(
        audit_rows,
        [
            ["1", "queued", "requeue", "applied", "retry"],
            ["2", "failed", "fail", "applied", "retry"]
        ]
    );
    assert_eq!(audit(&cfg).len(), 2, "the file trail too");
}

#[tokio::test]
async fn a_mass_stall_in_the_daemon_fires_one_alert_and_writes_nothing() {
    let db = TestDb::new(Backend::Sqlite).await;
    jobs(&db, 12, 3).await;
    let hook = common::Receiver::start(0, &[]).await;
    let port = 0;
    let cfg = config(&db, "startup_grace = \"0s\"", "interval = \"200ms\"");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[http]\nlisten = \"127.0.0.1:{port}\"\n[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n", hook.url("/")),
    )
    .unwrap();
    let daemon = Daemon::start(&cfg, &[]);
    // The mass stall is an incident: its message says what holds the writes, once.
    let stall_alerts = || {
        hook.accepted("firing")
            .into_iter()
            .filter(|r| {
                r.body["incident"]["cause"] == "most active jobs look stuck at once"
                    || r.body["finding"]["kind"] == "mass_stall"
            })
            .collect::<Vec<_>>()
    };
    wait_for(
        "the mass stall's incident",
        Duration::from_secs(20),
        || async { (stall_alerts().len() == 1).then_some(()) },
    )
    .await;
    let scans_now = || async {
        common::get(&daemon.url("/metrics"))
            .await
            .and_then(|(_, m)| common::metric(&m, "jobwarden_scans_total"))
            .unwrap_or(0.0)
    };
    let seen = scans_now().await;
    wait_for("five more scans", Duration::from_secs(20), || async {
        (scans_now().await >= seen + 5.0).then_some(())
    })
    .await;
    let told = stall_alerts();
    assert_eq!(told.len(), 1, "one mass_stall alert, not one per scan");
    assert_eq!(told[0].body["incident"]["jobs"], 12);
    assert!(
        told[0].body["incident"]["held_back"]
            .as_str()
            .is_some_and(|h| h.starts_with("12 of 15 active jobs look stuck at once")),
        "{}",
        told[0].body
    );
    assert_eq!(failed(&db).await, 0, "nothing written");
    let limited = common::get(&daemon.url("/metrics"))
        .await
        .and_then(|(_, m)| {
            common::metric(
                &m,
                "jobwarden_actions_total{action=\"fail\",outcome=\"limited\"}",
            )
        })
        .unwrap_or(0.0);
    assert!(limited >= 12.0, "held-back writes are counted: {limited}");
    assert_eq!(daemon.stop().await, 0);
}
