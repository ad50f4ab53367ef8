//! A person's bulk action through the real daemon on a real table: the mass stall a restart
//! leaves (every job's heartbeat stopped together) is one incident, which the safety guard
//! holds; a person previews it (dry run: the count, a sample, the statement), confirms the
//! count, and every job is failed, each row its own guarded write with its intent and outcome
//! in the audit trail, all under one batch id. And `recover --incident` does the same from a
//! shell.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{wait_for, Backend, Daemon, TestConfig, TestDb};

const TOKEN: &str = "BULK-T0KEN-0123456789";
/// Jobs the restart killed.
const DEAD: usize = 300;
/// Jobs still alive.
const ALIVE: usize = 10;

async fn post(
    daemon: &Daemon,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(daemon.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// `DEAD` running jobs whose heartbeats stopped together 47 minutes ago (a non-round age: see
/// the zone-offset hold), and `ALIVE` that beat now.
async fn restart_killed_most_jobs(db: &TestDb) {
    db.small_jobs_table().await;
    let rows: Vec<String> = (1..=DEAD + ALIVE)
        .map(|id| {
            let beat = if id <= DEAD {
                47.0 + id as f64 / 1000.0
            } else {
                0.1
            };
            format!("({id}, 'running', {}, {})", db.ago(180.0), db.ago(beat))
        })
        .collect();
    for chunk in rows.chunks(100) {
        db.exec(&format!("INSERT INTO jobs VALUES {}", chunk.join(", ")))
            .await;
    }
}

/// The audit trail's writes (its lines with a `hold` key are pauses and snoozes).
fn audit(state: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("audit line"))
        .filter(|v| v.get("hold").is_none())
        .collect()
}

/// The audit trail's pauses and snoozes.
fn kept_holds(state: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("audit line"))
        .filter(|v| v.get("hold").is_some())
        .collect()
}

async fn failed(db: &TestDb) -> usize {
    db.rows("SELECT status FROM jobs WHERE status = 'failed'")
        .await
        .len()
}

async fn a_person_fails_a_mass_stall_in_one_confirmed_request(backend: Backend) {
    let db = TestDb::new(backend).await;
    restart_killed_most_jobs(&db).await;
    let state = db.dir().join("state");
    let config = TestConfig::new(&db.url)
        .top("interval = \"500ms\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section("[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1\nmax_bulk = 1000")
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""
        ))
        .state(&state)
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    let client = reqwest::Client::new();
    // The guard holds the stall: one incident of every dead job, nothing written.
    let incident = wait_for("the mass stall's incident", Duration::from_secs(30), || {
        let client = client.clone();
        let url = daemon.url("/api/v1/findings");
        async move {
            let v: serde_json::Value = client.get(&url).send().await.ok()?.json().await.ok()?;
            v["incidents"]
                .as_array()?
                .iter()
                .find(|i| i["jobs"] == DEAD && i["held_back"].is_string())
                .and_then(|i| i["id"].as_str().map(str::to_string))
        }
    })
    .await;
    assert_eq!(failed(&db).await, 0, "the guard writes nothing");

    // No token, a wrong one: refused before anything is read.
    let body = format!("{{\"incident\": \"{incident}\", \"dry_run\": true}}");
    let (code, _) = post(&daemon, "/api/v1/jobs/fail", None, &body).await;
    assert_eq!(code, 401);
    let (code, _) = post(
        &daemon,
        "/api/v1/jobs/fail",
        Some("WRONG-T0KEN-0123456789"),
        &body,
    )
    .await;
    assert_eq!(code, 401);

    // The preview: the count, a sample of ids, the statement each row gets.
    let (code, preview) = post(&daemon, "/api/v1/jobs/fail", Some(TOKEN), &body).await;
    assert_eq!(code, 200, "{preview}");
    assert_eq!(preview["count"], DEAD, "{preview}");
    let sample = preview["sample"].as_array().expect("sample");
    assert!(!sample.is_empty() && sample.len() <= 10, "{preview}");
    assert!(
        sample.iter().all(|id| id
            .as_str()
            .and_then(|s| s.parse::<usize>().ok())
            .is_some_and(|n| n <= DEAD)),
        "{preview}"
    );
    let statement = preview["statement"].as_str().unwrap_or_default();
    assert!(statement.starts_with("UPDATE"), "{preview}");

    // A count other than the one found now: refused, nothing written.
    let (code, answer) = post(
        &daemon,
        "/api/v1/jobs/fail",
        Some(TOKEN),
        &format!("{{\"incident\": \"{incident}\", \"expect\": {}}}", DEAD - 1),
    )
    .await;
    assert_eq!(code, 409, "{answer}");
    assert_eq!(answer["count"], DEAD, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("expect")),
        "{answer}"
    );
    // Without a count at all: refused too.
    let (code, answer) = post(
        &daemon,
        "/api/v1/jobs/fail",
        Some(TOKEN),
        &format!("{{\"incident\": \"{incident}\"}}"),
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(failed(&db).await, 0);
    assert!(audit(&state).is_empty(), "{:?}", audit(&state));

    // More than [safety] max_bulk in one request: refused, saying the cap.
    let ids: Vec<String> = (1..=1001).map(|i| format!("\"{i}\"")).collect();
    let (code, answer) = post(
        &daemon,
        "/api/v1/jobs/fail",
        Some(TOKEN),
        &format!("{{\"ids\": [{}], \"dry_run\": true}}", ids.join(",")),
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("max_bulk (1000)")),
        "{answer}"
    );

    // The confirmed request: every dead job failed, none of the live ones.
    let (code, done) = post(
        &daemon,
        "/api/v1/jobs/fail",
        Some(TOKEN),
        &format!("{{\"incident\": \"{incident}\", \"expect\": {DEAD}, \"reason\": \"the deploy killed them\"}}"),
    )
    .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["count"], DEAD, "{done}");
    assert_eq!(done["outcomes"]["applied"], DEAD, "{done}");
    assert_eq!(done["outcomes"]["raced"], 0, "{done}");
    let batch = done["batch"].as_str().expect("batch").to_string();
    assert_eq!(failed(&db).await, DEAD);
    let running = db
        .rows("SELECT status FROM jobs WHERE status = 'running'")
        .await;
    assert_eq!(running.len(), ALIVE);

    // Each row: its intent, then its outcome, under the one batch, forced by a person.
    let lines = audit(&state);
    let mut per_job: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in &lines {
        assert_eq!(line["batch"], batch.as_str(), "{line}");
        assert_eq!(line["forced"], true, "{line}");
        assert!(
            line["requested_by"]
                .as_str()
                .is_some_and(|b| b.starts_with("http")),
            "{line}"
        );
        let job = line["job_id"].as_str().expect("job id").to_string();
        per_job
            .entry(job)
            .or_default()
            .push(line["outcome"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(per_job.len(), DEAD, "{} lines", lines.len());
    assert!(
        per_job.values().all(|o| o == &["intent", "applied"]),
        "{per_job:?}"
    );
    let reason = db.rows("SELECT status FROM jobs WHERE id = 7").await;
    assert_eq!(reason[0][0].as_deref(), Some("failed"));

    // Asked again, nothing is written twice: the rows are no longer as they were read.
    let (code, again) = post(
        &daemon,
        "/api/v1/jobs/fail",
        Some(TOKEN),
        &format!("{{\"incident\": \"{incident}\", \"expect\": {DEAD}}}"),
    )
    .await;
    assert!(
        (code == 200 && again["outcomes"]["applied"] == 0) || code == 409 || code == 404,
        "{code} {again}"
    );
    assert_eq!(audit(&state).len(), lines.len(), "nothing more was written");
    assert_eq!(daemon.stop().await, 0);
}

per_backend!(
    bulk_fail_of_an_incident,
    a_person_fails_a_mass_stall_in_one_confirmed_request,
    postgres => Postgres,
    mysql => MySql,
    sqlite => Sqlite
);

/// Two groups of jobs that died together (two incidents, one per rule), and two alive: `recover
/// --incident` writes the one incident's jobs only, and only with `--force` while the
/// mass-stall guard holds them.
#[tokio::test]
async fn recover_incident_writes_that_incidents_jobs_only() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.exec("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT, created_at TEXT, updated_at TEXT, phase TEXT)")
        .await;
    // 1..=12 (phase a) stopped 47 minutes ago, 13..=18 (phase b) 97 minutes ago, 19 and 20
    // beat now.
    for id in 1..=20 {
        let (beat, phase) = match id {
            1..=12 => (47.0 + f64::from(id) / 100.0, "a"),
            13..=18 => (97.0 + f64::from(id) / 100.0, "b"),
            _ => (0.1, "a"),
        };
        db.exec(&format!(
            "INSERT INTO jobs VALUES ({id}, 'running', {}, {}, '{phase}')",
            db.ago(180.0),
            db.ago(beat)
        ))
        .await;
    }
    let state = db.dir().join("state");
    let config = TestConfig::new(&db.url)
        .jobs("phase = \"phase\"")
        .heartbeat_rule("hb-a", "30m", "action = \"fail\"\nphases = [\"a\"]")
        .heartbeat_rule("hb-b", "30m", "action = \"fail\"\nphases = [\"b\"]")
        .state(&state)
        .write(db.dir().join("jw.toml"));
    let (code, checked) = common::jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!(code, 1, "{checked}");
    let incident = |jobs: usize| {
        checked["incidents"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["jobs"] == jobs))
            .and_then(|i| i["id"].as_str())
            .unwrap_or_else(|| panic!("an incident of {jobs} jobs: {checked}"))
            .to_string()
    };
    let (twelve, six) = (incident(12), incident(6));
    assert_ne!(twelve, six);

    // The guard holds 12 of 20 active jobs: nothing written without --force.
    let (code, held) =
        common::jobwarden_json(&db.url, &config, &["recover", "--incident", &twelve]);
    assert_eq!(code, 1, "{held}");
    assert_eq!(failed(&db).await, 0, "{held}");

    let (code, done) = common::jobwarden_json(
        &db.url,
        &config,
        &["recover", "--incident", &twelve, "--force"],
    );
    // The other incident's findings remain for a person.
    assert_eq!(code, 1, "{done}");
    let mut written = common::applied(&done);
    written.sort_by_key(|id| id.parse::<u32>().unwrap_or(0));
    let expected: Vec<String> = (1..=12).map(|i| i.to_string()).collect();
    assert_eq!(written, expected, "{done}");
    assert_eq!(failed(&db).await, 12);
    let alive = db
        .rows("SELECT status FROM jobs WHERE status = 'running'")
        .await;
    assert_eq!(
        alive.len(),
        8,
        "the six of the other incident and the two alive"
    );

    // An incident the scan does not know is a usage error.
    let out = common::jobwarden(
        &db.url,
        &[
            "recover",
            "--config",
            config.to_str().unwrap(),
            "--incident",
            "inc-404",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no incident \"inc-404\""),
        "{out:?}"
    );
}

/// Bulk actions by selection and by ids, small: a pause holds a bulk write; a snooze of a
/// rule's jobs; a re-queue of named ids where one is not in the table; the body's mistakes.
#[tokio::test]
async fn bulk_snooze_by_selection_and_requeue_by_ids() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    for id in 1..=16 {
        let beat = if id <= 6 {
            47.0 + f64::from(id) / 100.0
        } else {
            0.1
        };
        db.running(id, 180.0, beat).await;
    }
    let state = db.dir().join("state");
    let config = TestConfig::new(&db.url)
        .top("interval = \"500ms\"")
        .statuses("pending = [\"queued\"]\nrunning = [\"running\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]")
        .heartbeat_rule("hb", "30m", "action = \"alert\"")
        .section(&format!("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""))
        .state(&state)
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    let by_rule = "{\"select\": {\"rule\": \"hb\", \"kind\": \"stalled\"}, \"dry_run\": true}";
    let preview = wait_for("the six findings", Duration::from_secs(30), || async {
        let (code, v) = post(&daemon, "/api/v1/jobs/requeue", Some(TOKEN), by_rule).await;
        (code == 200 && v["count"] == 6).then_some(v)
    })
    .await;
    assert!(
        preview["statement"]
            .as_str()
            .is_some_and(|s| s.contains("queued")),
        "{preview}"
    );

    // The body names the jobs exactly one way.
    for body in [
        "{\"select\": {}, \"dry_run\": true}",
        "{\"ids\": [\"1\"], \"incident\": \"inc-1\", \"dry_run\": true}",
        "{\"dry_run\": true}",
        "{\"select\": {\"colour\": \"red\"}, \"dry_run\": true}",
    ] {
        let (code, answer) = post(&daemon, "/api/v1/jobs/fail", Some(TOKEN), body).await;
        assert_eq!(code, 400, "{body}: {answer}");
    }
    let (code, _) = post(&daemon, "/api/v1/jobs/delete", Some(TOKEN), by_rule).await;
    assert_eq!(code, 404);

    // A pause holds a person's bulk write as it holds one job's.
    let (code, _) = post(&daemon, "/api/v1/pause", Some(TOKEN), "{\"for\": \"30m\"}").await;
    assert_eq!(code, 200);
    let ids = "{\"ids\": [\"1\", \"2\", \"99\", \"1\"], \"expect\": 3, \"reason\": \"retry\"}";
    let (code, answer) = post(&daemon, "/api/v1/jobs/requeue", Some(TOKEN), ids).await;
    assert_eq!(code, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("pause")),
        "{answer}"
    );
    let (code, _) = post(&daemon, "/api/v1/pause", Some(TOKEN), "{\"for\": \"0s\"}").await;
    assert_eq!(code, 200);

    // Three distinct ids, one of them not in the table: two re-queued, one refused.
    let (code, done) = post(&daemon, "/api/v1/jobs/requeue", Some(TOKEN), ids).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["count"], 3, "{done}");
    assert_eq!(done["outcomes"]["applied"], 2, "{done}");
    assert_eq!(done["outcomes"]["refused"], 1, "{done}");
    let queued = db
        .rows("SELECT status FROM jobs WHERE status = 'queued'")
        .await;
    assert_eq!(queued.len(), 2);
    let batch = done["batch"].as_str().expect("batch");
    let lines = audit(&state);
    assert_eq!(lines.len(), 4, "{lines:?}");
    // The pause and its end are kept beside the writes.
    let kept: Vec<String> = kept_holds(&state)
        .iter()
        .filter_map(|h| h["hold"].as_str().map(str::to_string))
        .collect();
    assert_eq!(kept, ["pause", "resume"]);
    assert!(
        lines
            .iter()
            .all(|l| l["batch"] == batch && l["action"] == "requeue"),
        "{lines:?}"
    );
    let out = common::jobwarden(
        &db.url,
        &["audit", "--config", config.to_str().unwrap(), "--last", "2"],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        shown.matches(&format!(" forced batch {batch}")).count(),
        2,
        "{shown}"
    );

    // The rest of the rule's jobs snoozed, by a selection of the findings still there.
    let preview = "{\"select\": {\"rule\": \"hb\"}, \"for\": \"2h\", \"dry_run\": true}";
    let counted = wait_for(
        "the re-queued jobs gone from the findings",
        Duration::from_secs(15),
        || async {
            let (code, v) = post(&daemon, "/api/v1/jobs/snooze", Some(TOKEN), preview).await;
            (code == 200 && v["count"] == 4).then_some(v)
        },
    )
    .await;
    assert!(
        counted["statement"]
            .as_str()
            .is_some_and(|s| s.starts_with("snooze each job for 2h")),
        "{counted}"
    );
    let snooze =
        "{\"select\": {\"rule\": \"hb\"}, \"for\": \"2h\", \"reason\": \"looking\", \"expect\": 4}";
    let (code, done) = post(&daemon, "/api/v1/jobs/snooze", Some(TOKEN), snooze).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["outcomes"]["applied"], 4, "{done}");
    let holds = std::fs::read_to_string(state.join("holds.json")).expect("holds.json");
    for id in 3..=6 {
        assert!(holds.contains(&format!("\"{id}\"")), "{holds}");
    }
    // Each snooze kept in the trail, with its reason.
    let snoozed: Vec<String> = kept_holds(&state)
        .iter()
        .filter(|h| h["hold"] == "snooze" && h["reason"] == "looking")
        .filter_map(|h| h["job_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(snoozed.len(), 4, "{snoozed:?}");
    // One line for the four snoozes, none per job.
    let log = daemon.log();
    assert_eq!(log.matches("4 jobs snoozed until").count(), 1, "{log}");
    assert!(!log.contains("job snoozed until"), "{log}");
    assert_eq!(daemon.stop().await, 0);
}
