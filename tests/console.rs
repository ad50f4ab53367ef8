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
        .section("[http]\nlisten = \"127.0.0.1:0\"\nbase_path = \"/jobwarden\"\njob_url = \"https://app.example/jobs/{job_id}\"\ntoken = \"CONSOLETOKEN\"")
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
    let (status, _, unknown) = get("/jobwarden/jobs/nobody").await;
    assert_eq!(
        status, 200,
        "a job jobwarden knows nothing of still has a page"
    );
    assert!(unknown.contains("jobwarden has written nothing about this job"));

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
    assert!(!config.contains("CONSOLETOKEN"), "{config}");
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
        .section("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"T0KEN\"")
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
    let r = pause(&daemon, r#"{"for": "soon"}"#, "T0KEN")
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let r = pause(&daemon, r#"{"for": "1h"}"#, "T0KEN")
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    let answer: serde_json::Value = r.json().await.expect("json");
    assert!(answer["paused_until"].is_string(), "{answer}");

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
    assert!(
        daemon.log().contains("writes are paused until"),
        "the held write says why"
    );

    // A restart keeps the pause.
    assert_eq!(daemon.stop().await, 0);
    let daemon = Daemon::start(&config, &[]);
    let metrics = wait_for(
        "scans after the restart",
        Duration::from_secs(10),
        || async {
            common::get(&daemon.url("/metrics"))
                .await
                .map(|r| r.1)
                .filter(|m| common::metric(m, "jobwarden_scans_total").unwrap_or(0.0) >= 3.0)
        },
    )
    .await;
    assert_eq!(
        common::metric(&metrics, "jobwarden_writes_paused"),
        Some(1.0)
    );
    assert_eq!(status().await, "running", "still paused after the restart");

    // Ending the pause lets the write through.
    let r = pause(&daemon, r#"{"for": "0s"}"#, "T0KEN")
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    wait_for("the job failed", Duration::from_secs(10), || async {
        (status().await == "failed").then_some(())
    })
    .await;
    assert_eq!(daemon.stop().await, 0);
}
