//! `validate --connect` as a proof, and errors that name their cause: each problem an
//! operator meets in the first hour (a broken `where`, status words the column cannot hold, a
//! read-only role, a quoted table, a missing report folder, a bad listen address), through
//! the real binary on real PostgreSQL, MariaDB and SQLite.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    findings, get, jobwarden, jobwarden_json, metric, wait_for, Backend, Daemon, TestConfig, TestDb,
};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(db: &TestDb, args: &[&str], config: &Path) -> (i32, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    let out = jobwarden(db.jobwarden_url(), &all);
    (out.status.code().unwrap_or(-1), text(&out))
}

/// The line of the first occurrence of `needle` in a config file.
fn line_of(config: &Path, needle: &str) -> usize {
    std::fs::read_to_string(config)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no `{needle}` in the config"))
}

/// A `jobs` table whose status column is of type `status_type`, with one running job silent
/// for 45 minutes.
async fn jobs_table(db: &TestDb, status_type: &str) {
    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {status_type}, created_at {ts}, \
         updated_at {ts}, archived INTEGER NOT NULL DEFAULT 0, pid {t} NULL, hostname {t} NULL)",
        ts = db.ty("ts"),
        t = db.ty("text")
    ))
    .await;
    db.exec("CREATE INDEX jobs_status ON jobs (status)").await;
    db.exec(&format!(
        "INSERT INTO jobs (id, status, created_at, updated_at) VALUES (1, 'running', {}, {})",
        db.ago(90.0),
        db.ago(45.0)
    ))
    .await;
}

fn config(db: &TestDb, jobs: &str, statuses: Option<&str>) -> PathBuf {
    let mut c = TestConfig::new(db.jobwarden_url())
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .state(&db.dir().join("state"));
    if !jobs.is_empty() {
        c = c.jobs(jobs);
    }
    if let Some(s) = statuses {
        c = c.statuses(s);
    }
    c.write(db.dir().join("jw.toml"))
}

// 1. A `where` the database cannot parse.
async fn broken_where(backend: Backend) {
    let db = TestDb::new(backend).await;
    jobs_table(&db, db.ty("text")).await;
    let config = config(&db, "where = \"archived = = 0\"", None);
    let line = line_of(&config, "where = ");
    let (code, out) = run(&db, &["validate", "--connect"], &config);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("`jobs.where` (line {line})")),
        "{out}"
    );
    let (code, out) = run(&db, &["check"], &config);
    assert_eq!(
        code, 2,
        "a query rejected because of the config is a config error: {out}"
    );
    assert!(
        out.contains(&format!("`jobs.where` (line {line}):")),
        "{out}"
    );
}

per_backend!(a_broken_where_is_named_with_its_line, broken_where);

// 2. Status words the column's type cannot hold: a PostgreSQL enum, a MySQL ENUM.
async fn enum_words(backend: Backend) {
    let db = TestDb::new(backend).await;
    let ty = match backend {
        Backend::Postgres => {
            db.exec("CREATE TYPE run_status AS ENUM ('pending', 'running', 'completed', 'failed')")
                .await;
            "run_status".to_string()
        }
        _ => "ENUM('pending', 'running', 'completed', 'failed')".to_string(),
    };
    jobs_table(&db, &ty).await;
    let config = config(
        &db,
        "",
        Some("running = [\"running\", \"processing\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]"),
    );
    let line = line_of(&config, "running = [");
    let (code, out) = run(&db, &["validate", "--connect"], &config);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "`jobs.statuses.running` (line {line}): `processing` (running) is not a value the column `status` can hold"
        )) && out.contains("pending, running, completed, failed"),
        "names the word, the class and the allowed values: {out}"
    );
    if backend == Backend::Postgres {
        // PostgreSQL rejects the word in the scan itself: a config error, naming the key.
        let (code, out) = run(&db, &["check"], &config);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("`jobs.statuses.running`"), "{out}");
    }
}

#[tokio::test]
async fn a_postgres_enum_rejects_a_word_it_does_not_have() {
    enum_words(Backend::Postgres).await;
}

#[tokio::test]
async fn a_mysql_enum_rejects_a_word_it_does_not_have() {
    enum_words(Backend::MySql).await;
}

// 2b. A CHECK (status IN (...)) constraint.
async fn check_constraint(backend: Backend) {
    let db = TestDb::new(backend).await;
    let ty = format!(
        "{} CHECK (status IN ('queued', 'running', 'done', 'failed'))",
        db.ty("text")
    );
    jobs_table(&db, &ty).await;
    let config = config(
        &db,
        "",
        Some("running = [\"running\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]"),
    );
    let (code, out) = run(&db, &["validate", "--connect"], &config);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("`completed` (succeeded) is not a value the column `status` can hold")
            && out.contains("queued, running, done, failed"),
        "{out}"
    );
}

per_backend!(
    a_check_constraint_lists_the_words_it_allows,
    check_constraint
);

// 3. A role that may read but not write, while the rules fail jobs.
#[tokio::test]
async fn a_read_only_role_is_told_which_privilege_it_lacks() {
    let db = TestDb::new(Backend::Postgres).await;
    jobs_table(&db, "text").await;
    let role = format!("jw_validate_{}", std::process::id());
    db.exec(&format!("DROP ROLE IF EXISTS {role}")).await;
    db.exec(&format!("CREATE ROLE {role} LOGIN")).await;
    db.exec(&format!("GRANT SELECT ON jobs TO {role}")).await;
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let config = TestConfig::new(&url)
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let out = jobwarden(
        &url,
        &[
            "validate",
            "--connect",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    db.exec(&format!("REVOKE ALL ON jobs FROM {role}")).await;
    db.exec(&format!("DROP ROLE {role}")).await;
    let out_text = text(&out);
    assert_eq!(out.status.code(), Some(2), "{out_text}");
    assert!(
        out_text.contains("the guarded UPDATE of `fail`: this database user may not make it")
            && out_text.contains("GRANT UPDATE (status) ON jobs"),
        "{out_text}"
    );
    assert!(
        out_text.contains("needs UPDATE (status) on jobs"),
        "{out_text}"
    );
}

// 4. The index advice for a quoted table runs as printed.
#[tokio::test]
async fn index_advice_for_a_quoted_table_runs_as_printed() {
    let db = TestDb::new(Backend::Postgres).await;
    db.exec(
        "CREATE TABLE \"JobRun\" (id INTEGER PRIMARY KEY, status text NOT NULL, created_at timestamptz, updated_at timestamptz)",
    )
    .await;
    let config = db.dir().join("jw.toml");
    std::fs::write(
        &config,
        TestConfig::new(db.jobwarden_url())
            .text()
            .replace("table = \"jobs\"", "table = '\"JobRun\"'"),
    )
    .unwrap();
    let (code, out) = run(&db, &["validate", "--connect"], &config);
    assert_eq!(code, 0, "{out}");
    let advice = out
        .lines()
        .find_map(|l| l.split("Create one: ").nth(1))
        .unwrap_or_else(|| panic!("no index advice: {out}"))
        .to_string();
    assert_eq!(
        advice,
        "CREATE INDEX \"JobRun_status_idx\" ON \"JobRun\" (\"status\")"
    );
    db.exec(&advice).await;
    // The candidate read's index, (status, heartbeat), is advised on its own line.
    let (code, out) = run(&db, &["validate", "--connect"], &config);
    assert_eq!(code, 0, "{out}");
    let advice = out
        .lines()
        .filter(|l| l.contains("no index on JobRun(status, updated_at)"))
        .find_map(|l| l.split("Create one: ").nth(1))
        .unwrap_or_else(|| panic!("no candidate index advice: {out}"))
        .to_string();
    assert_eq!(
        advice,
        "CREATE INDEX \"JobRun_status_updated_at_idx\" ON \"JobRun\" (\"status\", \"updated_at\") INCLUDE (\"id\")"
    );
    db.exec(&advice).await;
    let (code, out) = run(&db, &["validate", "--connect"], &config);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("no index on"), "{out}");
}

// 5. A report folder that is not there.
async fn missing_root(backend: Backend) {
    let db = TestDb::new(backend).await;
    jobs_table(&db, db.ty("text")).await;
    db.exec(&format!(
        "INSERT INTO jobs (id, status, created_at, updated_at) VALUES (2, 'completed', {}, {})",
        db.ago(30.0),
        db.ago(20.0)
    ))
    .await;
    let config = TestConfig::new(db.jobwarden_url())
        .section(
            "[[artifacts]]\nname = \"reports\"\nroot = \"volumes/logs\"\npattern = \"{job_id}/**\"\nrequired = [\"report.pdf\"]\nsettle = \"1m\"",
        )
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["check"]);
    assert_eq!(
        (code, findings(&report)),
        (0, vec![]),
        "a missing root tells nothing of what a job left: {report}"
    );
    let warning = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["message"].as_str())
        .find(|m| m.contains("artifact root `reports`"))
        .unwrap_or_else(|| panic!("no warning for the root: {report}"))
        .to_string();
    assert!(
        warning.contains(&db.dir().join("volumes/logs").display().to_string()),
        "{warning}"
    );
    let (code, _) = run(&db, &["check", "--strict"], &config);
    assert_eq!(code, 3);
    // Once the folder exists, the job without its report is found.
    std::fs::create_dir_all(db.dir().join("volumes/logs")).unwrap();
    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["check"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        findings(&report),
        common::expect(&[("2", "missing_artifact", "reports")])
    );
}

per_backend!(
    a_missing_artifact_root_is_a_warning_not_findings,
    missing_root
);

// 7. A listen address that is not one.
#[test]
fn a_bad_listen_address_is_a_config_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new("sqlite://x.db")
        .section("[http]\nlisten = \"not-an-address\"")
        .write(dir.path().join("jw.toml"));
    let line = line_of(&config, "listen =");
    for args in [&["validate"][..], &["run"][..]] {
        let mut all = args.to_vec();
        all.extend(["--config", config.to_str().unwrap()]);
        let out = jobwarden("sqlite://x.db", &all);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        assert!(
            t.contains(&format!(":{line}:")) && t.contains("`http.listen`"),
            "{t}"
        );
    }
}

// 8. A pid that is not a number.
#[tokio::test]
async fn a_pid_that_is_not_a_number_is_a_warning_for_its_row() {
    let db = TestDb::new(Backend::Sqlite).await;
    jobs_table(&db, "TEXT").await;
    db.exec("UPDATE jobs SET pid = 'abc', hostname = 'web-1'")
        .await;
    let config = config(&db, "pid = \"pid\"\nhost = \"hostname\"", None);
    let (_, report) = jobwarden_json(db.jobwarden_url(), &config, &["check"]);
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("pid `abc` is not a process id"),
        "{warnings}"
    );
}

// 9. The daemon on a query the database rejects: the database is up, the query is wrong.
#[tokio::test]
async fn the_daemon_tells_a_bad_query_from_an_outage() {
    let db = TestDb::new(Backend::Postgres).await;
    db.exec("CREATE TYPE run_status AS ENUM ('PENDING', 'running', 'COMPLETED', 'FAILED')")
        .await;
    jobs_table(&db, "run_status").await;
    let port = 0;
    let config = TestConfig::new(db.jobwarden_url())
        .top("interval = \"500ms\"")
        .statuses("pending = [\"PENDING\"]\nrunning = [\"processing\"]\nfailed = [\"FAILED\"]")
        .section(
            "[[rules]]\nname = \"hb\"\nstatuses = [\"processing\"]\nsignal = \"heartbeat\"\nafter = \"30m\"\naction = \"fail\"",
        )
        .state(&db.dir().join("state"))
        .http(port)
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    let metrics = wait_for("a counted query error", Duration::from_secs(20), || async {
        get(&daemon.url("/metrics"))
            .await
            .map(|(_, body)| body)
            .filter(|b| metric(b, "jobwarden_scan_errors_total{source=\"query\"}") >= Some(1.0))
    })
    .await;
    assert_eq!(metric(&metrics, "jobwarden_database_up"), Some(1.0));
    assert_eq!(
        metric(&metrics, "jobwarden_scan_errors_total{source=\"database\"}"),
        Some(0.0)
    );
    let (code, body) = get(&daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(code, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        ready["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`jobs.statuses.running`"),
        "{body}"
    );
    assert_eq!(ready["role"], "leader", "a single replica is no standby");
    let log = daemon.log();
    assert_eq!(
        log.matches("scan failed, retrying").count(),
        1,
        "one line when it starts failing: {log}"
    );
    assert_eq!(daemon.stop().await, 0);
}

// 10. Rows in status words the config never lists: `Running` beside `running`, an
// `in_progress` the application started writing yesterday, and an old `legacy` word.
async fn unlisted_status_words(backend: Backend) {
    let db = TestDb::new(backend).await;
    jobs_table(&db, db.ty("text")).await;
    for (first, n, status, minutes) in [
        (10, 3, "Running", 5.0),
        (20, 5, "in_progress", 30.0),
        (30, 2, "legacy", 60.0 * 24.0 * 30.0),
    ] {
        for id in first..first + n {
            db.exec(&format!(
                "INSERT INTO jobs (id, status, created_at, updated_at) VALUES ({id}, '{status}', {}, {})",
                db.ago(minutes),
                db.ago(minutes)
            ))
            .await;
        }
    }
    let config = TestConfig::new(db.jobwarden_url())
        .top("interval = \"300ms\"\nterminal_counts_every = \"300ms\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .state(&db.dir().join("state"))
        .http(0)
        .write(db.dir().join("jw.toml"));
    let running_line = line_of(&config, "running = [");
    let (code, out) = run(&db, &["validate", "--connect"], &config);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "`jobs.statuses.running` (line {running_line}): the status column holds `Running` (3 rows; the running word `running` differs only by case or spaces), which no class lists"
        )),
        "{out}"
    );
    assert!(
        out.contains("`jobs.statuses`")
            && out.contains("holds `in_progress` (5 rows), which no class lists"),
        "a word in use since yesterday: {out}"
    );
    assert!(
        out.contains("never watched: `legacy` (2 rows)"),
        "an old word is a warning: {out}"
    );

    let (code, out) = run(&db, &["check"], &config);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("rows in statuses `[jobs.statuses]` does not list are never watched: `in_progress` (5 rows), `Running` (3 rows; the running word `running` differs only by case or spaces), `legacy` (2 rows)"),
        "{out}"
    );

    let daemon = Daemon::start(&config, &[]);
    let metrics = wait_for(
        "the unlisted words counted",
        Duration::from_secs(20),
        || async {
            get(&daemon.url("/metrics"))
                .await
                .map(|(_, body)| body)
                .filter(|b| {
                    metric(b, "jobwarden_unlisted_status_rows{status=\"Running\"}").is_some()
                })
        },
    )
    .await;
    for (word, n) in [("Running", 3.0), ("in_progress", 5.0), ("legacy", 2.0)] {
        assert_eq!(
            metric(
                &metrics,
                &format!("jobwarden_unlisted_status_rows{{status=\"{word}\"}}")
            ),
            Some(n),
            "{metrics}"
        );
    }
    let report = wait_for(
        "the warning in the findings",
        Duration::from_secs(20),
        || async {
            get(&daemon.url("/api/v1/findings"))
                .await
                .map(|(_, body)| body)
                .filter(|b| b.contains("never watched"))
        },
    )
    .await;
    assert!(report.contains("`Running` (3 rows"), "{report}");
    // Several counts have run by now (every 300 ms): the warning is logged once.
    wait_for("more status counts", Duration::from_secs(20), || async {
        get(&daemon.url("/metrics"))
            .await
            .map(|(_, body)| body)
            .filter(|b| metric(b, "jobwarden_scans_total") >= Some(4.0))
    })
    .await;
    let log = daemon.log();
    assert_eq!(
        log.matches("are never watched").count(),
        1,
        "said once, not every count: {log}"
    );
    assert_eq!(daemon.stop().await, 0);
}

per_backend!(
    rows_in_unlisted_status_words_are_named,
    unlisted_status_words
);
