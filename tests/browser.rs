//! The console in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `scripts/test`) loads the status page and a job page from a daemon on a real SQLite
//! table. The DOM after the page's own script ran shows the stuck jobs and the refresh
//! running; Chromium's log shows no console error (a Content-Security-Policy violation would
//! be one); and a screenshot of each page is saved under `target/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{wait_for, Backend, Daemon, TestConfig, TestDb};

/// Where the screenshots go: `target/` (or `$CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::root().join("target"))
}

/// Runs headless Chromium on `url` with `what` (`--dump-dom`, `--screenshot=...`), as the
/// closed network here wants it, and returns its stdout and log.
fn chromium(profile: &Path, url: &str, what: &[&str]) -> (String, String) {
    let out = Command::new(common::tool("chromium"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(what)
        .arg(url)
        .output()
        .expect("run chromium");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lines of Chromium's log that report a page's console message or a refused load.
fn console_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("CONSOLE")
                || l.contains("Content Security Policy")
                || l.contains("Uncaught")
                || l.contains("Failed to load resource")
        })
        .collect()
}

#[tokio::test]
async fn the_console_in_headless_chromium() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table_with_id("TEXT").await;
    for (id, beat) in [("report-7", 95.0), ("report-8", 62.0), ("live-9", 0.1)] {
        db.running(id, 130.0, beat).await;
    }
    let config = TestConfig::new(&db.url)
        .top("interval = \"300ms\"\ndry_run = true\nenvironment = \"staging\"")
        .jobs("status_since = \"created_at\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"\nseverity = \"critical\"")
        .state(&db.dir().join("state"))
        .http(0)
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    wait_for("the first scan", Duration::from_secs(15), || async {
        common::get(&daemon.url("/readyz"))
            .await
            .filter(|r| r.0 == 200)
    })
    .await;
    let profile = tempfile::tempdir().expect("profile dir");
    let target = target_dir();
    std::fs::create_dir_all(&target).expect("target dir");

    // The status page, as the browser built it.
    let (dom, log) = chromium(profile.path(), &daemon.url("/"), &["--dump-dom"]);
    assert!(
        dom.contains("report-7") && dom.contains("report-8"),
        "{dom}\n{log}"
    );
    assert!(!dom.contains(">live-9<"), "the live job is not listed");
    assert!(
        dom.contains("data-refresh=\"on\""),
        "the page's script ran: {dom}"
    );
    assert!(dom.contains("staging"), "the environment badge");
    assert_eq!(console_errors(&log), Vec::<&str>::new(), "{log}");

    // The job page: its finding and the write it would make, in the timeline.
    let (dom, log) = chromium(
        profile.path(),
        &daemon.url("/jobs/report-7"),
        &["--dump-dom"],
    );
    assert!(dom.contains("no heartbeat for"), "{dom}");
    assert!(dom.contains("running → failed"), "the timeline: {dom}");
    assert_eq!(console_errors(&log), Vec::<&str>::new(), "{log}");

    // Screenshots of both, for people (and the README).
    for (path, file) in [
        ("/", "console-status.png"),
        ("/jobs/report-7", "console-job.png"),
    ] {
        let png = target.join(file);
        let _ = std::fs::remove_file(&png);
        let (_, log) = chromium(
            profile.path(),
            &daemon.url(path),
            &[&format!("--screenshot={}", png.display())],
        );
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}\n{log}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{}",
            png.display()
        );
    }
    assert_eq!(daemon.stop().await, 0);
}
