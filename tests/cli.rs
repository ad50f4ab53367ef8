//! The binary's contract for bad input and its one-shot commands: exit codes, messages that
//! name the file, line and key, passwords that never appear, `validate`, `demo` and
//! `--older-than`.

mod common;

use std::path::Path;
use std::process::Output;

use common::{jobwarden, jobwarden_bare, jobwarden_json, Backend, Daemon, TestConfig, TestDb};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

const SMALL: &str = r#"
[database]
url = "${DATABASE_URL}"

[jobs]
table = "jobs"
heartbeat_at = "updated_at"

[jobs.statuses]
running = ["running"]
failed = ["failed"]

[[rules]]
name = "hb"
statuses = ["running"]
signal = "heartbeat"
after = "30m"
action = "fail"
"#;

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("jobwarden.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

async fn small_table(db: &TestDb, with_index: bool) {
    db.native_jobs_table().await;
    if with_index {
        db.exec("CREATE INDEX jobs_status ON jobs (status)").await;
    }
}

#[test]
fn config_errors_exit_2_and_name_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            SMALL.replace("heartbeat_at", "heartbeat"),
            ":7:1:",
            "unknown field `heartbeat`",
        ),
        (
            SMALL.replace("\"30m\"", "\"half an hour\""),
            ":17:9:",
            "`rules[0].after`",
        ),
        (
            SMALL.replace("[\"running\"]\nfailed", "[\"running\"]\nbroken"),
            ":11:1:",
            "unknown field `broken`",
        ),
        (
            SMALL.replace("\"jobs\"", "\"jobs; drop table x\""),
            ":6:9:",
            "`jobs.table`",
        ),
        (
            SMALL.replace("${DATABASE_URL}", "${JW_TEST_UNSET_VAR}"),
            ":3:7:",
            "`JW_TEST_UNSET_VAR` is not set",
        ),
    ];
    for (text, position, message) in cases {
        let config = write_config(dir.path(), &text);
        let out = jobwarden("sqlite://x.db", &["check", "--config", &config]);
        assert_eq!(code(&out), 2, "{message}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("{config}{position}")), "{err}");
        assert!(err.contains(message), "{err}");
    }
    let out = jobwarden(
        "sqlite://x.db",
        &["check", "--config", "/nonexistent/jw.toml"],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("/nonexistent/jw.toml: cannot read the config file"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["recover", "--older-than", "soon"][..],
        &["recover", "--older-than", "0"][..],
        &["frobnicate"][..],
    ] {
        let out = jobwarden("sqlite://x.db", args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn unreachable_database_exits_3_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let text = SMALL.replace("[jobs]\n", "query_timeout = \"1s\"\n\n[jobs]\n");
    let config = write_config(dir.path(), &text);
    for url in [
        "postgres://app:hunter2secret@127.0.0.1:1/app",
        "mysql://app:hunter2secret@127.0.0.1:1/app",
    ] {
        for command in ["check", "recover"] {
            let out = jobwarden(url, &[command, "--config", &config]);
            assert_eq!(code(&out), 3, "{url}: {}", stderr(&out));
            let all = format!("{}{}", stdout(&out), stderr(&out));
            assert!(!all.contains("hunter2secret"), "password leaked: {all}");
            assert!(all.contains("app:***@127.0.0.1:1"), "{all}");
        }
    }
    let out = jobwarden(
        "sqlite:///nonexistent/dir/jobs.db",
        &["check", "--config", &config],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

async fn missing_table_and_columns(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = write_config(db.dir(), SMALL);
    let out = jobwarden(&db.url, &["check", "--config", &config]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("table jobs does not exist"),
        "{}",
        stderr(&out)
    );

    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {}, created_at {})",
        db.ty("text"),
        db.ty("ts")
    ))
    .await;
    for command in ["check", "validate --connect"] {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.extend(["--config", &config]);
        let out = jobwarden(&db.url, &args);
        assert_eq!(code(&out), 2, "{command}: {}", stderr(&out));
        assert!(
            stderr(&out)
                .contains("table jobs has no column `updated_at` (set by `jobs.heartbeat_at`)"),
            "{}",
            stderr(&out)
        );
    }
}
per_backend!(missing_schema, missing_table_and_columns);

async fn validate_connect_reports_the_index(backend: Backend) {
    let db = TestDb::new(backend).await;
    small_table(&db, false).await;
    let config = write_config(db.dir(), SMALL);
    let out = jobwarden(&db.url, &["validate", "--connect", "--config", &config]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("warning: no index on jobs(status)"),
        "{}",
        stdout(&out)
    );

    // The index the candidate read wants starts with the status column: it serves both.
    db.exec("CREATE INDEX jobs_status ON jobs (status, updated_at)")
        .await;
    let (code_json, v) = jobwarden_json(&db.url, Path::new(&config), &["validate", "--connect"]);
    assert_eq!(code_json, 0);
    assert_eq!(v["valid"], true);
    assert_eq!(v["table"]["status_indexed"], true, "{v}");
    assert_eq!(v["table"]["candidate_indexed"], true, "{v}");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 0, "{v}");
}
per_backend!(validate_index, validate_connect_reports_the_index);

#[test]
fn validate_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{SMALL}\n[http]\ntoken = \"tok-very-secret-1\"\n");
    let config = write_config(dir.path(), &text);
    let out = jobwarden(
        "postgres://app:hunter2secret@db.internal:5432/app",
        &["validate", "--print", "--config", &config],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.starts_with(&format!("{config}: valid\n")),
        "the verdict comes first: {printed}"
    );
    assert!(
        printed.contains("postgres://app:***@db.internal:5432/app"),
        "{printed}"
    );
    assert!(
        !printed.contains("hunter2secret") && !printed.contains("tok-very-secret-1"),
        "{printed}"
    );
    assert!(printed.contains("\"after\": \"30m\""), "{printed}");
}

#[test]
fn every_example_config_validates() {
    let config = common::root().join("config");
    let mut seen = 0;
    // The example configs, and the ready configs for queue libraries in config/examples/.
    let entries = std::fs::read_dir(&config)
        .unwrap()
        .chain(std::fs::read_dir(config.join("examples")).unwrap());
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_jobwarden"))
                .args(["validate", "--config", path.to_str().unwrap()])
                .env("DATABASE_URL", "postgres://app:pw@127.0.0.1/app")
                .env("JOBWARDEN_TOKEN", "a-token-of-24-characters")
                .output()
                .unwrap();
            assert_eq!(code(&out), 0, "{}: {}", path.display(), stderr(&out));
            for env in ["development", "staging", "production"] {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_jobwarden"))
                    .args(["validate", "--env", env, "--config", path.to_str().unwrap()])
                    .env("DATABASE_URL", "postgres://app:pw@127.0.0.1/app")
                    .env("JOBWARDEN_TOKEN", "a-token-of-24-characters")
                    .output()
                    .unwrap();
                assert_eq!(
                    code(&out),
                    0,
                    "{} --env {env}: {}",
                    path.display(),
                    stderr(&out)
                );
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 13,
        "expected the five example configs and those of pg-boss, graphile-worker, procrastinate, Celery, Django, SQLAlchemy, Sequelize and Prisma, saw {seen}"
    );
}

#[test]
fn demo_shows_every_kind_of_job_problem() {
    let out = jobwarden("", &["demo"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "stalled",
        "overdue",
        "dead_process",
        "orphaned_child",
        "no heartbeat for 45m",
        "warning: job 11",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let out = jobwarden("", &["demo", "--json"]);
    assert_eq!(code(&out), 0);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("demo --json is one JSON object");
    let kinds: std::collections::BTreeSet<_> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds.len(), 8, "every kind of finding: {kinds:?}");
    // The healthy jobs (1 and 5) have no findings.
    assert!(!v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["job_id"] == "1" || f["job_id"] == "5"));
}

#[tokio::test]
async fn older_than_is_the_operators_lever() {
    let db = TestDb::new(Backend::Sqlite).await;
    small_table(&db, true).await;
    // Stuck means silent, not old: 1 and 3 have been silent for over 10 minutes; 2 was
    // created 20 minutes ago but beat a minute ago.
    for (id, created, beat) in [(1, 90.0, 15.0), (2, 20.0, 1.0), (3, 200.0, 12.0)] {
        db.exec(&format!(
            "INSERT INTO jobs VALUES ({id}, 'running', {}, {})",
            db.ago(created),
            db.ago(beat)
        ))
        .await;
    }
    let config = write_config(db.dir(), SMALL);
    let (c, plain) = jobwarden_json(&db.url, Path::new(&config), &["recover", "--dry-run"]);
    assert_eq!(
        (c, plain["findings"].as_array().unwrap().len()),
        (0, 0),
        "all are beating"
    );
    let (c, v) = jobwarden_json(
        &db.url,
        Path::new(&config),
        &["recover", "--dry-run", "--older-than", "10m"],
    );
    assert_eq!(c, 1);
    assert_eq!(
        common::findings(&v),
        common::expect(&[
            ("1", "overdue", "older-than"),
            ("3", "overdue", "older-than")
        ])
    );
    assert!(v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["outcome"] == "dry_run"
            && f["action"] == "fail"
            && f["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("no heartbeat for 1")));
    let statuses = db.rows("SELECT status FROM jobs ORDER BY id").await;
    assert!(
        statuses.iter().all(|r| r[0].as_deref() == Some("running")),
        "dry run wrote: {statuses:?}"
    );
}

#[tokio::test]
async fn dry_run_in_the_file_holds_recover_back() {
    let db = TestDb::new(Backend::Sqlite).await;
    small_table(&db, true).await;
    db.exec(&format!(
        "INSERT INTO jobs VALUES (1, 'running', {}, {})",
        db.ago(90.0),
        db.ago(60.0)
    ))
    .await;
    let config = write_config(db.dir(), &format!("dry_run = true\n{SMALL}"));
    let out = jobwarden(&db.url, &["recover", "--config", &config]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would write: job 1: UPDATE jobs SET status = 'failed'"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        db.rows("SELECT status FROM jobs").await[0][0].as_deref(),
        Some("running")
    );
}

#[tokio::test]
async fn where_scopes_reads_and_writes_and_bad_timestamps_only_warn() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.exec("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT, created_at TEXT, updated_at TEXT, archived INTEGER)")
        .await;
    for (id, beat, archived) in [
        (1, db.ago(60.0), 0),
        (2, db.ago(60.0), 1),
        (3, "'not a date'".to_string(), 0),
        (4, "'2026-13-45 99:00'".to_string(), 0),
    ] {
        db.exec(&format!(
            "INSERT INTO jobs VALUES ({id}, 'running', {}, {beat}, {archived})",
            db.ago(120.0)
        ))
        .await;
    }
    let text = SMALL.replace(
        "heartbeat_at = \"updated_at\"",
        "heartbeat_at = \"updated_at\"\nwhere = \"archived = 0\"",
    );
    let config = write_config(db.dir(), &text);
    let (c, v) = jobwarden_json(&db.url, Path::new(&config), &["recover"]);
    assert_eq!(
        c, 0,
        "every finding written: nothing left for a person: {v}"
    );
    assert_eq!(
        common::findings(&v),
        common::expect(&[("1", "stalled", "hb")])
    );
    let warned: Vec<_> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["job_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(warned, ["3", "4"]);
    assert!(v["warnings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("heartbeat `not a date` is not a timestamp"));
    let statuses = db.rows("SELECT status FROM jobs ORDER BY id").await;
    let statuses: Vec<_> = statuses.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(
        statuses,
        ["failed", "running", "running", "running"],
        "archived and unreadable rows stay"
    );
}

#[test]
fn secrets_may_come_from_systemd_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(
        creds.join("JW_CRED_URL"),
        "postgres://app:credpass@db.internal/app\n",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &SMALL.replace("${DATABASE_URL}", "${JW_CRED_URL}"),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .args(["validate", "--print", "--json", "--config", &config])
        .env("CREDENTIALS_DIRECTORY", &creds)
        .env_remove("JW_CRED_URL")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["config"]["database"]["url"],
        "postgres://app:***@db.internal/app"
    );
}

/// `recover` exits 3 when the database refused a write (here: a role that may only read), so
/// a script can tell "found and could not fix" from "found and fixed" (1).
#[tokio::test]
async fn recover_exits_3_when_a_write_is_refused() {
    let db = TestDb::new(Backend::Postgres).await;
    small_table(&db, true).await;
    db.exec(&format!(
        "INSERT INTO jobs VALUES (1, 'running', {}, {})",
        db.ago(90.0),
        db.ago(45.0)
    ))
    .await;
    let role = format!("jw_reader_{}", std::process::id());
    db.exec(&format!("DROP ROLE IF EXISTS {role}")).await;
    db.exec(&format!("CREATE ROLE {role} LOGIN")).await;
    db.exec(&format!("GRANT SELECT ON jobs TO {role}")).await;
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.url, "the test URL names the postgres user");
    let config = write_config(db.dir(), SMALL);
    let out = jobwarden(&url, &["recover", "--config", &config]);
    let text = String::from_utf8_lossy(&out.stdout);
    db.exec(&format!("REVOKE ALL ON jobs FROM {role}")).await;
    db.exec(&format!("DROP ROLE {role}")).await;
    assert_eq!(code(&out), 3, "{text}\n{}", stderr(&out));
    assert!(text.contains("permission denied"), "{text}");
    assert_eq!(
        db.rows("SELECT status FROM jobs").await[0][0].as_deref(),
        Some("running")
    );
}

/// A table with an `error` column, a 2 s heartbeat rule that fails, no `min_age`, and a state
/// directory so that one command's memory carries to the next.
async fn fast_rule_table() -> (TestDb, String) {
    let db = TestDb::new(Backend::Sqlite).await;
    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT, created_at {ts}, \
         updated_at {ts}, error TEXT)",
        ts = db.ty("ts")
    ))
    .await;
    let state = db.dir().join("state");
    let config = write_config(
        db.dir(),
        &format!(
            "{}\n[safety]\nmin_age = \"0s\"\n\n[state]\ndir = \"{}\"\n",
            SMALL.replace("after = \"30m\"", "after = \"2s\"").replace(
                "heartbeat_at = \"updated_at\"",
                "heartbeat_at = \"updated_at\"\nerror = \"error\""
            ),
            state.display()
        ),
    );
    (db, config)
}

/// A job that had been silent for two hours before jobwarden first saw it is judged from that
/// sight (it may have been re-queued a moment ago), but every verdict says what the row shows:
/// `check` names it as first seen late, the finding carries the row's own age, and the text
/// written into the application's `error` column gives both.
#[tokio::test]
async fn a_job_first_seen_late_shows_both_ages_and_writes_the_true_one() {
    let (db, config) = fast_rule_table().await;
    // The daemon has scanned before: the job was not running then.
    let out = jobwarden(&db.url, &["check", "--config", &config]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    db.exec(&format!(
        "INSERT INTO jobs VALUES (1, 'running', {}, {}, NULL)",
        db.ago(180.0),
        db.ago(120.0)
    ))
    .await;
    let out = jobwarden(&db.url, &["check", "--config", &config]);
    assert_eq!(
        code(&out),
        0,
        "not flagged at first sight: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("first seen late: 1 job (1) shows a signal older than its rule"),
        "{}",
        stdout(&out)
    );
    // Past the rule's limit since first sight, it is flagged, with the row's evidence.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (c, v) = jobwarden_json(&db.url, Path::new(&config), &["check"]);
    assert_eq!(c, 1, "{v}");
    let finding = &v["findings"][0];
    let signal_age = finding["signal_age_seconds"].as_u64().unwrap_or_default();
    assert!((7200..7260).contains(&signal_age), "{finding}");
    assert!(
        finding["age_seconds"].as_u64().unwrap_or(u64::MAX) < 60,
        "{finding}"
    );
    assert!(
        finding["signal_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z')),
        "{finding}"
    );
    let out = jobwarden(&db.url, &["recover", "--config", &config]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("wrote: job 1: UPDATE jobs SET status = 'failed'")
            && stdout(&out).ends_with("recover: 1 written; nothing is left to do\n"),
        "{}",
        stdout(&out)
    );
    let rows = db.rows("SELECT status, error FROM jobs").await;
    assert_eq!(rows[0][0].as_deref(), Some("failed"));
    let error = rows[0][1].clone().unwrap_or_default();
    assert!(
        error.contains("no heartbeat since ")
            && error.contains(" (2h ")
            && error.contains(" ago); watched running for ")
            && error.contains("(limit 2s)"),
        "the error column gets both ages: {error}"
    );
}

/// A Celery `STARTED` task has no creation time (`date_done` is NULL until it ends) and no
/// heartbeat: jobwarden's first scan dates it, and a later scan judges it from then on, saying so.
#[tokio::test]
async fn a_row_with_no_creation_time_is_judged_from_the_scan_that_first_saw_it() {
    let (db, config) = fast_rule_table().await;
    db.exec("INSERT INTO jobs VALUES (1, 'running', NULL, NULL, NULL)")
        .await;
    let out = jobwarden(&db.url, &["check", "--config", &config]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (c, v) = jobwarden_json(&db.url, Path::new(&config), &["check"]);
    assert_eq!(c, 1, "judged at a later scan, not skipped: {v}");
    let message = v["findings"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("no heartbeat for 3s (limit 2s; counted from the scan that first saw it: the row has no heartbeat and no creation time)"),
        "{message}"
    );
}

/// The seeds' story at a small scale: eight jobs whose heartbeats stopped in the same minute
/// are one incident, kept across runs, that ends saying how; `recover` under a mass stall
/// tells the incident with what holds it back, once.
#[tokio::test]
async fn jobs_that_died_together_are_one_incident() {
    let db = TestDb::new(Backend::Sqlite).await;
    small_table(&db, true).await;
    for id in 1..=8 {
        db.exec(&format!(
            "INSERT INTO jobs VALUES ({id}, 'running', {}, {})",
            db.ago(180.0),
            db.ago(41.0 + f64::from(id) / 100.0)
        ))
        .await;
    }
    db.exec(&format!(
        "INSERT INTO jobs VALUES (9, 'running', {}, {})",
        db.ago(180.0),
        db.ago(0.2)
    ))
    .await;
    let state = db.dir().join("state");
    let config = write_config(
        db.dir(),
        &format!(
            "{}\n[state]\ndir = \"{}\"\n",
            SMALL.replace("action = \"fail\"", "action = \"alert\""),
            state.display()
        ),
    );
    let (c, v) = jobwarden_json(&db.url, Path::new(&config), &["check"]);
    assert_eq!(c, 1, "{v}");
    let incidents = v["incidents"].as_array().cloned().unwrap_or_default();
    assert_eq!(incidents.len(), 1, "{v}");
    let inc = &incidents[0];
    assert_eq!(inc["jobs"], 8);
    assert_eq!(inc["cause"], "the jobs of rule hb stopped together");
    assert!(
        inc["ended_at"].is_null() && inc["opened_at"].is_string(),
        "{inc}"
    );
    let id = inc["id"].as_str().unwrap_or_default().to_string();
    assert!(
        v["findings"]
            .as_array()
            .is_some_and(|f| f.len() == 8 && f.iter().all(|f| f["incident"] == id.as_str())),
        "{v}"
    );
    // The next run keeps it; then a person cancels the jobs, and it ends saying so.
    let (_, again) = jobwarden_json(&db.url, Path::new(&config), &["check"]);
    assert_eq!(again["incidents"][0]["id"], id.as_str(), "{again}");
    db.exec("UPDATE jobs SET status = 'failed' WHERE id <= 8")
        .await;
    let (c, after) = jobwarden_json(&db.url, Path::new(&config), &["check"]);
    assert_eq!(c, 0, "{after}");
    let ended = &after["incidents"][0];
    assert_eq!(ended["id"], id.as_str());
    assert!(ended["ended_at"].is_string(), "{ended}");
    assert!(
        ended["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("; ended: 8 finished by a person or the application")),
        "{ended}"
    );
}

/// On a systemd host the database URL sits in a root-only file: `pause`, `snooze` and `audit`
/// must work without it, from `--url` and a token alone or from the config's `[http]` and
/// `[state]` tables.
#[tokio::test]
async fn operator_commands_need_no_database_settings() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    let state = db.dir().join("state");
    let token = "operator-token-0123456789";
    let daemon_config = TestConfig::new(&db.url)
        .heartbeat_rule("hb", "30m", "")
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\""
        ))
        .state(&state)
        .write(db.dir().join("daemon.toml"));
    let daemon = Daemon::start(&daemon_config, &[]);
    let url = daemon.url("");
    let shell = tempfile::tempdir().unwrap();
    let with_token = [("JOBWARDEN_TOKEN", token)];

    // No config file at all: the address and the token are enough. The pause is kept in the
    // trail with its reason and the person at the command line (`cli:$USER@host`).
    let out = jobwarden_bare(
        shell.path(),
        &[
            "pause",
            "--for",
            "30m",
            "--reason",
            "deploy window",
            "--url",
            &url,
        ],
        &[with_token[0], ("USER", "alice")],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("writes paused until 20"),
        "{}",
        stdout(&out)
    );
    let trail = std::fs::read_to_string(state.join("audit.jsonl")).unwrap_or_default();
    let pause: serde_json::Value = trail
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["hold"] == "pause")
        .unwrap_or_else(|| panic!("no pause in the trail: {trail}"));
    assert_eq!(pause["reason"], "deploy window", "{pause}");
    assert!(
        pause["by"].as_str().unwrap_or("").starts_with("cli:alice@"),
        "{pause}"
    );

    // The installed config, whose database URL is a variable this shell does not have.
    let installed = shell.path().join("jobwarden.toml");
    std::fs::write(
        &installed,
        format!(
            "[database]\nurl = \"${{DATABASE_URL}}\"\n[jobs]\ntable = \"jobs\"\n\
             [jobs.statuses]\nrunning = [\"running\"]\n[http]\nlisten = \"127.0.0.1:{}\"\n\
             token = \"${{JOBWARDEN_TOKEN}}\"\n[state]\ndir = \"{}\"\n",
            daemon.port,
            state.display()
        ),
    )
    .unwrap();
    let out = jobwarden_bare(
        shell.path(),
        &["pause", "--for", "0s", "-c", "jobwarden.toml"],
        &with_token,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "writes are not paused");
    // `audit` reads the trail from the config's [state] dir, or --state-dir: the pause and
    // its end, with who and why.
    let out = jobwarden_bare(shell.path(), &["audit", "-c", "jobwarden.toml"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("  pause every write until 20")
            && lines[0].contains(" by cli:alice@")
            && lines[0].ends_with(": deploy window"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("  resume every write by cli:"),
        "{lines:?}"
    );
    let out = jobwarden_bare(
        shell.path(),
        &[
            "audit",
            "--json",
            "--state-dir",
            &state.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let holds: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(holds[0]["hold"], "pause", "{holds:?}");
    assert_eq!(holds[1]["hold"], "resume", "{holds:?}");
    let empty_state = shell.path().join("no-state");
    let out = jobwarden_bare(
        shell.path(),
        &["audit", "--state-dir", &empty_state.display().to_string()],
        &[],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("no entries in ")
            && stdout(&out).contains(&empty_state.display().to_string()),
        "{}",
        stdout(&out)
    );

    // A command that reads the table still needs the database settings, and says which.
    let out = jobwarden_bare(shell.path(), &["check", "-c", "jobwarden.toml"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`DATABASE_URL` is not set"),
        "{}",
        stderr(&out)
    );

    // With neither a config nor an address, the error names both ways.
    let empty = tempfile::tempdir().unwrap();
    let out = jobwarden_bare(empty.path(), &["pause", "--for", "30m"], &with_token);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("-c PATH") && stderr(&out).contains("--url URL and --token"),
        "{}",
        stderr(&out)
    );
    // A token that is not set anywhere is named.
    let out = jobwarden_bare(empty.path(), &["pause", "--for", "30m", "--url", &url], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("JOBWARDEN_TOKEN"), "{}", stderr(&out));
    assert_eq!(daemon.stop().await, 0);
}

/// A database that cannot be reached says why, at once, with what to check: a port nothing
/// listens on is "refused" (not a 5-second "pool timed out"), a host name that does not
/// resolve is named, a port where no database answers says so.
#[test]
fn unreachable_database_says_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), SMALL);
    let closed = common::free_port();
    let started = tokio::time::Instant::now();
    let out = jobwarden(
        &format!("postgres://app:pw@127.0.0.1:{closed}/app"),
        &["check", "--config", &config],
    );
    let took = started.elapsed();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("connection refused by 127.0.0.1:{closed}"))
            && stderr(&out).contains("check the port in `database.url`"),
        "{}",
        stderr(&out)
    );
    assert!(
        took < std::time::Duration::from_secs(4),
        "a refused port answers at once, not after the 5s query timeout: {took:?}"
    );

    let out = jobwarden(
        "mysql://app:pw@no-such-host.invalid:3306/app",
        &["check", "--config", &config],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`no-such-host.invalid` was not found")
            && stderr(&out).contains("check the host in `database.url`"),
        "{}",
        stderr(&out)
    );

    // Something listens, but never speaks the database's protocol.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let quick = write_config(
        dir.path(),
        &SMALL.replace("[jobs]\n", "query_timeout = \"1s\"\n\n[jobs]\n"),
    );
    let out = jobwarden(
        &format!("postgres://app:pw@127.0.0.1:{port}/app"),
        &["check", "--config", &quick],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("accepted a connection, but no database answered within 1s")
            && stderr(&out).contains(&format!("check that port {port} is the database's")),
        "{}",
        stderr(&out)
    );
}

/// Config mistakes name their place and the fix: a `#` in an unencoded password, a
/// mistyped key or value ("did you mean"), a relative artifact root (named as resolved).
#[test]
fn config_mistakes_say_how_to_fix_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), SMALL);
    let out = jobwarden(
        "postgres://app:se#cret@127.0.0.1:5432/app",
        &["validate", "--config", &config],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{config}:3:7: `database.url`"))
            && stderr(&out).contains("percent-encode `#` as `%23`"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("se#cret"), "{}", stderr(&out));

    for (edit, place, says) in [
        (
            SMALL.replace("table = \"jobs\"", "tabel = \"jobs\""),
            ":6:1:",
            "unknown field `tabel`",
        ),
        (
            SMALL.replace("signal = \"heartbeat\"", "signal = \"hearbeat\""),
            ":16:10:",
            "unknown variant `hearbeat`",
        ),
        (
            SMALL.replace("statuses = [\"running\"]", "statuses = [\"Runing\"]"),
            ":15:13:",
            "watches `Runing`, which [jobs.statuses] does not list",
        ),
    ] {
        let config = write_config(dir.path(), &edit);
        let out = jobwarden("sqlite://x.db", &["validate", "--config", &config]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        let err = stderr(&out);
        let wanted = if says.contains("tabel") {
            "did you mean `table`?"
        } else if says.contains("Runing") {
            "did you mean `running`?"
        } else {
            "did you mean `heartbeat`?"
        };
        assert!(
            err.contains(&format!("{config}{place}")) && err.contains(says) && err.contains(wanted),
            "{err}"
        );
    }

    // A relative artifact root: valid, with a warning that names it resolved.
    let text = format!(
        "{SMALL}\n[[artifacts]]\nname = \"reports\"\nroot = \"volumes/logs\"\npattern = \"{{job_id}}/**\"\n"
    );
    write_config(dir.path(), &text);
    let folder = std::fs::canonicalize(dir.path()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .current_dir(&folder)
        .args(["validate", "--config", "jobwarden.toml"])
        .env("DATABASE_URL", "sqlite://x.db")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.starts_with("jobwarden.toml: valid\n"),
        "the verdict first: {printed}"
    );
    assert!(
        printed.contains("`artifacts[0].root` (line 22) \"volumes/logs\" is relative to the config file's folder")
            && printed.contains(&format!("it is read as {}", folder.join("volumes/logs").display()))
            && printed.contains("give an absolute path"),
        "{printed}"
    );
    assert!(
        !printed.contains("\"pattern\""),
        "the resolved config only with --print: {printed}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .current_dir(&folder)
        .args(["check", "--strict", "--config", "jobwarden.toml"])
        .env("DATABASE_URL", "sqlite://x.db")
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "artifact root {} (reports, given as \"volumes/logs\", relative to the config file's folder) does not exist",
            folder.join("volumes/logs").display()
        )),
        "{}",
        stderr(&out)
    );
}

/// Runs `jobwarden ARGS` under a pseudo-terminal (util-linux `script`), as a person at a
/// terminal would: what it printed, both streams together.
fn at_a_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let command = std::iter::once(env!("CARGO_BIN_EXE_jobwarden"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let out = std::process::Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("JOURNAL_STREAM")
        .envs(env.iter().copied())
        .output()
        .expect("run script (util-linux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Log lines are coloured only at a terminal, and never under `NO_COLOR`.
#[test]
fn no_color_and_a_pipe_get_plain_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    // A relative artifact root: `validate --json` logs a warning line beside its JSON.
    let text = format!(
        "{SMALL}\n[[artifacts]]\nname = \"reports\"\nroot = \"volumes/logs\"\npattern = \"{{job_id}}/**\"\n"
    );
    let config = write_config(dir.path(), &text);
    let env = [("DATABASE_URL", "sqlite://x.db")];
    let args = ["validate", "--json", "-c", config.as_str()];
    let coloured = at_a_terminal(&args, &env);
    assert!(
        coloured.contains("WARN") && coloured.contains('\u{1b}'),
        "a terminal gets colour: {coloured:?}"
    );
    let plain = at_a_terminal(&args, &[env[0], ("NO_COLOR", "1")]);
    assert!(
        plain.contains("WARN") && !plain.contains('\u{1b}'),
        "NO_COLOR: {plain:?}"
    );
    let piped = jobwarden("sqlite://x.db", &args);
    assert!(
        stderr(&piped).contains("WARN") && !stderr(&piped).contains('\u{1b}'),
        "a pipe: {:?}",
        stderr(&piped)
    );
}

/// Completions and man pages come from the CLI definition; `--version` names the revision.
#[test]
fn completions_man_pages_and_version() {
    for shell in ["bash", "zsh", "fish"] {
        let out = jobwarden("", &["completions", shell]);
        assert_eq!(code(&out), 0, "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for word in ["snooze", "older-than", "state-dir", "config"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = jobwarden("", &["completions", "tcsh"]);
    assert_eq!(code(&out), 2, "an unknown shell is a usage error");

    let secret = "a-token-that-must-not-show-1";
    let out = common::jobwarden_with_env("", &["man"], &[("JOBWARDEN_TOKEN", secret)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH jobwarden 1"), "{page}");
    for word in ["recover", "snooze", "completions"] {
        assert!(page.contains(word), "the main page lists {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = common::jobwarden_with_env(
        "",
        &["man", "--dir", dir.path().to_str().unwrap()],
        &[("JOBWARDEN_TOKEN", secret)],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recover = std::fs::read_to_string(dir.path().join("jobwarden-recover.1")).unwrap();
    assert!(recover.contains("older\\-than"), "{recover}");
    let pause = std::fs::read_to_string(dir.path().join("jobwarden-pause.1")).unwrap();
    assert!(
        pause.contains("\\-\\-token") && pause.contains(env!("CARGO_PKG_VERSION")),
        "{pause}"
    );
    assert!(
        !pause.contains(secret),
        "the token in the environment never shows: {pause}"
    );

    let out = jobwarden("", &["--version"]);
    assert_eq!(code(&out), 0);
    let version = stdout(&out);
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(common::root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let expected = format!(
        "jobwarden {} ({})\n",
        env!("CARGO_PKG_VERSION"),
        revision.as_deref().unwrap_or("unknown")
    );
    assert_eq!(version, expected);
}
