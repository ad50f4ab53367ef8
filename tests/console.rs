//! The operator's console through the real binary on a real table: the status page and a
//! job's page under `[http] base_path`, their security headers, escaping of what the table
//! holds, and the assets they load.

mod common;

use std::time::Duration;

use common::{wait_for, Backend, Daemon, TestConfig, TestDb};

#[tokio::test]
async fn the_status_page_and_a_job_page_show_what_is_stuck() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table_with_id("TEXT").await;
    for (id, beat) in [("7", 90.0), ("<script>x</script>", 80.0), ("live", 0.1)] {
        db.running(id, 120.0, beat).await;
    }
    let state = db.dir().join("state");
    let config = TestConfig::new(&db.url)
        .top("interval = \"300ms\"\ndry_run = true")
        .jobs("status_since = \"created_at\"")
        .statuses(
            "pending = [\"queued\"]\nrunning = [\"running\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]",
        )
        .section("[[rules]]\nname = \"first\"\nstatuses = [\"queued\"]\nsignal = \"heartbeat\"\nafter = \"2h\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section("[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1\nmin_active = 100")
        .section("[http]\nlisten = \"127.0.0.1:0\"\nbase_path = \"/jobwarden\"\njob_url = \"https://app.example/jobs/{job_id}\"\ntoken = \"CONSOLETOKEN-0123\"")
        .state(&state)
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let client = client.clone();
        let url = daemon.url(path);
        async move {
            let r = client.get(&url).send().await.expect("GET");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.text().await.expect("body"))
        }
    };
    // A dry run: both stalled jobs stay listed, each with the write it would make.
    let page = wait_for(
        "both findings on the page",
        Duration::from_secs(15),
        || async {
            let (status, headers, body) = get("/jobwarden/").await;
            (status == 200 && body.matches("outcome dry_run").count() >= 2)
                .then_some((headers, body))
        },
    )
    .await;
    let (headers, body) = page;
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(body.contains("href=\"/jobwarden/jobs/7\""), "{body}");
    assert!(
        body.contains("href=\"/jobwarden/metrics\""),
        "the exporter landing page links"
    );
    assert!(
        !body.contains("<script>x</script>"),
        "a job id is text, never markup"
    );
    assert!(body.contains("&lt;script&gt;x&lt;/script&gt;"), "{body}");
    assert!(
        body.contains("database up") && body.contains("dry run on"),
        "{body}"
    );
    assert!(
        !body.contains("href=\"/jobwarden/jobs/live\""),
        "the live job is not listed"
    );

    // The job page: its audit trail, and the link to the application's own page.
    let (status, _, job) = get("/jobwarden/jobs/7").await;
    assert_eq!(status, 200);
    assert!(
        job.contains("dry_run")
            && job.contains("running → failed")
            && job.contains("no heartbeat for"),
        "{job}"
    );
    assert!(job.contains("href=\"https://app.example/jobs/7\""), "{job}");
    assert!(
        job.contains("<code>jobs.heartbeat_at</code></td><td><code>updated_at</code>"),
        "the row as read, by its configured columns: {job}"
    );
    assert!(
        job.contains("row: created") && job.contains("finding appeared: stalled (rule hb)"),
        "the timeline: {job}"
    );
    let (_, _, gone) = get("/jobwarden/jobs/nobody").await;
    assert!(gone.contains("The table has no row with this id"), "{gone}");
    let (status, _, unknown) = get("/jobwarden/jobs/nobody").await;
    assert_eq!(
        status, 404,
        "a job neither the table nor jobwarden knows is not found"
    );
    assert!(
        unknown.contains("no such job: the table has no row with this id"),
        "and its page says so: {unknown}"
    );
    // A job's page opens with its story: its state, then what is wrong with it.
    assert!(
        job.contains("<p class=\"headline\">running · stalled: no heartbeat for"),
        "{job}"
    );

    // The audit trail, filtered by job and by outcome.
    let (status, _, audit) = get("/jobwarden/audit?job=7").await;
    assert_eq!(status, 200);
    assert!(audit.contains("href=\"/jobwarden/jobs/7\""), "{audit}");
    assert!(
        !audit.contains("/jobwarden/jobs/%3Cscript"),
        "only job 7: {audit}"
    );
    let (_, _, none) = get("/jobwarden/audit?outcome=applied").await;
    assert!(
        none.contains("No audit entries match."),
        "a dry run applied nothing"
    );
    // The config, redacted, and the rules in the order they are tried.
    let (status, _, config) = get("/jobwarden/config").await;
    assert_eq!(status, 200);
    assert!(!config.contains("CONSOLETOKEN-0123"), "{config}");
    assert!(config.contains("***"));
    let (first, hb) = (config.find("<td>first</td>"), config.find("<td>hb</td>"));
    assert!(first.is_some() && first < hb, "first before hb: {config}");

    // Assets under the base path; routes outside it are 404 JSON.
    let (status, headers, css) = get("/jobwarden/assets/console.css").await;
    assert_eq!(
        (status, headers["content-type"].to_str().unwrap()),
        (200, "text/css; charset=utf-8")
    );
    assert!(css.contains("prefers-color-scheme: dark"));
    let (status, _, js) = get("/jobwarden/assets/console.js").await;
    assert_eq!(status, 200);
    assert!(js.contains("visibilityState"));
    assert_eq!(get("/jobwarden/metrics").await.0, 200);
    let (status, _, body) = get("/metrics").await;
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""), "{body}");
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn a_pause_holds_every_write_across_a_restart_until_it_ends() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    // Healthy at first, so the first scans write nothing.
    db.running(1, 120.0, 0.1).await;
    let config = TestConfig::new(&db.url)
        .top("interval = \"200ms\"")
        .jobs("status_since = \"created_at\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section("[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1\nmin_active = 100")
        .section("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"T0KEN-T0KEN-T0KEN\"")
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let client = reqwest::Client::new();
    let pause = |daemon: &Daemon, body: &str, token: &str| {
        client
            .post(daemon.url("/api/v1/pause"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let status = || async {
        db.rows("SELECT status FROM jobs WHERE id = 1").await[0][0]
            .clone()
            .unwrap_or_default()
    };
    let daemon = Daemon::start(&config, &[]);
    wait_for("ready", Duration::from_secs(10), || async {
        common::get(&daemon.url("/readyz"))
            .await
            .filter(|r| r.0 == 200)
    })
    .await;
    // The token rules, then a pause of an hour.
    let r = pause(&daemon, r#"{"for": "1h"}"#, "wrong")
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 401);
    let r = pause(&daemon, r#"{"for": "soon"}"#, "T0KEN-T0KEN-T0KEN")
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    // The CLI twin: the config's token, the daemon's address (port 0 in the file: --url).
    let config_arg = config.to_str().expect("utf-8");
    let (code, _, err) = cli(&db, &["pause", "--for", "1h", "--config", config_arg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("port 0") && err.contains("--url"), "{err}");
    let (code, _, err) = cli(&db, &["pause", "--for", "soon", "--config", config_arg]);
    assert_eq!(code, 2, "{err}");
    let url = daemon.url("");
    let (code, out, err) = cli(
        &db,
        &[
            "pause", "--for", "1h", "--url", &url, "--config", config_arg,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("writes paused until 20"), "{out}");

    // The job stalls while writes are paused: found, held back, shown, never written.
    db.exec(&format!("UPDATE jobs SET updated_at = {}", db.ago(90.0)))
        .await;
    let metrics = wait_for("held back twice", Duration::from_secs(10), || async {
        common::get(&daemon.url("/metrics"))
            .await
            .map(|r| r.1)
            .filter(|m| {
                common::metric(
                    m,
                    "jobwarden_actions_total{action=\"fail\",outcome=\"limited\"}",
                )
                .unwrap_or(0.0)
                    >= 2.0
            })
    })
    .await;
    assert_eq!(
        common::metric(&metrics, "jobwarden_writes_paused"),
        Some(1.0)
    );
    assert_eq!(status().await, "running");
    let (_, ready) = common::get(&daemon.url("/readyz")).await.expect("readyz");
    assert!(ready.contains("\"paused_until\":\"20"), "{ready}");
    let (_, page) = common::get(&daemon.url("/")).await.expect("page");
    assert!(page.contains("writes paused until"), "{page}");
    assert_eq!(
        daemon
            .log()
            .matches("writes held back: writes are paused until")
            .count(),
        1,
        "the held write says why, once, though held at every scan: {}",
        daemon.log()
    );

    // A restart keeps the pause.
    assert_eq!(daemon.stop().await, 0);
    let daemon = Daemon::start(&config, &[]);
    let metrics = scanned_thrice(&daemon).await;
    assert_eq!(
        common::metric(&metrics, "jobwarden_writes_paused"),
        Some(1.0)
    );
    assert_eq!(status().await, "running", "still paused after the restart");

    // Ending the pause lets the write through.
    let r = pause(&daemon, r#"{"for": "0s"}"#, "T0KEN-T0KEN-T0KEN")
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    wait_for("the job failed", Duration::from_secs(10), || async {
        (status().await == "failed").then_some(())
    })
    .await;
    assert_eq!(daemon.stop().await, 0);
}

/// Waits for the daemon's third scan (after a restart: the holds it read are in force); its
/// metrics then.
async fn scanned_thrice(daemon: &Daemon) -> String {
    wait_for("three scans", Duration::from_secs(10), || async {
        common::get(&daemon.url("/metrics"))
            .await
            .map(|r| r.1)
            .filter(|m| common::metric(m, "jobwarden_scans_total").unwrap_or(0.0) >= 3.0)
    })
    .await
}

/// Runs the real binary: its exit code, stdout and stderr.
fn cli(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = common::jobwarden(&db.url, args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `POST path` with the bearer token and a JSON body: the status and the JSON answer.
async fn post(daemon: &Daemon, path: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(daemon.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_fails_requeues_and_snoozes_one_job_at_a_time() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    // 1 and 2 stalled, 3 alive, 4 finished, 5 alive (for now).
    for (id, beat) in [(1, 90.0), (2, 80.0), (3, 0.1), (5, 0.1)] {
        db.running(id, 120.0, beat).await;
    }
    db.exec(&format!(
        "INSERT INTO jobs VALUES (4, 'completed', {0}, {0})",
        db.ago(100.0)
    ))
    .await;
    let hook = common::Receiver::start(0, &[]).await;
    let state = db.dir().join("state");
    // Alert-only: every write here is a person's.
    let config = TestConfig::new(&db.url)
        .top("interval = \"200ms\"")
        .jobs("status_since = \"created_at\"\nerror = \"error\"")
        .statuses(
            "pending = [\"queued\"]\nrunning = [\"running\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]",
        )
        .heartbeat_rule("hb", "30m", "action = \"alert\"")
        .section("[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1\nmin_active = 100")
        .section("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"T0KEN-T0KEN-T0KEN\"")
        .section(&format!("[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"", hook.url("/hook")))
        .state(&state)
        .write(db.dir().join("jw.toml"));
    db.exec("ALTER TABLE jobs ADD COLUMN error TEXT").await;
    let status = |id: u32| {
        let db = &db;
        async move {
            db.rows(&format!("SELECT status FROM jobs WHERE id = {id}"))
                .await[0][0]
                .clone()
                .unwrap_or_default()
        }
    };
    let daemon = Daemon::start(&config, &[]);
    wait_for(
        "both stalled jobs alerted",
        Duration::from_secs(10),
        || async { (hook.accepted("firing").len() >= 2).then_some(()) },
    )
    .await;
    let beat = db.rows("SELECT updated_at FROM jobs WHERE id = 1").await[0][0]
        .clone()
        .expect("heartbeat");
    let seen = format!(r#"{{"status": "running", "heartbeat": "{beat}"}}"#);

    // The token, the route, the body.
    let (code, _) = post(&daemon, "/api/v1/jobs/1/fail", "wrong", "{}").await;
    assert_eq!(code, 401);
    let (code, _) = post(&daemon, "/api/v1/jobs/1/delete", "T0KEN-T0KEN-T0KEN", "{}").await;
    assert_eq!(code, 404);
    let (code, answer) = post(
        &daemon,
        "/api/v1/jobs/1/fail",
        "T0KEN-T0KEN-T0KEN",
        r#"{"for": "1h"}"#,
    )
    .await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (400, Some("for: only snooze takes it"))
    );
    for (path, body) in [("/api/v1/jobs/5/snooze", "{}"), ("/api/v1/pause", "{}")] {
        let (code, answer) = post(&daemon, path, "T0KEN-T0KEN-T0KEN", body).await;
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            code == 400 && error.starts_with("for: missing, such as {\"for\": "),
            "{path}: {code} {answer}"
        );
    }

    // A dry run says the exact statement and writes nothing.
    let body = format!(r#"{{"dry_run": true, "seen": {seen}}}"#);
    let (code, answer) = post(&daemon, "/api/v1/jobs/1/fail", "T0KEN-T0KEN-T0KEN", &body).await;
    assert_eq!(
        (code, answer["outcome"].as_str()),
        (200, Some("dry_run")),
        "{answer}"
    );
    let statement = answer["statement"].as_str().unwrap_or_default();
    assert!(
        statement.starts_with("UPDATE \"jobs\" SET \"status\" = 'failed'")
            && statement.contains(&format!("'{beat}'")),
        "the guarded statement, heartbeat and all: {statement}"
    );
    assert_eq!(status(1).await, "running");

    // Refused, never written: a stale page, a live job, a finished one, no such job.
    let stale = r#"{"seen": {"status": "running", "heartbeat": "2001-01-01 00:00:00"}}"#;
    for (path, body, code, says) in [
        (
            "/api/v1/jobs/1/fail",
            stale,
            409,
            "changed since the page was drawn",
        ),
        ("/api/v1/jobs/3/fail", "{}", 409, "no finding"),
        (
            "/api/v1/jobs/4/requeue",
            "{}",
            409,
            "not pending or running",
        ),
        ("/api/v1/jobs/99/fail", "{}", 404, "has no job"),
    ] {
        let (got, answer) = post(&daemon, path, "T0KEN-T0KEN-T0KEN", body).await;
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            got == code && error.contains(says),
            "{path}: {got} {answer}"
        );
    }
    for id in [1, 3] {
        assert_eq!(status(id).await, "running");
    }
    assert_eq!(status(4).await, "completed");

    // The real thing: exactly that row, its reason, the audit trail says who asked.
    let body = format!(r#"{{"seen": {seen}, "reason": "worker 3 was OOM-killed"}}"#);
    let (code, answer) = post(&daemon, "/api/v1/jobs/1/fail", "T0KEN-T0KEN-T0KEN", &body).await;
    assert_eq!(
        (code, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    assert_eq!(status(1).await, "failed");
    let error = db.rows("SELECT error FROM jobs WHERE id = 1").await[0][0].clone();
    let error = error.unwrap_or_default();
    assert!(
        error.starts_with("jobwarden: hb: marked failed by http 127.0.0.1:")
            && error.ends_with(": worker 3 was OOM-killed"),
        "{error}"
    );
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).expect("audit");
    let applied: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["outcome"] == "applied")
        .collect();
    assert_eq!(applied.len(), 1, "{audit}");
    assert_eq!(applied[0]["job_id"], "1");
    assert!(
        applied[0]["requested_by"]
            .as_str()
            .unwrap_or_default()
            .starts_with("http 127.0.0.1:"),
        "{audit}"
    );
    let (code, answer) = post(&daemon, "/api/v1/jobs/1/fail", "T0KEN-T0KEN-T0KEN", "{}").await;
    assert_eq!(code, 409, "twice is refused: {answer}");
    let (code, answer) = post(&daemon, "/api/v1/jobs/2/requeue", "T0KEN-T0KEN-T0KEN", "{}").await;
    assert_eq!(
        (code, answer["status_after"].as_str()),
        (200, Some("queued")),
        "{answer}"
    );
    assert_eq!(status(2).await, "queued");
    assert_eq!(status(3).await, "running", "no other row was touched");
    wait_for(
        "job 1's alert resolved",
        Duration::from_secs(10),
        || async {
            hook.accepted("resolved")
                .into_iter()
                .find(|r| r.body["finding"]["job_id"] == "1")
        },
    )
    .await;
    // Its page's timeline has the alert's life: what the receiver was told, and why.
    let page = wait_for(
        "job 1's alert on its page",
        Duration::from_secs(10),
        || async {
            common::get(&daemon.url("/jobs/1"))
                .await
                .map(|r| r.1)
                .filter(|p| {
                    p.contains("alert resolved delivered to webhook: jobwarden failed the job")
                })
        },
    )
    .await;
    assert!(page.contains("alert firing delivered to webhook"), "{page}");

    // A snooze: job 5 stalls while snoozed, and nobody hears of it, across a restart too.
    let (code, answer) = post(
        &daemon,
        "/api/v1/jobs/4/snooze",
        "T0KEN-T0KEN-T0KEN",
        r#"{"for": "2h"}"#,
    )
    .await;
    assert_eq!(code, 409, "a finished job is not snoozed: {answer}");
    let (code, answer) = post(
        &daemon,
        "/api/v1/jobs/5/snooze",
        "T0KEN-T0KEN-T0KEN",
        r#"{"for": "2h", "reason": "migrating its data"}"#,
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    assert!(answer["snoozed_until"].is_string(), "{answer}");
    db.exec(&format!(
        "UPDATE jobs SET updated_at = {} WHERE id = 5",
        db.ago(95.0)
    ))
    .await;
    let page = wait_for("job 5 found, held", Duration::from_secs(10), || async {
        common::get(&daemon.url("/"))
            .await
            .map(|r| r.1)
            .filter(|p| p.contains("the job is snoozed until"))
    })
    .await;
    assert!(
        page.contains("migrating its data"),
        "the snooze is listed: {page}"
    );
    let (_, metrics) = common::get(&daemon.url("/metrics")).await.expect("metrics");
    assert_eq!(
        common::metric(&metrics, "jobwarden_jobs_snoozed"),
        Some(1.0)
    );
    let fired_for = |id: &str| {
        hook.accepted("firing")
            .into_iter()
            .filter(|r| r.body["finding"]["job_id"] == id)
            .count()
    };
    assert_eq!(fired_for("5"), 0);
    assert_eq!(daemon.stop().await, 0);
    let holds = std::fs::read_to_string(state.join("holds.json")).expect("holds");
    assert!(holds.contains("migrating its data"), "{holds}");
    let daemon = Daemon::start(&config, &[]);
    scanned_thrice(&daemon).await;
    assert_eq!(fired_for("5"), 0, "still snoozed after the restart");

    // Ended, from the command line: job 5's alert fires now.
    let url = daemon.url("");
    let config_arg = config.to_str().expect("utf-8");
    let (code, _, err) = cli(
        &db,
        &[
            "snooze", "4", "--for", "1h", "--url", &url, "--config", config_arg,
        ],
    );
    assert_eq!(code, 3, "a finished job is refused: {err}");
    assert!(err.contains("not pending or running"), "{err}");
    let (code, out, err) = cli(
        &db,
        &[
            "snooze", "5", "--for", "0s", "--url", &url, "--config", config_arg,
        ],
    );
    assert_eq!((code, out.as_str()), (0, "job 5 is not snoozed\n"), "{err}");
    wait_for("job 5 alerted", Duration::from_secs(10), || async {
        (fired_for("5") == 1).then_some(())
    })
    .await;
    assert_eq!(
        status(5).await,
        "running",
        "an alert-only rule never writes"
    );
    assert_eq!(daemon.stop().await, 0);
}

/// The README's first lines: the demo, then the daemon on the demo's config, and a person
/// acting on one of its stuck jobs with the demo's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_acts_on_a_demo_job_and_sees_its_timeline() {
    let out = common::jobwarden("", &["demo"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let config = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("config:"))
        .map(|p| std::path::PathBuf::from(p.trim()))
        .expect("the demo names its config");
    assert!(stdout.contains("demo-console-token"), "{stdout}");
    // The demo listens on the default port; this test's daemon on a free one.
    let text = std::fs::read_to_string(&config).expect("demo config");
    std::fs::write(
        &config,
        text.replace("[http]\n", "[http]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .expect("write");
    let daemon = Daemon::start(&config, &[]);
    let report = wait_for("the demo's findings", Duration::from_secs(15), || async {
        let (code, body) = common::get(&daemon.url("/api/v1/findings")).await?;
        let report: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200).then_some(report)
    })
    .await;
    // The demo's daemon writes nothing itself for its first hour: every stuck job is left
    // for the newcomer to click, its write held back.
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    let fails: Vec<_> = findings.iter().filter(|f| f["action"] == "fail").collect();
    assert!(!fails.is_empty(), "{report}");
    assert!(
        fails.iter().all(|f| f["outcome"] == "limited"),
        "held back, not written: {report}"
    );
    // An alert-only finding: the daemon leaves it to a person.
    let job = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["action"] == "alert" && f["status"] == "running")
        .and_then(|f| f["job_id"].as_str())
        .expect("an alert-only finding of a running job")
        .to_string();
    let (code, answer) = post(
        &daemon,
        &format!("/api/v1/jobs/{job}/fail"),
        "demo-console-token",
        r#"{"reason": "trying the console"}"#,
    )
    .await;
    assert_eq!(
        (code, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    let (_, page) = common::get(&daemon.url(&format!("/jobs/{job}")))
        .await
        .expect("the job page");
    assert!(
        page.contains("applied</span> fail running → failed")
            && page.contains("asked by http 127.0.0.1:"),
        "{page}"
    );
    let (write, cleared) = (
        page.find("applied</span> fail"),
        page.find("finding cleared"),
    );
    assert!(
        write.is_some() && write < cleared,
        "the write, then the finding clears: {page}"
    );
    assert_eq!(daemon.stop().await, 0);
}

/// A person's fail of one job on each database: the one-row read, the guard, the write.
async fn a_person_fails_one_job(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.small_jobs_table().await;
    db.running(1, 120.0, 90.0).await;
    db.running(2, 120.0, 0.1).await;
    let config = TestConfig::new(&db.url)
        .top("interval = \"200ms\"")
        .jobs("status_since = \"created_at\"")
        .heartbeat_rule("hb", "30m", "action = \"alert\"")
        .section("[safety]\nstartup_grace = \"0s\"")
        .section("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"T0KEN-T0KEN-T0KEN\"")
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    wait_for("job 1 found", Duration::from_secs(15), || async {
        common::get(&daemon.url("/api/v1/findings"))
            .await
            .filter(|r| r.0 == 200 && r.1.contains("\"job_id\":\"1\""))
    })
    .await;
    let beat = db
        .rows(&format!(
            "SELECT {} FROM jobs WHERE id = 1",
            db.text("updated_at")
        ))
        .await[0][0]
        .clone()
        .expect("heartbeat");
    let seen = serde_json::json!({"status": "running", "heartbeat": beat});
    let stale = serde_json::json!({"seen": {"status": "running", "heartbeat": "x"}});
    let (code, answer) = post(
        &daemon,
        "/api/v1/jobs/1/fail",
        "T0KEN-T0KEN-T0KEN",
        &stale.to_string(),
    )
    .await;
    assert_eq!(code, 409, "{answer}");
    let body = serde_json::json!({"seen": seen, "dry_run": true}).to_string();
    let (code, answer) = post(&daemon, "/api/v1/jobs/1/fail", "T0KEN-T0KEN-T0KEN", &body).await;
    assert_eq!(
        (code, answer["outcome"].as_str()),
        (200, Some("dry_run")),
        "{answer}"
    );
    let body = serde_json::json!({"seen": seen}).to_string();
    let (code, answer) = post(&daemon, "/api/v1/jobs/1/fail", "T0KEN-T0KEN-T0KEN", &body).await;
    assert_eq!(
        (code, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    let statuses = db.rows("SELECT status FROM jobs ORDER BY id").await;
    let statuses: Vec<Option<String>> = statuses.into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(
        statuses,
        [Some("failed".to_string()), Some("running".to_string())]
    );
    let (_, page) = common::get(&daemon.url("/jobs/1")).await.expect("page");
    assert!(
        page.contains(
            "<code>jobs.status</code></td><td><code>status</code></td><td><code>failed</code>"
        ),
        "the row as read now: {page}"
    );
    let (code, _) = post(
        &daemon,
        "/api/v1/jobs/not-a-number/fail",
        "T0KEN-T0KEN-T0KEN",
        "{}",
    )
    .await;
    assert_eq!(code, 404, "an id the column cannot hold is no job");
    // Ids beyond the column's integers (INTEGER is 32-bit on PostgreSQL and MariaDB, 64-bit
    // on SQLite): no such row, never a database error.
    for id in ["3000000000", "9999999999999999999", "-9999999999999999999"] {
        let (code, answer) = post(
            &daemon,
            &format!("/api/v1/jobs/{id}/fail"),
            "T0KEN-T0KEN-T0KEN",
            "{}",
        )
        .await;
        assert_eq!(code, 404, "{id}: {answer}");
        let (code, page) = common::get(&daemon.url(&format!("/jobs/{id}")))
            .await
            .expect("page");
        assert_eq!(
            code, 404,
            "{id}: no such job, and a page that says so: {page}"
        );
        assert!(
            page.contains("The table has no row with this id"),
            "{id}: {page}"
        );
    }
    assert_eq!(daemon.stop().await, 0);
}

per_backend!(one_job_by_hand, a_person_fails_one_job);

/// Whatever else may answer on a port (a proxy, another service): each connection is read
/// to the end of its request, answered with `response` (a whole HTTP/1.1 answer) and closed.
/// Its port, and the count of requests it took.
async fn stand_in(response: String) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = taken.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let text = String::from_utf8_lossy(&got).to_lowercase();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            break;
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, taken)
}

/// A whole HTTP/1.1 answer.
fn answer(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Runs the real binary off the test's runtime (the stand-ins answer on it meanwhile).
async fn cli_with_env(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let (url, args, env): (String, Vec<String>, Vec<(String, String)>) = (
        db.url.clone(),
        args.iter().map(|a| a.to_string()).collect(),
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        common::jobwarden_with_env(&url, &args, &env)
    })
    .await
    .expect("cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn pause_and_snooze_succeed_only_on_jobwarden_s_own_confirmation() {
    let db = TestDb::new(Backend::Sqlite).await;
    let config = TestConfig::new(&db.url)
        .heartbeat_rule("hb", "30m", "")
        .section("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"a-token-of-24-characters\"")
        .write(db.dir().join("jw.toml"));
    let config = config.to_str().expect("utf-8");
    // A success that is not jobwarden's, for `--for 30m`, then for `--for 0s`.
    let html = answer("200 OK", "text/html", "<html>Welcome to nginx!</html>");
    let unrelated = answer("200 OK", "application/json", r#"{"ok": true}"#);
    let not_paused = answer("200 OK", "application/json", r#"{"paused_until": null}"#);
    let not_a_time = answer("200 OK", "application/json", r#"{"paused_until": "soon"}"#);
    let empty = "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_string();
    let still_paused = answer(
        "200 OK",
        "application/json",
        r#"{"paused_until": "2030-01-01T00:00:00Z"}"#,
    );
    let snoozed_dry = answer(
        "200 OK",
        "application/json",
        r#"{"job_id": "7", "action": "snooze", "outcome": "dry_run", "snoozed_until": "2030-01-01T00:00:00Z"}"#,
    );
    for (response, duration) in [
        (&html, "30m"),
        (&unrelated, "30m"),
        (&not_paused, "30m"),
        (&not_a_time, "30m"),
        (&empty, "30m"),
        (&still_paused, "0s"),
        (&html, "0s"),
    ] {
        let (port, taken) = stand_in(response.clone()).await;
        let url = format!("http://127.0.0.1:{port}");
        let (code, out, err) = cli_with_env(
            &db,
            &[
                "pause", "--for", duration, "--url", &url, "--config", config,
            ],
            &[],
        )
        .await;
        assert_eq!(code, 3, "{response}: {out}{err}");
        assert!(
            err.contains("is not jobwarden's confirmation, so nothing is known to be held"),
            "{err}"
        );
        assert!(!out.contains("paused"), "{out}");
        assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
    for response in [&html, &still_paused, &snoozed_dry] {
        let (port, _) = stand_in(response.clone()).await;
        let url = format!("http://127.0.0.1:{port}");
        let (code, out, err) = cli_with_env(
            &db,
            &[
                "snooze", "7", "--for", "2h", "--url", &url, "--config", config,
            ],
            &[],
        )
        .await;
        assert_eq!(code, 3, "{response}: {out}{err}");
        assert!(err.contains("not jobwarden's confirmation"), "{err}");
    }
}

#[tokio::test]
async fn pause_and_snooze_never_send_a_loopback_daemon_s_token_to_a_proxy() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    db.running(1, 120.0, 0.1).await;
    let config = TestConfig::new(&db.url)
        .top("interval = \"300ms\"")
        .heartbeat_rule("hb", "30m", "")
        .section("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"a-token-of-24-characters\"")
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let config = config.to_str().expect("utf-8");
    let daemon = Daemon::start(std::path::Path::new(config), &[]);
    wait_for("ready", Duration::from_secs(10), || async {
        common::get(&daemon.url("/readyz"))
            .await
            .filter(|r| r.0 == 200)
    })
    .await;
    // A proxy that would take anything, and say yes to it.
    let (proxy_port, proxied) = stand_in(answer(
        "200 OK",
        "application/json",
        r#"{"paused_until": "2030-01-01T00:00:00Z"}"#,
    ))
    .await;
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let env = [
        ("HTTP_PROXY", proxy.as_str()),
        ("http_proxy", proxy.as_str()),
        ("HTTPS_PROXY", proxy.as_str()),
        ("https_proxy", proxy.as_str()),
        ("ALL_PROXY", proxy.as_str()),
        ("all_proxy", proxy.as_str()),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
    ];
    let local = format!("http://localhost:{}", daemon.port);
    let ip = daemon.url("");
    for args in [
        vec!["pause", "--for", "30m", "--url", &ip],
        vec!["pause", "--for", "0s", "--url", &local],
        vec![
            "snooze",
            "1",
            "--for",
            "1h",
            "--url",
            &ip,
            "--proxy-from-env",
        ],
        vec![
            "snooze",
            "1",
            "--for",
            "0s",
            "--url",
            &local,
            "--proxy-from-env",
        ],
    ] {
        let mut all = args.clone();
        all.extend(["--config", config]);
        let (code, out, err) = cli_with_env(&db, &all, &env).await;
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    assert_eq!(
        proxied.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the proxy was sent a request"
    );
    // A proxy for a plain-HTTP daemon beyond loopback would read the token: refused.
    let (code, _, err) = cli_with_env(
        &db,
        &[
            "pause",
            "--for",
            "30m",
            "--url",
            "http://192.0.2.1:9847",
            "--proxy-from-env",
            "--config",
            config,
        ],
        &env,
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--proxy-from-env needs an https daemon"),
        "{err}"
    );
    assert_eq!(proxied.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn a_hold_longer_than_a_year_is_refused_with_the_limit() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    db.running(1, 120.0, 0.1).await;
    let config = TestConfig::new(&db.url)
        .top("interval = \"300ms\"")
        .heartbeat_rule("hb", "30m", "")
        .section("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"a-token-of-24-characters\"")
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    wait_for("ready", Duration::from_secs(10), || async {
        common::get(&daemon.url("/readyz"))
            .await
            .filter(|r| r.0 == 200)
    })
    .await;
    let token = "a-token-of-24-characters";
    for path in ["/api/v1/pause", "/api/v1/jobs/1/snooze"] {
        for long in ["100000000000y", "366d", "2years"] {
            let (code, answer) =
                post(&daemon, path, token, &format!(r#"{{"for": "{long}"}}"#)).await;
            assert_eq!(code, 400, "{path} {long}: {answer}");
            let why = answer["error"].as_str().unwrap_or_default();
            assert!(
                why.starts_with("for: ") && why.contains("at most 1 year"),
                "{why}"
            );
        }
        let (code, answer) = post(&daemon, path, token, r#"{"for": "365d"}"#).await;
        assert_eq!(code, 200, "{path}: {answer}");
    }
    let url = daemon.url("");
    let config = config.to_str().expect("utf-8");
    for args in [
        vec!["pause", "--for", "100000000000y"],
        vec!["snooze", "1", "--for", "400d"],
    ] {
        let mut all = args.clone();
        all.extend(["--url", &url, "--config", config]);
        let (code, out, err) = cli(&db, &all);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("--for") && err.contains("at most 1 year"),
            "{err}"
        );
    }
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn dot_ids_have_working_links_and_bidi_controls_show_escaped() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table_with_id("TEXT").await;
    for id in [".", "..", "report-\u{202E}fdp.exe"] {
        db.running(id, 120.0, 90.0).await;
    }
    let token = "a-token-of-24-characters";
    let config = TestConfig::new(&db.url)
        .top("interval = \"300ms\"")
        .heartbeat_rule("hb", "30m", "action = \"alert\"")
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nbase_path = \"/jw\"\ntoken = \"{token}\""
        ))
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    let page = |path: &str| {
        let url = daemon.url(path);
        async move { common::get(&url).await.filter(|r| r.0 == 200).map(|r| r.1) }
    };
    let status = wait_for("three findings", Duration::from_secs(15), || async {
        page("/jw/")
            .await
            .filter(|p| p.matches("no heartbeat").count() >= 3)
    })
    .await;
    for href in [
        "href=\"/jw/jobs/_?id=%2E\"",
        "href=\"/jw/jobs/_?id=%2E%2E\"",
    ] {
        assert!(status.contains(href), "{href}: {status}");
    }
    // The links work from a client that normalises URLs as browsers do.
    for (link, id) in [("/jw/jobs/_?id=%2E%2E", ".."), ("/jw/jobs/_?id=%2E", ".")] {
        let job = page(link).await.expect("the job page");
        assert!(
            job.contains(&format!("<code>{id}</code>")) && job.contains("no heartbeat"),
            "{link}: {job}"
        );
    }
    let (code, answer) = post(
        &daemon,
        "/jw/api/v1/jobs/_/fail?id=%2E%2E",
        token,
        r#"{"dry_run": true}"#,
    )
    .await;
    assert_eq!(
        (code, answer["job_id"].as_str()),
        (200, Some("..")),
        "{answer}"
    );
    // The CLI names a dot job the same way, and a reason with a bidi control is kept.
    let url = daemon.url("/jw");
    let config = config.to_str().expect("utf-8");
    let (code, out, err) = cli(
        &db,
        &[
            "snooze",
            "..",
            "--for",
            "1h",
            "--reason",
            "ok\u{2067}evil",
            "--url",
            &url,
            "--config",
            config,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let status = wait_for(
        "the snooze on the page",
        Duration::from_secs(10),
        || async { page("/jw/").await.filter(|p| p.contains("ok\\u{2067}evil")) },
    )
    .await;
    // No bidi control reaches the page raw: escaped in text, a reference in attributes
    // (the script reads the id back from data-job).
    assert!(
        !status.contains(['\u{202E}', '\u{2067}']),
        "a raw bidi control: {status}"
    );
    assert!(status.contains("report-\\u{202E}fdp.exe"), "{status}");
    assert!(
        status.contains("data-job=\"report-&#x202E;fdp.exe\""),
        "{status}"
    );
    let job = page("/jw/jobs/report-%E2%80%AEfdp.exe")
        .await
        .expect("job page");
    assert!(
        !job.contains('\u{202E}') && job.contains("report-\\u{202E}fdp.exe"),
        "{job}"
    );
    assert_eq!(daemon.stop().await, 0);
}

/// MariaDB's default collation matches `mixed-case` to the row `MIXED-CASE`: the snooze is
/// kept under the row's own spelling, so the scans (which know the job by it) hold it, and
/// ending it in the request's spelling ends it.
#[tokio::test]
async fn a_snooze_holds_the_row_a_case_insensitive_collation_matched() {
    let db = TestDb::new(Backend::MySql).await;
    db.small_jobs_table_with_id("VARCHAR(64)").await;
    db.running("MIXED-CASE", 120.0, 0.1).await;
    let token = "a-token-of-24-characters";
    let config = TestConfig::new(&db.url)
        .top("interval = \"200ms\"")
        .jobs("status_since = \"created_at\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section("[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1\nmin_active = 100")
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\""
        ))
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    wait_for("ready", Duration::from_secs(15), || async {
        common::get(&daemon.url("/readyz"))
            .await
            .filter(|r| r.0 == 200)
    })
    .await;
    let url = daemon.url("");
    let config = config.to_str().expect("utf-8");
    let (code, out, err) = cli(
        &db,
        &[
            "snooze",
            "mixed-case",
            "--for",
            "1h",
            "--json",
            "--url",
            &url,
            "--config",
            config,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(answer["job_id"], "MIXED-CASE", "{answer}");
    // The job stalls: held back by the snooze, never written.
    db.exec(&format!("UPDATE jobs SET updated_at = {}", db.ago(90.0)))
        .await;
    let metrics = wait_for("held back twice", Duration::from_secs(15), || async {
        common::get(&daemon.url("/metrics"))
            .await
            .map(|r| r.1)
            .filter(|m| {
                common::metric(
                    m,
                    "jobwarden_actions_total{action=\"fail\",outcome=\"limited\"}",
                )
                .unwrap_or(0.0)
                    >= 2.0
            })
    })
    .await;
    assert_eq!(
        common::metric(&metrics, "jobwarden_jobs_snoozed"),
        Some(1.0)
    );
    let status = || async {
        db.rows("SELECT status FROM jobs").await[0][0]
            .clone()
            .unwrap_or_default()
    };
    assert_eq!(status().await, "running");
    // Ended in the request's spelling, the snooze ends, and the stalled job is failed.
    let (code, out, err) = cli(
        &db,
        &[
            "snooze",
            "mixed-case",
            "--for",
            "0s",
            "--url",
            &url,
            "--config",
            config,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    wait_for("the job failed", Duration::from_secs(15), || async {
        (status().await == "failed").then_some(())
    })
    .await;
    assert_eq!(daemon.stop().await, 0);
}

/// The seeds' story at console scale: 1,200 running jobs died together and 30 wait in the
/// queue. The status page stays one light page: the incident on top saying once what holds
/// its writes, then 100 rows at a time, critical and oldest first, which the filters, the
/// search and the pages choose; and `/healthz` answers while 20 readers load the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stuck_jobs_are_one_incident_and_pages_of_a_hundred() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.restart_aftermath(1_200, 30).await;
    let token = "SCALE-TOKEN-0123456";
    let config = TestConfig::aftermath(&db.url)
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\""
        ))
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    let report = wait_for("the incident", Duration::from_secs(30), || async {
        let (status, body) = common::get(&daemon.url("/api/v1/findings")).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && v["incidents"][0]["held_back"].is_string()).then_some(v)
    })
    .await;
    let findings = report["findings"].as_array().map_or(0, Vec::len);
    assert!(findings > 1_200, "{findings} findings");
    let incident = report["incidents"][0].clone();
    let (id, held) = (
        incident["id"].as_str().unwrap_or_default(),
        incident["held_back"].as_str().unwrap_or_default(),
    );
    assert!(held.contains("look stuck at once"), "{incident}");
    let page = |query: &str| {
        let url = daemon.url(&format!("/{query}"));
        async move {
            let (status, body) = common::get(&url).await.expect("GET /");
            assert_eq!(status, 200, "{url}: {body}");
            body
        }
    };
    // Rows of a page by their job, in order.
    let jobs = |body: &str| -> Vec<String> {
        body.split("data-job=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(str::to_string)
            .collect()
    };

    let first = page("").await;
    assert!(first.len() < 250_000, "/ is {} bytes", first.len());
    let (card, table) = (
        first.find(&format!("Incident <code>{id}</code>")),
        first.find("<table>"),
    );
    assert!(
        card.is_some() && card < table,
        "the incident on top: {first}"
    );
    assert_eq!(first.matches(held).count(), 1, "held back said once");
    assert!(first.contains(&format!("data-incident=\"{id}\"")) && first.contains(">Fail all<"));
    assert!(
        first.contains("stalled 1200") && first.contains("overdue 30"),
        "counts per kind"
    );
    assert!(
        first.contains("hb 1200") && first.contains("queue 30"),
        "counts per rule"
    );
    // Critical first, then the oldest: job-1200 stopped beating first.
    let rows = jobs(&first);
    assert_eq!(rows.len(), 99, "100 rows, the mass stall's without a job");
    assert_eq!(rows[..3], ["job-1200", "job-1199", "job-1198"]);

    let second = jobs(&page("?page=2").await);
    assert_eq!(second.len(), 100);
    assert!(
        second
            .iter()
            .all(|j| j.starts_with("job-1") && !rows.contains(j)),
        "the page goes on where the first ended: {second:?}"
    );
    let last = page("?page=13").await;
    assert!(last.contains("page 13 of 13"), "1,231 rows");
    let last = jobs(&last);
    assert_eq!(last.len(), 31, "{last:?}");
    assert_eq!(last[0], "job-1", "the youngest critical row");
    assert!(
        last[1..].iter().all(|j| j.starts_with("queued-")),
        "warnings last"
    );

    let queued = jobs(&page("?rule=queue").await);
    assert_eq!(queued.len(), 30);
    let filtered = page("?kind=stalled&phase=designing&status=running").await;
    assert!(filtered.contains("600 match"), "{filtered}");
    assert!(
        filtered
            .contains("href=\"/?kind=stalled&amp;status=running&amp;phase=designing&amp;page=2\""),
        "the next page keeps the filters: {filtered}"
    );
    let found = jobs(&page("?q=job-111").await);
    assert_eq!(
        found.len(),
        11,
        "job-111 and job-1110 to job-1119: {found:?}"
    );
    let in_incident = page(&format!("?incident={id}")).await;
    assert!(
        in_incident.contains("1231 findings among 1250 active jobs; 1231 match"),
        "the queued ones are stuck too: {in_incident}"
    );

    // Twenty readers of the page at once: /healthz still answers at once.
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let url = daemon.url("/?page=3");
            tokio::spawn(async move { common::get(&url).await.map(|r| r.0) })
        })
        .collect();
    let health = tokio::time::timeout(Duration::from_secs(5), common::get(&daemon.url("/healthz")))
        .await
        .expect("/healthz answers while 20 readers load the page");
    assert_eq!(health.map(|r| r.0), Some(200));
    for r in readers {
        assert_eq!(r.await.expect("reader"), Some(200));
    }
    assert_eq!(daemon.stop().await, 0);
}

/// `[http] user_header` names the person in the audit and the holds, believed only from the
/// trusted proxies; the CLI's own header names its user otherwise; `GET /api/v1/whoami`
/// says whom the daemon takes the caller for, and refuses a wrong token.
#[tokio::test]
async fn the_person_behind_a_trusted_proxy_is_named() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    db.running(1, 120.0, 0.1).await;
    let token = "WHO-T0KEN-0123456789";
    let daemon_trusting = |proxies: &str| {
        let config = TestConfig::new(&db.url)
            .top("interval = \"200ms\"")
            .jobs("status_since = \"created_at\"")
            .heartbeat_rule("hb", "30m", "action = \"alert\"")
            .section(&format!(
                "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\nuser_header = \"X-Forwarded-User\"\ntrusted_proxies = [{proxies}]"
            ))
            .state(&db.dir().join("state"))
            .write(db.dir().join("jw.toml"));
        Daemon::start(&config, &[])
    };
    let whoami = |daemon: &Daemon, headers: &[(&str, &str)], bearer: &str| {
        let mut r = reqwest::Client::new()
            .get(daemon.url("/api/v1/whoami"))
            .bearer_auth(bearer);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        async move {
            let r = r.send().await.expect("get");
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };

    let daemon = daemon_trusting("\"127.0.0.1\"");
    wait_for("the listener", Duration::from_secs(10), || async {
        common::get(&daemon.url("/healthz")).await
    })
    .await;
    let (status, _) = whoami(&daemon, &[], "WRONG-T0KEN-0123456789").await;
    assert_eq!(status, 401, "a wrong token is refused");
    let (status, who) = whoami(&daemon, &[("X-Forwarded-User", "alice")], token).await;
    assert_eq!(status, 200);
    let by = who["by"].as_str().unwrap_or_default();
    assert!(by.starts_with("alice (http 127.0.0.1:"), "{who}");
    // A snooze by alice keeps her name in the holds.
    let r = reqwest::Client::new()
        .post(daemon.url("/api/v1/jobs/1/snooze"))
        .bearer_auth(token)
        .header("X-Forwarded-User", "alice")
        .header("content-type", "application/json")
        .body(r#"{"for": "1h", "reason": "looking into it"}"#)
        .send()
        .await
        .expect("snooze");
    assert_eq!(r.status().as_u16(), 200);
    let holds = std::fs::read_to_string(db.dir().join("state").join("holds.json")).expect("holds");
    assert!(holds.contains("alice (http 127.0.0.1:"), "{holds}");
    // The snooze is in the job's timeline and on /audit, with its reason and who asked.
    let (_, page) = common::get(&daemon.url("/jobs/1")).await.expect("job page");
    assert!(
        page.contains("snoozed</span> until ")
            && page.contains(": looking into it, asked by alice (http 127.0.0.1:"),
        "{page}"
    );
    let (_, audit) = common::get(&daemon.url("/audit")).await.expect("audit");
    assert!(
        audit.contains("Pauses and snoozes") && audit.contains("looking into it"),
        "{audit}"
    );
    // Without the proxy's header, the CLI's names its user.
    let (_, who) = whoami(&daemon, &[("X-Jobwarden-By", "cli:bob@ops-1")], token).await;
    assert!(
        who["by"]
            .as_str()
            .is_some_and(|b| b.starts_with("cli:bob@ops-1 (http 127.0.0.1:")),
        "{who}"
    );
    assert_eq!(daemon.stop().await, 0);

    // From a client the config does not trust, the header is anyone's word: not believed.
    let daemon = daemon_trusting("\"10.0.0.0/8\"");
    wait_for("the listener", Duration::from_secs(10), || async {
        common::get(&daemon.url("/healthz")).await
    })
    .await;
    let (_, who) = whoami(&daemon, &[("X-Forwarded-User", "mallory")], token).await;
    let by = who["by"].as_str().unwrap_or_default();
    assert!(
        by.starts_with("http 127.0.0.1:") && !by.contains("mallory"),
        "{who}"
    );
    assert_eq!(daemon.stop().await, 0);
}
