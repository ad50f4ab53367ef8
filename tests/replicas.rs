//! Several `jobwarden run` replicas against one real PostgreSQL or MariaDB table: exactly one
//! leads (writes and alerts), every job is failed once, the audit trails together hold one
//! entry per write, and when the leader is killed another takes over.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{get, metric, wait_for, Backend, Daemon, TestConfig, TestDb};

fn config(db: &TestDb, n: usize) -> (PathBuf, PathBuf) {
    let state = db.dir().join(format!("state-{n}"));
    // Rows are inserted already running, so they entered that status when created: said so,
    // a replica that first sees a row (one inserted after the leader died) knows how long it
    // has been running instead of dating it by its own first sight.
    let path = TestConfig::new(&db.url)
        .top(r#"interval = "300ms""#)
        .jobs(r#"status_since = "created_at""#)
        .heartbeat_rule("hb", "30m", r#"action = "fail""#)
        .section("[safety]\nstartup_grace = \"0s\"")
        .state(&state)
        .http(0)
        .write(db.dir().join(format!("jw-{n}.toml")));
    (path, state)
}

async fn stalled(db: &TestDb, ids: std::ops::Range<usize>) {
    for id in ids {
        db.exec(&format!(
            "INSERT INTO jobs (id, status, created_at, updated_at) VALUES ({id}, 'running', {}, {})",
            db.ago(120.0),
            db.ago(45.0)
        ))
        .await;
    }
}

async fn failed(db: &TestDb) -> usize {
    db.rows(&format!(
        "SELECT {} FROM jobs WHERE status = 'failed'",
        db.text("id")
    ))
    .await
    .len()
}

async fn is_leader(d: &Daemon) -> bool {
    get(&d.url("/metrics"))
        .await
        .and_then(|(_, m)| metric(&m, "jobwarden_leader"))
        == Some(1.0)
}

/// The outcome records of every replica's audit trail (each write also has an intent).
fn audit_entries(states: &[PathBuf]) -> Vec<serde_json::Value> {
    states
        .iter()
        .filter_map(|s| std::fs::read_to_string(s.join("audit.jsonl")).ok())
        .flat_map(|t| {
            t.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("audit line"))
                .filter(|e| e["stage"] == "outcome")
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn one_leader_writes(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.native_jobs_table().await;
    db.exec("CREATE INDEX jobs_status ON jobs (status)").await;
    stalled(&db, 1..6).await;
    let configs: Vec<(PathBuf, PathBuf)> = (0..3).map(|n| config(&db, n)).collect();
    let mut replicas: Vec<Option<Daemon>> = configs
        .iter()
        .map(|(c, _)| Some(Daemon::start(c, &[])))
        .collect();
    let states: Vec<PathBuf> = configs.iter().map(|(_, s)| s.clone()).collect();

    wait_for("five jobs failed", Duration::from_secs(30), || async {
        (failed(&db).await == 5).then_some(())
    })
    .await;
    let mut leaders = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        let d = r.as_ref().expect("running");
        wait_for("a scan with a role", Duration::from_secs(10), || async {
            get(&d.url("/readyz"))
                .await
                .filter(|(code, body)| *code == 200 && body.contains("\"role\""))
        })
        .await;
        if is_leader(d).await {
            leaders.push(i);
        }
    }
    assert_eq!(leaders.len(), 1, "exactly one leader: {leaders:?}");
    let first = leaders[0];
    let entries = audit_entries(&states);
    assert_eq!(entries.len(), 5, "one audit entry per write: {entries:?}");
    let writers: std::collections::BTreeSet<_> = entries
        .iter()
        .map(|e| e["replica"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(writers.len(), 1, "{writers:?}");

    // Kill the leader outright: its lock goes with its connection.
    let dead = replicas[first].take().expect("leader");
    dead.signal(libc::SIGKILL);
    drop(dead);
    stalled(&db, 10..13).await;
    wait_for(
        "another replica leads and fails the new jobs",
        Duration::from_secs(30),
        || async { (failed(&db).await == 8).then_some(()) },
    )
    .await;
    let mut new_leaders = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        if let Some(d) = r {
            if is_leader(d).await {
                new_leaders.push(i);
            }
        }
    }
    assert_eq!(new_leaders.len(), 1, "{new_leaders:?}");
    assert_ne!(new_leaders[0], first);
    let entries = audit_entries(&states);
    let mut jobs: Vec<String> = entries
        .iter()
        .map(|e| e["job_id"].as_str().unwrap_or("").to_string())
        .collect();
    jobs.sort();
    let before = jobs.len();
    jobs.dedup();
    assert_eq!(
        (before, jobs.len()),
        (8, 8),
        "no job failed twice: {entries:?}"
    );
    for r in replicas.into_iter().flatten() {
        assert_eq!(r.stop().await, 0);
    }
}

async fn jobs_table(db: &TestDb) {
    db.native_jobs_table().await;
}

/// `/readyz` once a scan has checked the lock.
async fn ready(d: &Daemon) -> String {
    wait_for("a scan with a role", Duration::from_secs(20), || async {
        get(&d.url("/readyz"))
            .await
            .filter(|(code, body)| *code == 200 && !body.contains("\"unknown\""))
            .map(|(_, body)| body)
    })
    .await
}

/// Two applications with one table name in two databases of one server: each daemon leads
/// its own (MariaDB's `GET_LOCK` is server-wide, and a lock named after the table alone kept
/// the second a standby for good, writing and alerting nothing). A second replica of the first
/// stands by, says so once in its log, and names the leader on `/readyz` and `/`.
async fn one_lock_per_database(backend: Backend) {
    let a = TestDb::new(backend).await;
    let b = TestDb::new(backend).await;
    jobs_table(&a).await;
    jobs_table(&b).await;
    let first = Daemon::start(&config(&a, 0).0, &[]);
    ready(&first).await;
    let second = Daemon::start(&config(&b, 0).0, &[]);
    ready(&second).await;
    for d in [&first, &second] {
        assert!(is_leader(d).await, "{}", d.log());
    }

    let standby = Daemon::start(&config(&a, 1).0, &[]);
    let body = ready(&standby).await;
    assert!(body.contains("\"role\":\"standby\""), "{body}");
    let holder = match backend {
        // The leader's session, named by its application_name.
        Backend::Postgres => "\"leader\":\"pid ",
        _ => "\"leader\":\"connection ",
    };
    assert!(
        body.contains(holder),
        "the standby names the leader: {body}"
    );
    if backend == Backend::Postgres {
        assert!(body.contains("(jobwarden "), "{body}");
    }
    let page = get(&standby.url("/")).await.expect("status page").1;
    assert!(page.contains("the leader is "), "{page}");
    assert!(!is_leader(&standby).await);
    // Standing by is said once, with the lock's name (the database in it), not every scan.
    wait_for("a few scans", Duration::from_secs(10), || async {
        get(&standby.url("/metrics"))
            .await
            .and_then(|(_, m)| metric(&m, "jobwarden_scans_total"))
            .filter(|n| *n >= 3.0)
    })
    .await;
    let log = standby.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("standby")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    let database = a.url.rsplit('/').next().expect("database name");
    assert!(lines[0].contains(database), "{log}");

    for d in [standby, second, first] {
        assert_eq!(d.stop().await, 0);
    }
}

mod one_lock_per_database {
    use super::*;
    #[tokio::test]
    async fn postgres() {
        one_lock_per_database(Backend::Postgres).await
    }
    #[tokio::test]
    async fn mysql() {
        one_lock_per_database(Backend::MySql).await
    }
}

mod replicas {
    use super::*;
    #[tokio::test]
    async fn postgres() {
        one_leader_writes(Backend::Postgres).await
    }
    #[tokio::test]
    async fn mysql() {
        one_leader_writes(Backend::MySql).await
    }
}
