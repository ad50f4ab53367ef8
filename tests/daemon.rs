//! `jobwarden run` as a real process: HTTP endpoints, actions, signals, the systemd notify
//! protocol over a real datagram socket, and a PostgreSQL that is down at start and restarted
//! under the running daemon. Waits poll a condition with a deadline; nothing sleeps for a
//! fixed time to let things happen.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, get, metric, wait_for, Backend, Daemon, TestConfig, TestDb};

fn config_text(url: &str, port: u16, extra: &str) -> String {
    TestConfig::new(url)
        .top("interval = \"300ms\"\nterminal_counts_every = \"300ms\"")
        .top(extra)
        .database(r#"query_timeout = "2s""#)
        .jobs("finished_at = \"completed_at\"\nerror = \"error\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"\nseverity = \"critical\"")
        .http(port)
        .text()
}

async fn jobs_table(db: &TestDb) {
    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {t}, created_at {ts}, updated_at {ts}, \
         completed_at {ts}, error {long})",
        t = db.ty("text"),
        ts = db.ty("ts"),
        long = db.ty("longtext"),
    ))
    .await;
    db.exec(&format!(
        "INSERT INTO jobs (id, status, created_at, updated_at) VALUES \
         (1, 'running', {}, {}), (2, 'running', {}, {}), (3, 'completed', {}, {})",
        db.ago(60.0),
        db.ago(45.0),
        db.ago(10.0),
        db.ago(0.1),
        db.ago(90.0),
        db.ago(80.0)
    ))
    .await;
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// A fresh SQLite `jobs` table, and a dry-run config for it (the daemon picks its port).
async fn dry_run_setup() -> (TestDb, PathBuf) {
    let db = TestDb::new(Backend::Sqlite).await;
    jobs_table(&db).await;
    let text = config_text(&db.url, 0, "dry_run = true");
    let config = write(db.dir(), "jw.toml", &text);
    (db, config)
}

#[tokio::test]
async fn daemon_scans_acts_serves_and_stops_cleanly() {
    let db = TestDb::new(Backend::Sqlite).await;
    jobs_table(&db).await;
    let port = 0;
    let config = write(db.dir(), "jw.toml", &config_text(&db.url, port, ""));
    let daemon = Daemon::start(&config, &[]);

    // The stalled job is failed by the daemon's own scan; the live one is left alone.
    let status = wait_for("job 1 failed", Duration::from_secs(15), || async {
        let rows = db.rows("SELECT status, error FROM jobs WHERE id = 1").await;
        (rows[0][0].as_deref() == Some("failed")).then(|| rows[0][1].clone())
    })
    .await;
    assert!(status
        .unwrap_or_default()
        .starts_with("jobwarden: hb: no heartbeat for 45m"));
    assert_eq!(
        db.rows("SELECT status FROM jobs WHERE id = 2").await[0][0].as_deref(),
        Some("running")
    );

    assert_eq!(get(&daemon.url("/healthz")).await.map(|r| r.0), Some(200));
    let ready = wait_for("ready", Duration::from_secs(5), || async {
        get(&daemon.url("/readyz")).await.filter(|r| r.0 == 200)
    })
    .await;
    assert!(ready.1.contains("\"ready\":true"));
    // The exporter-toolkit aliases answer the same.
    assert_eq!(get(&daemon.url("/-/healthy")).await.map(|r| r.0), Some(200));
    let alias = get(&daemon.url("/-/ready")).await.expect("/-/ready");
    assert_eq!(alias.0, 200);
    assert!(alias.1.contains("\"ready\":true"), "{}", alias.1);

    let metrics = wait_for("terminal counts", Duration::from_secs(5), || async {
        get(&daemon.url("/metrics"))
            .await
            .map(|r| r.1)
            .filter(|m| metric(m, "jobwarden_jobs{status_class=\"failed\"}") == Some(1.0))
            .filter(|m| metric(m, "jobwarden_jobs{status_class=\"running\"}") == Some(1.0))
    })
    .await;
    for (prefix, value) in [
        ("jobwarden_database_up", 1.0),
        (
            "jobwarden_actions_total{action=\"fail\",outcome=\"applied\"}",
            1.0,
        ),
        ("jobwarden_jobs{status_class=\"running\"}", 1.0),
        ("jobwarden_jobs{status_class=\"succeeded\"}", 1.0),
        ("jobwarden_jobs_by_status{status=\"completed\"}", 1.0),
        (
            "jobwarden_findings{kind=\"stalled\",rule=\"hb\",severity=\"critical\"}",
            0.0,
        ),
    ] {
        assert_eq!(
            metric(&metrics, prefix),
            Some(value),
            "{prefix} in\n{metrics}"
        );
    }
    assert!(metric(&metrics, "jobwarden_scans_total").unwrap_or(0.0) >= 1.0);
    assert!(!metrics.contains("job_id"), "no job ids in labels");

    let (code, body) = get(&daemon.url("/api/v1/findings"))
        .await
        .expect("findings");
    assert_eq!(code, 200);
    let report: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(report["jobs"]["running"], 1);
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(0));

    // No token configured: write endpoints are forbidden.
    let r = reqwest::Client::new()
        .post(daemon.url("/api/v1/recover"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 403);

    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn recover_endpoint_checks_token_type_body_and_size() {
    let db = TestDb::new(Backend::Sqlite).await;
    jobs_table(&db).await;
    let port = 0;
    let text = config_text(&db.url, port, "dry_run = true")
        .replace("[http]\n", "[http]\ntoken = \"${JW_TEST_TOKEN}\"\n");
    let config = write(db.dir(), "jw.toml", &text);
    let daemon = Daemon::start(&config, &[("JW_TEST_TOKEN", "s3cr3t-token-0000")]);
    wait_for("ready", Duration::from_secs(10), || async {
        get(&daemon.url("/readyz")).await.filter(|r| r.0 == 200)
    })
    .await;
    let client = reqwest::Client::new();
    let post = |token: &str, ctype: &str, body: String| {
        client
            .post(daemon.url("/api/v1/recover"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", ctype.to_string())
            .body(body)
            .send()
    };
    let json = "application/json";
    for (token, ctype, body, expected) in [
        ("wrong", json, String::new(), 401),
        ("s3cr3t-token-0000", "text/plain", "{}".to_string(), 415),
        (
            "s3cr3t-token-0000",
            json,
            "{\"older_than\": ".to_string(),
            400,
        ),
        (
            "s3cr3t-token-0000",
            json,
            "{\"older_than\": \"soon\"}".to_string(),
            400,
        ),
        (
            "s3cr3t-token-0000",
            json,
            "{\"olderthan\": \"1h\"}".to_string(),
            400,
        ),
        (
            "s3cr3t-token-0000",
            json,
            format!("{{\"x\": \"{}\"}}", "a".repeat(100_000)),
            413,
        ),
        // A stranger's oversized body is refused for the token, not for its size.
        (
            "wrong",
            json,
            format!("{{\"x\": \"{}\"}}", "a".repeat(100_000)),
            401,
        ),
        ("s3cr3t-token-0000", json, "[\"1h\", true]".to_string(), 400),
        (
            "s3cr3t-token-0000",
            json,
            "{\"older_than\": \"0s\"}".to_string(),
            400,
        ),
    ] {
        let r = post(token, ctype, body).await.expect("post");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, expected, "{token} {ctype}: {text}");
        let answer: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("every error is JSON ({e}): {text}"));
        assert!(answer["error"].is_string(), "{text}");
        assert!(
            !text.contains("--older-than"),
            "the endpoint's own key: {text}"
        );
    }
    // Unknown routes and methods answer JSON too.
    for (method, path, expected) in [
        (reqwest::Method::GET, "/nope", 404),
        (reqwest::Method::DELETE, "/api/v1/recover", 405),
        (reqwest::Method::POST, "/metrics", 405),
    ] {
        let r = client
            .request(method.clone(), daemon.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), expected, "{method} {path}");
        let answer: serde_json::Value = r.json().await.expect("a JSON error");
        assert!(answer["error"].is_string());
    }
    // The real thing: older_than catches the job silent for 45 minutes, not the one that beat
    // seconds ago (stuck, not old); the file's dry_run holds writes.
    let r = post(
        "s3cr3t-token-0000",
        json,
        "{\"older_than\": \"5m\"}".to_string(),
    )
    .await
    .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    let report: serde_json::Value = r.json().await.expect("json");
    let mut ids: Vec<_> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "older-than")
        .map(|f| {
            (
                f["job_id"].as_str().unwrap_or("").to_string(),
                f["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [("1".to_string(), "dry_run".to_string())]);
    let statuses = db.rows("SELECT status FROM jobs ORDER BY id").await;
    assert_eq!(
        statuses
            .iter()
            .filter(|r| r[0].as_deref() == Some("running"))
            .count(),
        2,
        "dry run wrote"
    );
    assert!(!daemon.log().contains("s3cr3t-token-0000"), "token logged");
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn notify_protocol_reload_and_stop() {
    let (db, config) = dry_run_setup().await;
    let socket_path = db.dir().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let daemon = Daemon::start(
        &config,
        &[("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8"))],
    );
    let mut buf = vec![0u8; 4096];
    let mut recv = |what: &str| -> String {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notify message ({what}): {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut next_matching = |what: &str, pred: &dyn Fn(&str) -> bool| -> String {
        for _ in 0..50 {
            let m = recv(what);
            if pred(&m) {
                return m;
            }
        }
        panic!("no {what} message in 50");
    };
    // The first scan comes before READY=1.
    let first = next_matching("first cycle", &|m| m.contains("WATCHDOG=1"));
    assert!(first.contains("STATUS=2 running"), "{first}");
    assert!(
        first.contains("1 stalled") && first.contains("last scan"),
        "{first}"
    );
    let ready = next_matching("ready", &|m| m.contains("READY=1"));
    assert!(ready.contains("STATUS="), "{ready}");

    // A bad config on reload is logged and the old one kept.
    std::fs::write(&config, "this is not = [valid").expect("write");
    daemon.signal(libc::SIGHUP);
    let reloading = next_matching("reloading", &|m| m.contains("RELOADING=1"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    next_matching("ready after reload", &|m| m.contains("READY=1"));
    assert!(
        daemon
            .log()
            .contains("config reload failed, keeping the old config"),
        "{}",
        daemon.log()
    );
    next_matching("scans go on", &|m| m.contains("WATCHDOG=1"));

    // A good one takes effect.
    std::fs::write(
        &config,
        config_text(&db.url, 0, "dry_run = true").replace("\"30m\"", "\"3h\""),
    )
    .expect("write");
    daemon.signal(libc::SIGHUP);
    next_matching("reloading", &|m| m.contains("RELOADING=1"));
    next_matching("ready after reload", &|m| m.contains("READY=1"));
    let calm = next_matching("scan under the new rule", &|m| {
        m.contains("WATCHDOG=1") && !m.contains("stalled")
    });
    assert!(calm.contains("2 running"), "{calm}");

    daemon.signal(libc::SIGTERM);
    next_matching("stopping", &|m| m.contains("STOPPING=1"));
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn promtool_accepts_the_metrics() {
    let (_db, config) = dry_run_setup().await;
    let daemon = Daemon::start(&config, &[]);
    let metrics = wait_for("a scan", Duration::from_secs(10), || async {
        get(&daemon.url("/metrics"))
            .await
            .map(|r| r.1)
            .filter(|m| metric(m, "jobwarden_scans_total").unwrap_or(0.0) >= 1.0)
    })
    .await;
    let mut child = Command::new(common::tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), metrics.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    // The exporter guide's process metrics and the listener's own, under the spec's prefix.
    for name in [
        "jobwarden_process_open_fds ",
        "jobwarden_process_resident_memory_bytes ",
        "jobwarden_process_start_time_seconds ",
        "jobwarden_http_connections ",
        "jobwarden_http_connections_refused_total ",
        "jobwarden_http_connections_closed_total{reason=\"header_timeout\"} ",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert!(
        metrics.contains(
            "# HELP jobwarden_findings Findings per kind, rule and severity, as of the last scan."
        ),
        "{metrics}"
    );
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_daemon() {
    let (db, config) = dry_run_setup().await;
    let daemon = Daemon::start(&config, &[]);
    let prom_port = free_port();
    let prom_config = write(
        db.dir(),
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: jobwarden\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            daemon.port
        ),
    );
    let mut prometheus = Command::new(common::tool("prometheus"))
        .args([
            &format!("--config.file={}", prom_config.display()),
            &format!("--storage.tsdb.path={}", db.dir().join("tsdb").display()),
            &format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let query = format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query=jobwarden_jobs%7Bstatus_class%3D%22running%22%7D"
    );
    let value = wait_for(
        "prometheus to scrape jobwarden",
        Duration::from_secs(60),
        || async {
            let (_, body) = get(&query).await?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            v["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_string)
        },
    )
    .await;
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(value, "2");
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn survives_postgres_down_at_start_and_restarted_under_it() {
    let pg = common::PrivatePostgres::init();
    let url = pg.url();
    let port = 0;
    let dir = tempfile::tempdir().expect("dir");
    let config = write(
        dir.path(),
        "jw.toml",
        &config_text(&url, port, "dry_run = true"),
    );
    let daemon = Daemon::start(&config, &[]);

    // Down at start: alive, not ready, database_up 0, and retrying.
    wait_for(
        "healthz while the database is down",
        Duration::from_secs(10),
        || async { get(&daemon.url("/healthz")).await.filter(|r| r.0 == 200) },
    )
    .await;
    let (code, _) = get(&daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(code, 503);
    wait_for("database_up 0", Duration::from_secs(10), || async {
        get(&daemon.url("/metrics"))
            .await
            .filter(|r| metric(&r.1, "jobwarden_database_up") == Some(0.0))
    })
    .await;

    pg.start();
    let db = pg.connect().await;
    jobs_table(&db).await;
    wait_for(
        "ready once postgres is up",
        Duration::from_secs(30),
        || async { get(&daemon.url("/readyz")).await.filter(|r| r.0 == 200) },
    )
    .await;

    // Restarted in the middle of the run.
    drop(db);
    pg.stop();
    wait_for(
        "not ready while postgres is down",
        Duration::from_secs(30),
        || async { get(&daemon.url("/readyz")).await.filter(|r| r.0 == 503) },
    )
    .await;
    pg.start();
    wait_for(
        "ready again after the restart",
        Duration::from_secs(60),
        || async { get(&daemon.url("/readyz")).await.filter(|r| r.0 == 200) },
    )
    .await;
    let body = get(&daemon.url("/api/v1/findings"))
        .await
        .expect("findings");
    let report: serde_json::Value = serde_json::from_str(&body.1).expect("json");
    assert_eq!(report["jobs"]["running"], 2);
    assert!(daemon.log().contains("scan failed, retrying with backoff"));
    assert_eq!(daemon.stop().await, 0);
}

/// A job id with a newline in it cannot forge a log line: control characters are escaped in
/// text logs.
#[tokio::test]
async fn a_newline_in_a_job_id_cannot_forge_a_log_line() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.exec("CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT, created_at TEXT, updated_at TEXT, completed_at TEXT, error TEXT)")
        .await;
    db.exec(&format!(
        "INSERT INTO jobs (id, status, created_at, updated_at) VALUES \
         ('4' || char(10) || 'FORGED-ID all is well', 'running', {}, {})",
        db.ago(60.0),
        db.ago(45.0)
    ))
    .await;
    let port = 0;
    let config = write(
        db.dir(),
        "jw.toml",
        &config_text(&db.url, port, "dry_run = true"),
    );
    let daemon = Daemon::start(&config, &[]);
    wait_for("the finding logged", Duration::from_secs(15), || async {
        daemon.log().contains("finding:").then_some(())
    })
    .await;
    let log = daemon.log();
    assert_eq!(daemon.stop().await, 0);
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED-ID")),
        "a forged line: {log}"
    );
    assert!(log.contains("4\\nFORGED-ID"), "the id, escaped: {log}");
}

/// A request whose Host is a rebinding domain is answered 421; the listen address,
/// `localhost` and `[http] allowed_hosts` are answered.
#[tokio::test]
async fn a_rebinding_host_is_answered_421() {
    let (db, _) = dry_run_setup().await;
    let text = std::fs::read_to_string(db.dir().join("jw.toml"))
        .unwrap()
        .replace("[http]\n", "[http]\nallowed_hosts = [\"jobs.internal\"]\n");
    let config = write(db.dir(), "jw.toml", &text);
    let daemon = Daemon::start(&config, &[]);
    wait_for("ready", Duration::from_secs(10), || async {
        get(&daemon.url("/readyz")).await.filter(|r| r.0 == 200)
    })
    .await;
    let client = reqwest::Client::new();
    for (host, expected) in [
        ("evil.example", 421),
        ("evil.example:80", 421),
        ("localhost", 200),
        ("jobs.internal", 200),
    ] {
        let r = client
            .get(daemon.url("/api/v1/findings"))
            .header("host", host)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), expected, "Host: {host}");
        if expected == 421 {
            let body: serde_json::Value = r.json().await.expect("JSON");
            assert!(body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("allowed_hosts"));
        }
    }
    assert_eq!(daemon.stop().await, 0);
}

/// A job id that looks like more log fields stays one field: quoted and escaped in text logs,
/// a plain string in JSON logs.
#[tokio::test]
async fn a_job_id_cannot_forge_log_fields() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table_with_id("TEXT").await;
    let id = r#"7 kind="forged" rule="x""#;
    db.running(id, 120.0, 90.0).await;
    let config = TestConfig::new(&db.url)
        .top("interval = \"300ms\"")
        .heartbeat_rule("hb", "30m", "")
        .http(0)
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let finding_line = |daemon: &Daemon| {
        let log = daemon.log();
        log.lines()
            .find(|l| l.contains("finding: "))
            .map(str::to_string)
    };
    let daemon = Daemon::start(&config, &[]);
    let line = wait_for("the finding's log line", Duration::from_secs(15), || {
        std::future::ready(finding_line(&daemon))
    })
    .await;
    assert!(
        line.contains(r#"job_id="7 kind=\"forged\" rule=\"x\"""#),
        "{line}"
    );
    assert!(
        !line.contains(r#" kind="forged""#),
        "a forged field: {line}"
    );
    assert_eq!(daemon.stop().await, 0);

    let daemon = Daemon::start_with(&config, &[], |cmd| {
        cmd.args(["--log-format", "json"]);
    });
    let line = wait_for("the finding's JSON line", Duration::from_secs(15), || {
        std::future::ready(finding_line(&daemon))
    })
    .await;
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(json["fields"]["job_id"], id, "{line}");
    assert_eq!(json["fields"]["kind"], "stalled", "{line}");
    assert_eq!(daemon.stop().await, 0);
}
