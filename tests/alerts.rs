//! Alerts end to end: `jobwarden run` against real SQLite tables, sending to receivers on
//! 127.0.0.1 written here (scripted answers) and to a real Alertmanager. Exactly one firing
//! and one resolved per finding; retries on 500; a receiver down for a while gets everything;
//! a restart between firing and resolved neither re-fires nor forgets.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{free_port, get, metric, wait_for, Backend, Daemon, Receiver, TestConfig, TestDb};

const SCANS: Duration = Duration::from_secs(20);

fn config(db: &TestDb, port: u16, state: &Path, sinks: &str) -> std::path::PathBuf {
    TestConfig::new(&db.url)
        .top("interval = \"200ms\"\nenvironment = \"staging\"")
        .heartbeat_rule("hb", "30m", r#"severity = "critical""#)
        .http(port)
        .state(state)
        .section(sinks)
        .write(db.dir().join("jw.toml"))
}

async fn table(db: &TestDb, stalled: usize) {
    db.small_jobs_table().await;
    for id in 1..=stalled {
        db.running(id as u32, 90.0, 45.0).await;
    }
    // A healthy one that never alerts.
    db.running(1000, 5.0, 0.1).await;
}

async fn heal(db: &TestDb) {
    db.exec(&format!("UPDATE jobs SET updated_at = {}", db.ago(0.0)))
        .await;
}

/// Waits until the daemon has completed `n` more scans.
async fn scans(daemon: &Daemon, n: f64) {
    let count = || async {
        get(&daemon.url("/metrics"))
            .await
            .and_then(|(_, m)| metric(&m, "jobwarden_scans_total"))
    };
    let start = wait_for("a scan", SCANS, count).await;
    wait_for("more scans", SCANS, || async {
        count().await.filter(|c| *c >= start + n)
    })
    .await;
}

#[tokio::test]
async fn one_firing_and_one_resolved_per_finding() {
    let db = TestDb::new(Backend::Sqlite).await;
    table(&db, 2).await;
    let hook = Receiver::start(0, &[]).await;
    let slack = Receiver::start(0, &[]).await;
    let state = db.dir().join("state");
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\nhmac_secret = \"shh\"\nheaders = {{ Authorization = \"Bearer hook-token\" }}\n\
         [[alerts]]\nkind = \"slack\"\nurl = \"{}\"\n",
        hook.url("/hook"),
        slack.url("/slack")
    );
    let daemon = Daemon::start(&config(&db, 0, &state, &sinks), &[]);
    wait_for("two firing alerts", SCANS, || async {
        (hook.accepted("firing").len() == 2).then_some(())
    })
    .await;
    scans(&daemon, 5.0).await;
    assert_eq!(
        hook.got().len(),
        2,
        "no storm while the findings stay: {:?}",
        hook.got()
    );
    let firing = &hook.got()[0];
    assert_eq!(firing.body["version"], 1);
    assert_eq!(firing.body["environment"], "staging");
    assert_eq!(firing.body["finding"]["kind"], "stalled");
    assert_eq!(firing.body["finding"]["rule"], "hb");
    let header = |name: &str| {
        firing
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("authorization").as_deref(),
        Some("Bearer hook-token")
    );
    // The receiver can check the signature over the body it got (serde_json writes keys in
    // order, so the re-serialized body is byte for byte what was sent).
    let body = serde_json::to_vec(&firing.body).unwrap();
    let signature = header("x-jobwarden-signature").expect("signed");
    assert_eq!(
        signature,
        jobwarden::adapters::alerts::payload::signature("shh", &body)
    );
    let texts: Vec<String> = slack
        .got()
        .iter()
        .map(|r| r.body["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts.iter().all(|t| t.contains("[staging] stalled job `")
            && t.contains("running")
            && t.contains("Rule `hb`")
            && t.contains("outcome none")),
        "{texts:?}"
    );

    heal(&db).await;
    wait_for("two resolved alerts", SCANS, || async {
        (hook.accepted("resolved").len() == 2).then_some(())
    })
    .await;
    scans(&daemon, 5.0).await;
    assert_eq!(hook.got().len(), 4, "{:?}", hook.got());
    assert_eq!(
        hook.accepted("resolved")[0].body["reason"],
        "the job came back to life: the condition cleared"
    );
    assert_eq!(slack.got().len(), 4);
    let m = get(&daemon.url("/metrics")).await.expect("metrics").1;
    assert_eq!(
        metric(
            &m,
            "jobwarden_alerts_sent_total{sink=\"webhook\",state=\"firing\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &m,
            "jobwarden_alerts_sent_total{sink=\"webhook\",state=\"resolved\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&m, "jobwarden_alert_queue_depth{sink=\"slack\"}"),
        Some(0.0)
    );
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn a_receiver_answering_500_three_times_gets_the_alert_once() {
    let db = TestDb::new(Backend::Sqlite).await;
    table(&db, 1).await;
    let hook = Receiver::start(0, &[500, 500, 503]).await;
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/")
    );
    let daemon = Daemon::start(&config(&db, 0, &db.dir().join("state"), &sinks), &[]);
    wait_for("the alert accepted", Duration::from_secs(30), || async {
        (hook.accepted("firing").len() == 1).then_some(())
    })
    .await;
    scans(&daemon, 3.0).await;
    let got = hook.got();
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 503, 200]
    );
    let m = get(&daemon.url("/metrics")).await.expect("metrics").1;
    assert_eq!(
        metric(&m, "jobwarden_alert_failures_total{sink=\"webhook\"}"),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &m,
            "jobwarden_alerts_sent_total{sink=\"webhook\",state=\"firing\"}"
        ),
        Some(1.0)
    );
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_everything_when_it_returns() {
    let db = TestDb::new(Backend::Sqlite).await;
    table(&db, 3).await;
    let port = free_port();
    let sinks = format!("[[alerts]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n");
    let daemon = Daemon::start(&config(&db, 0, &db.dir().join("state"), &sinks), &[]);
    wait_for("failed deliveries", SCANS, || async {
        get(&daemon.url("/metrics"))
            .await
            .and_then(|(_, m)| metric(&m, "jobwarden_alert_failures_total{sink=\"webhook\"}"))
            .filter(|f| *f >= 2.0)
    })
    .await;
    // Meanwhile the jobs heal: the receiver must still hear of the firing, then the resolution.
    heal(&db).await;
    scans(&daemon, 2.0).await;
    let hook = Receiver::start(port, &[]).await;
    let delivered = tokio::time::timeout(
        Duration::from_secs(60),
        wait_for("everything delivered", Duration::from_secs(60), || async {
            (hook.accepted("firing").len() == 3 && hook.accepted("resolved").len() == 3)
                .then_some(())
        }),
    )
    .await;
    assert!(
        delivered.is_ok(),
        "got {:?}\nlog:\n{}",
        hook.got(),
        daemon.log()
    );
    let order: Vec<_> = hook
        .got()
        .iter()
        .map(|r| r.body["state"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        &order[..3],
        ["firing", "firing", "firing"],
        "firing before resolved: {order:?}"
    );
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn a_restart_between_firing_and_resolved() {
    let db = TestDb::new(Backend::Sqlite).await;
    table(&db, 1).await;
    let hook = Receiver::start(0, &[]).await;
    let state = db.dir().join("state");
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/")
    );
    let cfg = config(&db, 0, &state, &sinks);
    let first = Daemon::start(&cfg, &[]);
    wait_for("firing", SCANS, || async {
        (hook.accepted("firing").len() == 1).then_some(())
    })
    .await;
    assert_eq!(first.stop().await, 0);
    assert!(state.join("alerts.json").exists());

    // Restarted with the finding still there: no second firing.
    let second = Daemon::start(&cfg, &[]);
    scans(&second, 4.0).await;
    assert_eq!(hook.got().len(), 1, "{:?}", hook.got());
    assert_eq!(second.stop().await, 0);

    // Healed while down: the next daemon still sends the resolution.
    heal(&db).await;
    let third = Daemon::start(&cfg, &[]);
    wait_for("resolved", SCANS, || async {
        (hook.accepted("resolved").len() == 1).then_some(())
    })
    .await;
    scans(&third, 3.0).await;
    assert_eq!(hook.got().len(), 2);
    assert_eq!(hook.accepted("firing").len(), 1);
    assert_eq!(third.stop().await, 0);
}

#[tokio::test]
async fn a_corrupt_state_file_is_reported_and_replaced() {
    let db = TestDb::new(Backend::Sqlite).await;
    table(&db, 1).await;
    let hook = Receiver::start(0, &[]).await;
    let state = db.dir().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("alerts.json"), "{{{ not json").unwrap();
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/")
    );
    let daemon = Daemon::start(&config(&db, 0, &state, &sinks), &[]);
    wait_for("firing", SCANS, || async {
        (hook.accepted("firing").len() == 1).then_some(())
    })
    .await;
    assert!(
        daemon.log().contains("the alert state file is corrupt"),
        "{}",
        daemon.log()
    );
    assert_eq!(
        std::fs::read_to_string(state.join("alerts.json.corrupt")).unwrap(),
        "{{{ not json"
    );
    // The receiver may hear of the firing before the book that records it is saved.
    let saved = wait_for("the book saved", SCANS, || async {
        std::fs::read_to_string(state.join("alerts.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
    })
    .await;
    assert_eq!(saved["version"], 1);
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn many_new_findings_go_out_as_one_digest_and_resolve_as_one() {
    let db = TestDb::new(Backend::Sqlite).await;
    table(&db, 25).await;
    let hook = Receiver::start(0, &[]).await;
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/")
    );
    let daemon = Daemon::start(&config(&db, 0, &db.dir().join("state"), &sinks), &[]);
    wait_for("the digest", SCANS, || async {
        (!hook.got().is_empty()).then_some(())
    })
    .await;
    scans(&daemon, 3.0).await;
    let got = hook.got();
    assert_eq!(got.len(), 1, "one digest, not 25 messages");
    assert_eq!(got[0].body["digest"], true);
    assert_eq!(got[0].body["findings"].as_array().map(Vec::len), Some(25));
    heal(&db).await;
    // Resolutions are batched like firings: one digest that names all 25.
    let resolved = wait_for("the resolution digest", SCANS, || async {
        hook.accepted("resolved").into_iter().next()
    })
    .await;
    assert_eq!(resolved.body["digest"], true, "{}", resolved.body);
    assert_eq!(resolved.body["findings"].as_array().map(Vec::len), Some(25));
    assert_eq!(resolved.body["reasons"].as_array().map(Vec::len), Some(25));
    assert_eq!(hook.accepted("resolved").len(), 1);
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn alert_test_reports_each_answer() {
    let db = TestDb::new(Backend::Sqlite).await;
    let ok = Receiver::start(0, &[]).await;
    let refusing = Receiver::start(0, &[400, 400]).await;
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n[[alerts]]\nname = \"picky\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        ok.url("/"),
        refusing.url("/")
    );
    let cfg = config(&db, 0, &db.dir().join("state"), &sinks);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_jobwarden"))
            .args(["alert", "test", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("webhook (webhook, ") && text.contains("firing: accepted"),
        "{text}"
    );
    assert!(
        text.contains("picky (webhook, ") && text.contains("refused: 400 answer body"),
        "{text}"
    );
    assert_eq!(ok.accepted("firing").len(), 1);
    assert_eq!(ok.accepted("resolved").len(), 1);
}

#[tokio::test]
async fn a_real_alertmanager_holds_the_alert_while_it_fires() {
    let db = TestDb::new(Backend::Sqlite).await;
    table(&db, 1).await;
    let am_port = free_port();
    let am_config = db.dir().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n",
    )
    .unwrap();
    let mut alertmanager = std::process::Command::new(common::tool("prometheus-alertmanager"))
        .args([
            format!("--config.file={}", am_config.display()),
            format!("--storage.path={}", db.dir().join("am").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start alertmanager");
    let am = format!("http://127.0.0.1:{am_port}");
    wait_for("alertmanager up", Duration::from_secs(30), || async {
        get(&format!("{am}/-/ready")).await.filter(|r| r.0 == 200)
    })
    .await;
    let sinks = format!("[[alerts]]\nkind = \"alertmanager\"\nurl = \"{am}\"\n");
    let daemon = Daemon::start(&config(&db, 0, &db.dir().join("state"), &sinks), &[]);
    let alerts = wait_for("the alert in alertmanager", SCANS, || async {
        let (_, body) = get(&format!("{am}/api/v2/alerts")).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v.as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["alertname"], "JobwardenStalled");
    assert_eq!(labels["kind"], "stalled");
    assert_eq!(labels["job_id"], "1");
    assert_eq!(labels["environment"], "staging");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(alerts[0]["status"]["state"], "active");
    assert!(alerts[0]["generatorURL"]
        .as_str()
        .unwrap_or("")
        .ends_with("/api/v1/findings"));

    heal(&db).await;
    wait_for("the alert resolved in alertmanager", SCANS, || async {
        let (_, body) = get(&format!("{am}/api/v2/alerts")).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v.as_array().filter(|a| a.is_empty()).map(|_| ())
    })
    .await;
    assert_eq!(daemon.stop().await, 0);
    let _ = alertmanager.kill();
    let _ = alertmanager.wait();
}
