//! No secret anywhere a probe can look: a Slack URL (whose path is the secret), a webhook URL
//! with a key in its query, a header value, an HMAC secret, the database password and the HTTP
//! token, searched for in everything `alert test`, `validate`, a config error and a debug-level
//! daemon print, in every endpoint's answer, and in every state file.

mod common;

use std::time::Duration;

use common::{free_port, get, jobwarden, wait_for, Backend, Daemon, Receiver, TestConfig, TestDb};

const SECRETS: [&str; 6] = [
    "SLACKPATHSECRET",
    "WEBHOOKKEYSECRET",
    "HEADERSECRET",
    "HMACSECRETVALUE",
    "PGPASSWORDSECRET",
    "HTTPTOKENSECRET1",
];

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked in {what}: {text}");
    }
}

// Two workers: the receiver below keeps answering while this test blocks on the commands
// it runs (on one worker, `alert test` waited out its 10 s timeout against it, twice a run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_printed_logged_served_or_saved() {
    let db = TestDb::new(Backend::Postgres).await;
    db.exec("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status text, created_at timestamptz, updated_at timestamptz)")
        .await;
    db.exec("INSERT INTO jobs VALUES (1, 'running', now() - interval '1 hour', now() - interval '45 minutes')")
        .await;
    // Trust authentication ignores the password; jobwarden must still never show it.
    let url = db
        .url
        .replacen("postgres@", "postgres:PGPASSWORDSECRET@", 1);
    let hook = Receiver::start(0, &[500; 1000]).await;
    let down = free_port();
    let port = 0;
    let state = db.dir().join("state");
    let config = TestConfig::new(&url)
        .top("interval = \"300ms\"\ndry_run = true")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section(&format!(
            "[[alerts]]\nkind = \"slack\"\nurl = \"http://127.0.0.1:{down}/services/T0/B0/SLACKPATHSECRET\"\n\n\
             [[alerts]]\nkind = \"webhook\"\nurl = \"{}?key=WEBHOOKKEYSECRET\"\nhmac_secret = \"HMACSECRETVALUE\"\n\
             headers = {{ \"X-Api-Key\" = \"HEADERSECRET\" }}",
            hook.url("/hook")
        ))
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"HTTPTOKENSECRET1\""
        ))
        .state(&state)
        .write(db.dir().join("jw.toml"));
    let cfg = config.to_str().unwrap().to_string();

    for args in [
        vec!["alert", "test", "--config", &cfg],
        vec!["validate", "--config", &cfg],
        vec!["validate", "--connect", "--config", &cfg],
        vec!["check", "--config", &cfg],
        vec!["recover", "--dry-run", "--config", &cfg],
    ] {
        let out = jobwarden(&url, &args);
        assert_clean(
            &format!("{args:?}"),
            &format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    // The Slack sink is shown as its host and first path segment.
    let out = jobwarden(&url, &["alert", "test", "--config", &cfg]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("http://127.0.0.1:{down}/services/***")),
        "{text}"
    );

    // A config error that shows a value.
    let broken = db.dir().join("broken.toml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace(&url, &format!("{url}${{UNCLOSED")),
    )
    .unwrap();
    let out = jobwarden(&url, &["validate", "--config", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_clean("a config error", &String::from_utf8_lossy(&out.stderr));

    // The daemon at debug level, with one receiver down and one answering 500.
    let daemon = Daemon::start(&config, &[("JOBWARDEN_LOG", "debug")]);
    wait_for("failed deliveries", Duration::from_secs(30), || async {
        let log = daemon.log();
        (log.contains("alert delivery failed") && hook.got().len() >= 2).then_some(())
    })
    .await;
    for path in [
        "/metrics",
        "/readyz",
        "/healthz",
        "/api/v1/findings",
        "/",
        "/jobs/1",
        "/audit",
        "/config",
        "/nope",
    ] {
        let (_, body) = get(&daemon.url(path)).await.expect(path);
        assert_clean(path, &body);
    }
    let log = daemon.log();
    assert_eq!(daemon.stop().await, 0);
    assert_clean("the daemon's log", &log);
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert_clean(
                &path.display().to_string(),
                &String::from_utf8_lossy(&bytes),
            );
        }
    }
}
