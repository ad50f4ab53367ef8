//! Alerts end to end: `jobwarden run` against real SQLite and PostgreSQL tables, sending to
//! receivers on 127.0.0.1 written here (scripted answers) and to a real Alertmanager. Exactly
//! one firing and one resolved per finding, or per incident when many jobs died together;
//! retries on 500; a receiver down for a while gets everything; a restart between firing and
//! resolved neither re-fires nor forgets.

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

/// `n` running jobs (ids 1..=n) whose heartbeats stopped together 47 minutes ago, and a
/// healthy one (1000). One statement, whatever `n`.
async fn died_together(db: &TestDb, n: usize) {
    db.small_jobs_table().await;
    db.exec(&format!(
        "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {n}) \
         INSERT INTO jobs SELECT i, 'running', {}, {} FROM g",
        db.ago(97.0),
        db.ago(47.0)
    ))
    .await;
    db.running(1000, 5.0, 0.1).await;
}

/// A daemon config for incidents: rule `hb` with `rule_extra`, links under an external URL.
fn incident_config(db: &TestDb, state: &Path, rule_extra: &str, sinks: &str) -> std::path::PathBuf {
    TestConfig::new(&db.url)
        .top("interval = \"200ms\"\nenvironment = \"staging\"")
        .heartbeat_rule(
            "hb",
            "30m",
            &format!("severity = \"critical\"\n{rule_extra}"),
        )
        .section("[http]\nlisten = \"127.0.0.1:0\"\nexternal_url = \"https://jobs.internal/jw/\"")
        .state(state)
        .section(sinks)
        .write(db.dir().join("jw.toml"))
}

/// The webhook bodies about incidents.
fn incident_messages(hook: &Receiver) -> Vec<serde_json::Value> {
    hook.got()
        .into_iter()
        .filter(|r| r.status < 300 && r.body.get("incident").is_some())
        .map(|r| r.body)
        .collect()
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
    // 25 jobs that stopped minutes apart: no incident, 25 findings of their own.
    db.small_jobs_table().await;
    for id in 1..=25u32 {
        db.running(id, 200.0, 45.0 + 3.0 * f64::from(id)).await;
    }
    db.running(1000, 5.0, 0.1).await;
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
    assert_eq!(got.len(), 1, "one digest, not 25 messages: {got:?}");
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
    assert!(
        alerts[0]["generatorURL"]
            .as_str()
            .unwrap_or("")
            .ends_with("/jobs/1"),
        "the job's page: {}",
        alerts[0]["generatorURL"]
    );
    assert!(
        labels.get("incident").is_none(),
        "a job alone is in no incident"
    );

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

/// The seeds' story at 300 jobs on PostgreSQL: their heartbeats stopped together. The webhook
/// and Slack each get one message when the incident opens (the mass-stall guard that engages
/// after the startup grace joins it rather than alerting apart), none while it stays, and one
/// when it ends saying how; Alertmanager keeps one alert per finding, labelled with it.
#[tokio::test]
async fn three_hundred_jobs_dying_together_are_one_message_per_sink() {
    let db = TestDb::new(Backend::Postgres).await;
    died_together(&db, 300).await;
    let hook = Receiver::start(0, &[]).await;
    let slack = Receiver::start(0, &[]).await;
    let am = Receiver::start(0, &[]).await;
    let state = db.dir().join("state");
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n\
         [[alerts]]\nkind = \"slack\"\nurl = \"{}\"\n\
         [[alerts]]\nkind = \"alertmanager\"\nurl = \"{}\"\n",
        hook.url("/hook"),
        slack.url("/slack"),
        am.url("")
    );
    let daemon = Daemon::start(
        &incident_config(&db, &state, "action = \"fail\"", &sinks),
        &[],
    );
    let opened = wait_for("the incident's opening", SCANS, || async {
        incident_messages(&hook).into_iter().next()
    })
    .await;
    // The guard engages (writes held) and joins the incident.
    let findings = wait_for("the mass stall", SCANS, || async {
        let (_, body) = get(&daemon.url("/api/v1/findings")).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let held = v["findings"]
            .as_array()?
            .iter()
            .any(|f| f["kind"] == "mass_stall");
        held.then_some(v)
    })
    .await;
    scans(&daemon, 5.0).await;
    let id = opened["incident"]["id"]
        .as_str()
        .expect("an id")
        .to_string();
    assert!(
        findings["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["incident"] == id.as_str()),
        "every finding, the mass stall's too, is in the incident"
    );
    assert_eq!(
        hook.got().len(),
        1,
        "one message, not 300: {:?}",
        hook.got()
    );
    assert_eq!(opened["state"], "firing");
    assert_eq!(opened["environment"], "staging");
    let incident = &opened["incident"];
    assert_eq!(incident["jobs"], 300);
    assert_eq!(incident["cause"], "the jobs of rule hb stopped together");
    assert!(incident["opened_at"].is_string());
    let sample: Vec<&str> = incident["sample"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(sample.len(), 10, "{incident}");
    assert!(sample
        .iter()
        .all(|s| s.parse::<u32>().is_ok_and(|n| (1..=300).contains(&n))));
    assert_eq!(
        incident["url"],
        format!("https://jobs.internal/jw/?incident={id}").as_str()
    );
    let texts: Vec<String> = slack
        .got()
        .iter()
        .map(|r| r.body["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].chars().count() < 4_000);
    assert!(
        texts[0].contains(&format!("[staging] incident `{id}`"))
            && texts[0].contains("300 jobs")
            && texts[0].contains("and 290 more"),
        "{}",
        texts[0]
    );
    // Alertmanager: one alert per finding, each labelled with the incident, linking its job.
    let latest = am
        .got()
        .last()
        .map(|r| r.body.clone())
        .expect("alertmanager told");
    let alerts = latest.as_array().expect("an array");
    let jobs: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| a["labels"]["kind"] == "stalled")
        .collect();
    assert_eq!(jobs.len(), 300);
    assert!(alerts
        .iter()
        .all(|a| a["labels"]["incident"] == id.as_str()));
    assert!(jobs.iter().all(|a| a["generatorURL"]
        == format!(
            "https://jobs.internal/jw/jobs/{}",
            a["labels"]["job_id"].as_str().unwrap_or("?")
        )
        .as_str()));

    // A person fails them by hand: one closing message each, saying how it ended.
    db.exec("UPDATE jobs SET status = 'failed' WHERE id <= 300")
        .await;
    let ended = wait_for("the incident's end", SCANS, || async {
        hook.accepted("resolved").into_iter().next()
    })
    .await;
    scans(&daemon, 5.0).await;
    assert_eq!(hook.got().len(), 2, "{:?}", hook.got());
    let ending = "300 finished by a person or the application";
    assert_eq!(ended.body["incident"]["id"], id.as_str());
    assert_eq!(ended.body["incident"]["ending"], ending);
    assert_eq!(ended.body["reason"], ending);
    assert!(ended.body["incident"]["ended_at"].is_string());
    assert_eq!(ended.body["incident"]["jobs"], 300);
    let texts: Vec<String> = slack
        .got()
        .iter()
        .map(|r| r.body["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[1].starts_with(":white_check_mark: ended: [staging] incident")
            && texts[1].contains(ending),
        "{}",
        texts[1]
    );
    assert_eq!(daemon.stop().await, 0);
}

/// An incident that opened while the webhook was down, and ended while jobwarden was stopped:
/// the book kept it, so the restarted daemon tells its opening and then its end (although
/// no scan sees it open again).
#[tokio::test]
async fn an_incident_not_yet_told_is_told_after_a_restart() {
    let db = TestDb::new(Backend::Sqlite).await;
    died_together(&db, 6).await;
    let port = free_port();
    let state = db.dir().join("state");
    let sinks = format!("[[alerts]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n");
    let cfg = incident_config(&db, &state, "", &sinks);
    let first = Daemon::start(&cfg, &[]);
    wait_for("the incident in the saved book", SCANS, || async {
        let text = std::fs::read_to_string(state.join("alerts.json")).ok()?;
        let book: serde_json::Value = serde_json::from_str(&text).ok()?;
        book["incidents"]
            .as_object()
            .filter(|i| i.len() == 1)
            .map(|_| ())
    })
    .await;
    wait_for("a failed delivery", SCANS, || async {
        get(&first.url("/metrics"))
            .await
            .and_then(|(_, m)| metric(&m, "jobwarden_alert_failures_total{sink=\"webhook\"}"))
            .filter(|f| *f >= 1.0)
    })
    .await;
    assert_eq!(first.stop().await, 0);

    db.exec("UPDATE jobs SET status = 'failed' WHERE id <= 6")
        .await;
    let hook = Receiver::start(port, &[]).await;
    let second = Daemon::start(&cfg, &[]);
    wait_for("opening and end", SCANS, || async {
        (incident_messages(&hook).len() == 2).then_some(())
    })
    .await;
    scans(&second, 3.0).await;
    let told = incident_messages(&hook);
    assert_eq!(hook.got().len(), 2, "{:?}", hook.got());
    assert_eq!(
        told.iter()
            .map(|b| b["state"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["firing", "resolved"]
    );
    assert_eq!(told[0]["incident"]["jobs"], 6);
    assert_eq!(
        told[1]["incident"]["ending"],
        "6 finished by a person or the application"
    );
    assert_eq!(second.stop().await, 0);
}
