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
    assert!(
        !dom.contains("data-act") && !dom.contains("id=\"unlock\""),
        "without [http] token the page has no buttons and asks for no token"
    );
    assert_eq!(console_errors(&log), Vec::<&str>::new(), "{log}");
    let refused = reqwest::Client::new()
        .post(daemon.url("/api/v1/jobs/report-7/fail"))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status().as_u16(), 403, "no token, no actions");

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
    for (path, file, size) in [
        ("/", "console-status.png", "1280,900"),
        ("/jobs/report-7", "console-job.png", "1280,900"),
        // A phone's width: the tables scroll sideways inside the page, the page does not.
        ("/", "console-phone.png", "390,844"),
    ] {
        let png = target.join(file);
        let _ = std::fs::remove_file(&png);
        let (_, log) = chromium(
            profile.path(),
            &daemon.url(path),
            &[
                &format!("--window-size={size}"),
                &format!("--screenshot={}", png.display()),
            ],
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

/// A chromedriver on a free local port, stopped when dropped.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Driver {
    /// Starts one on a port of the system's choosing (read from its start line).
    async fn start() -> Driver {
        use std::io::BufRead;
        let mut child = Command::new(common::tool("chromedriver"))
            .arg("--port=0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run chromedriver");
        let stdout = child.stdout.take().expect("chromedriver's stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let port = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                l.split("started successfully on port ")
                    .nth(1)
                    .and_then(|p| p.trim_end_matches('.').parse::<u16>().ok())
            })
            .expect("chromedriver's start line");
        // The rest of its output is drained, so it never blocks on (or dies of) a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let driver = Driver { child, port };
        wait_for("chromedriver", Duration::from_secs(20), || async {
            common::get(&format!("http://127.0.0.1:{port}/status"))
                .await
                .filter(|r| r.0 == 200)
        })
        .await;
        driver
    }

    /// A headless Chromium session, started as the closed network here wants it.
    async fn session(&self, profile: &Path) -> fantoccini::Client {
        let options = serde_json::json!({
            "binary": common::tool("chromium"),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--window-size=1280,900", format!("--user-data-dir={}", profile.display()),
            ],
        });
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clicks the element `css` finds.
async fn click(browser: &fantoccini::Client, css: &str) {
    browser
        .find(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// The text of the element `css` finds, if there is one, shown or folded away (the
/// preview's exact statement sits in a closed `<details>`; [`shown`] says what is seen).
async fn text(browser: &fantoccini::Client, css: &str) -> Option<String> {
    let script = "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;";
    browser
        .execute(script, vec![serde_json::Value::String(css.to_string())])
        .await
        .ok()?
        .as_str()
        .map(|t| t.trim().to_string())
}

/// Whether the element `css` finds is shown.
async fn shown(browser: &fantoccini::Client, css: &str) -> bool {
    match browser.find(fantoccini::Locator::Css(css)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_marks_one_job_failed_in_the_browser() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table_with_id("TEXT").await;
    for (id, beat) in [("stuck-1", 95.0), ("stuck-2", 62.0), ("live-3", 0.1)] {
        db.running(id, 130.0, beat).await;
    }
    // Queued for over two hours: it can be failed or snoozed, not re-queued.
    db.exec(&format!(
        "INSERT INTO jobs VALUES ('queued-4', 'queued', {}, {})",
        db.ago(130.0),
        db.ago(130.0)
    ))
    .await;
    // Where a fail writes its reason and its time, for the failed job's page.
    db.exec("ALTER TABLE jobs ADD COLUMN error TEXT").await;
    db.exec("ALTER TABLE jobs ADD COLUMN finished_at TEXT")
        .await;
    // Alert-only, so the one write is the person's.
    let config = TestConfig::new(&db.url)
        .top("interval = \"300ms\"")
        .jobs("status_since = \"created_at\"\nerror = \"error\"\nfinished_at = \"finished_at\"")
        .statuses(
            "pending = [\"queued\"]\nrunning = [\"running\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]",
        )
        .heartbeat_rule("hb", "30m", "action = \"alert\"\nseverity = \"critical\"")
        .section("[[rules]]\nname = \"queue\"\nstatuses = [\"queued\"]\nsignal = \"created\"\nafter = \"1h\"\naction = \"alert\"")
        .section("[safety]\nstartup_grace = \"0s\"")
        // Behind a reverse proxy's prefix: the script's requests honour it too.
        .section(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"BROWSER-TOKEN-0123\"\nbase_path = \"/jw\"",
        )
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    wait_for("the first scan", Duration::from_secs(15), || async {
        common::get(&daemon.url("/jw/readyz"))
            .await
            .filter(|r| r.0 == 200)
    })
    .await;
    let status = |id: &str| {
        let (db, id) = (&db, id.to_string());
        async move {
            db.rows(&format!("SELECT status FROM jobs WHERE id = '{id}'"))
                .await[0][0]
                .clone()
                .unwrap_or_default()
        }
    };
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = driver.session(profile.path()).await;
    let fail_1 = "div.actions[data-job=\"stuck-1\"] button[data-act=\"fail\"]";

    // Before the token: the prompt, and no button shown.
    browser.goto(&daemon.url("/jw/")).await.expect("open /jw/");
    wait_for("the token prompt", Duration::from_secs(10), || async {
        shown(&browser, "#unlock").await.then_some(())
    })
    .await;
    assert!(!shown(&browser, fail_1).await, "no button before the token");
    assert!(!shown(&browser, "button[data-act]").await);

    // A wrong token is refused when it is entered: nothing unlocks.
    let input = browser
        .find(fantoccini::Locator::Css("#token"))
        .await
        .expect("token input");
    input.send_keys("NOT-THE-TOKEN-0123").await.expect("type");
    click(&browser, "#unlock-form button[type=submit]").await;
    wait_for("the refusal", Duration::from_secs(10), || async {
        text(&browser, "#unlock-result")
            .await
            .filter(|t| t.contains("That token is wrong"))
    })
    .await;
    assert!(!shown(&browser, "button[data-act]").await, "still locked");
    assert!(shown(&browser, "#unlock").await);

    // The right token, once; then the buttons.
    let input = browser
        .find(fantoccini::Locator::Css("#token"))
        .await
        .expect("token input");
    input.send_keys("BROWSER-TOKEN-0123").await.expect("type");
    click(&browser, "#unlock-form button[type=submit]").await;
    wait_for("the buttons", Duration::from_secs(10), || async {
        shown(&browser, fail_1).await.then_some(())
    })
    .await;
    assert!(
        text(&browser, "#locked-as")
            .await
            .is_some_and(|t| t.contains("http 127.0.0.1:")),
        "who the daemon takes the person for"
    );
    // Only the buttons that can work: a queued job is not offered a re-queue.
    let queued = "div.actions[data-job=\"queued-4\"]";
    assert!(shown(&browser, &format!("{queued} button[data-act=\"fail\"]")).await);
    assert!(!shown(&browser, &format!("{queued} button[data-act=\"requeue\"]")).await);
    assert!(
        shown(
            &browser,
            "div.actions[data-job=\"stuck-1\"] button[data-act=\"requeue\"]"
        )
        .await
    );

    // "Mark as failed": a dry run first, in words, the exact statement folded beneath;
    // nothing written yet.
    click(&browser, fail_1).await;
    let statement = wait_for("the preview", Duration::from_secs(10), || async {
        text(&browser, "#preview-statement")
            .await
            .filter(|t| t.starts_with("UPDATE"))
    })
    .await;
    assert!(
        statement.contains("'stuck-1'") && statement.contains("'failed'"),
        "{statement}"
    );
    assert!(!shown(&browser, "#preview-statement").await, "folded");
    assert_eq!(
        text(&browser, "#preview-words").await.as_deref(),
        Some("running → failed, no reason given")
    );
    browser
        .find(fantoccini::Locator::Css("#preview-reason"))
        .await
        .expect("reason")
        .send_keys("worker died")
        .await
        .expect("type");
    assert_eq!(
        text(&browser, "#preview-words").await.as_deref(),
        Some("running → failed, reason: worker died")
    );
    assert_eq!(
        status("stuck-1").await,
        "running",
        "a preview writes nothing"
    );
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(target_dir().join("console-preview.png"), &png).expect("save");

    // Confirm: exactly that row, and the result stays until it is dismissed (no reload is
    // scheduled meanwhile).
    click(&browser, "#confirm").await;
    wait_for("stuck-1 failed", Duration::from_secs(10), || async {
        (status("stuck-1").await == "failed").then_some(())
    })
    .await;
    assert_eq!(status("stuck-2").await, "running");
    assert_eq!(status("live-3").await, "running");
    let result = wait_for("the result", Duration::from_secs(10), || async {
        text(&browser, "#preview-result")
            .await
            .filter(|t| t.starts_with("Done"))
    })
    .await;
    assert_eq!(
        result,
        "Done (applied): running → failed, reason: worker died"
    );
    assert!(shown(&browser, "#preview-result").await);
    let refresh = browser
        .execute("return document.documentElement.dataset.refresh", vec![])
        .await
        .expect("refresh");
    assert_eq!(refresh, "paused", "no reload under the result");
    assert_eq!(text(&browser, "#cancel").await.as_deref(), Some("Dismiss"));
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(target_dir().join("console-result.png"), &png).expect("save");
    click(&browser, "#cancel").await;

    // The page refreshes itself: stuck-1 is gone, and stuck-2 goes once its row is fixed.
    let gone = |id: &'static str| {
        let browser = &browser;
        async move {
            let page = browser.source().await.ok()?;
            (page.contains("data-refresh=\"on\"")
                && page.contains("Findings")
                && !page.contains(&format!("data-job=\"{id}\"")))
            .then_some(page)
        }
    };
    wait_for("stuck-1 off the page", Duration::from_secs(20), || {
        gone("stuck-1")
    })
    .await;

    // A snooze through its button: previewed, confirmed, listed; then ended the same way.
    click(
        &browser,
        "div.actions[data-job=\"stuck-2\"] button[data-act=\"snooze\"]",
    )
    .await;
    wait_for("the snooze's preview", Duration::from_secs(10), || async {
        text(&browser, "#preview-statement")
            .await
            .filter(|t| t.starts_with("no alerts and no writes for job stuck-2 until"))
    })
    .await;
    click(&browser, "#confirm").await;
    wait_for("the snooze's result", Duration::from_secs(10), || async {
        text(&browser, "#preview-result")
            .await
            .filter(|t| t.starts_with("Done"))
    })
    .await;
    click(&browser, "#cancel").await;
    wait_for(
        "stuck-2 listed as snoozed",
        Duration::from_secs(10),
        || async {
            text(&browser, "ul.snoozes")
                .await
                .filter(|t| t.contains("stuck-2") && t.contains("snoozed until"))
        },
    )
    .await;
    let holds = std::fs::read_to_string(db.dir().join("state").join("holds.json")).expect("holds");
    assert!(holds.contains("stuck-2"), "{holds}");
    wait_for("the end-snooze button", Duration::from_secs(10), || async {
        shown(
            &browser,
            "span.actions[data-job=\"stuck-2\"] button[data-act=\"unsnooze\"]",
        )
        .await
        .then_some(())
    })
    .await;
    click(
        &browser,
        "span.actions[data-job=\"stuck-2\"] button[data-act=\"unsnooze\"]",
    )
    .await;
    wait_for("the end's preview", Duration::from_secs(10), || async {
        text(&browser, "#preview-statement")
            .await
            .filter(|t| t.contains("ends now"))
    })
    .await;
    click(&browser, "#confirm").await;
    wait_for("the end's result", Duration::from_secs(10), || async {
        text(&browser, "#preview-result")
            .await
            .filter(|t| t.starts_with("Done"))
    })
    .await;
    click(&browser, "#cancel").await;
    wait_for("no snooze listed", Duration::from_secs(10), || async {
        let page = browser.source().await.ok()?;
        (page.contains("Findings") && !page.contains("class=\"snoozes\"")).then_some(())
    })
    .await;
    assert_eq!(
        status("stuck-2").await,
        "running",
        "a snooze writes nothing"
    );

    // The pause button: every write paused for an hour, with a reason, said on the page;
    // then resumed.
    wait_for("the pause form", Duration::from_secs(10), || async {
        shown(&browser, "#pause-form").await.then_some(())
    })
    .await;
    browser
        .find(fantoccini::Locator::Css("#pause-reason"))
        .await
        .expect("the pause's reason")
        .send_keys("deploy window")
        .await
        .expect("type");
    click(&browser, "#pause-form button[type=submit]").await;
    wait_for("the pause on the page", Duration::from_secs(15), || async {
        text(&browser, "ul.health")
            .await
            .filter(|t| t.contains("writes paused until") && t.contains("deploy window"))
    })
    .await;
    let holds = std::fs::read_to_string(db.dir().join("state").join("holds.json")).expect("holds");
    assert!(holds.contains("deploy window"), "{holds}");
    wait_for("the resume button", Duration::from_secs(10), || async {
        shown(&browser, "#resume").await.then_some(())
    })
    .await;
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(target_dir().join("console-paused.png"), &png).expect("save");
    click(&browser, "#resume").await;
    wait_for("writes resumed", Duration::from_secs(15), || async {
        text(&browser, "ul.health")
            .await
            .filter(|t| t.contains("writes not paused"))
    })
    .await;

    db.exec(&format!(
        "UPDATE jobs SET updated_at = {} WHERE id = 'stuck-2'",
        db.ago(0.0)
    ))
    .await;
    db.exec("UPDATE jobs SET status = 'completed' WHERE id = 'queued-4'")
        .await;
    let page = wait_for("stuck-2 off the page", Duration::from_secs(20), || {
        gone("stuck-2")
    })
    .await;
    assert!(page.contains("Nothing is stuck."), "{page}");

    // The job page's timeline: the write, and who asked.
    browser
        .goto(&daemon.url("/jw/jobs/stuck-1"))
        .await
        .expect("open the job page");
    let timeline = browser
        .find(fantoccini::Locator::Css("ol.timeline"))
        .await
        .expect("a timeline")
        .text()
        .await
        .expect("text");
    assert!(
        timeline.contains("applied fail running → failed")
            && timeline.contains("asked by http 127.0.0.1:")
            && timeline.contains(": worker died"),
        "the write, who asked and why: {timeline}"
    );
    // The failed job's page opens with its story, and its row holds the error jobwarden
    // wrote (with the reason) and the time it finished.
    let row_cell = |key: &'static str| {
        let browser = &browser;
        async move {
            let script = "const c = [...document.querySelectorAll('td code')].find(e => e.textContent === arguments[0]); return c ? c.closest('tr').lastElementChild.textContent : null;";
            browser
                .execute(script, vec![serde_json::Value::String(key.into())])
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        }
    };
    let error = row_cell("jobs.error").await;
    assert!(
        error.contains("marked failed by http 127.0.0.1:") && error.ends_with("worker died"),
        "{error}"
    );
    let finished = row_cell("jobs.finished_at").await;
    assert!(finished.starts_with("20"), "a time: {finished:?}");
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(target_dir().join("console-failed-job.png"), &png).expect("save");
    let headline = text(&browser, "p.headline").await.unwrap_or_default();
    assert!(
        headline.starts_with("failed · failed by jobwarden at ")
            && headline.contains("(running → failed), rule hb, asked by http 127.0.0.1:")
            && headline.ends_with(": worker died"),
        "{headline}"
    );

    // The job list: the failed class holds stuck-1; a search of the active ones by part of
    // an id, typed in its form.
    browser
        .goto(&daemon.url("/jw/jobs?class=failed"))
        .await
        .expect("open the job list");
    let failed_list = text(&browser, "table.jobs").await.unwrap_or_default();
    assert!(failed_list.contains("stuck-1"), "{failed_list}");
    browser
        .goto(&daemon.url("/jw/jobs"))
        .await
        .expect("open the job list");
    let search = browser
        .find(fantoccini::Locator::Css("form.filter input[name=q]"))
        .await
        .expect("the search box");
    search.send_keys("live").await.expect("type");
    click(&browser, "form.filter button[type=submit]").await;
    let found = wait_for("the search's rows", Duration::from_secs(10), || async {
        let url = browser.current_url().await.ok()?;
        (url.query() == Some("q=live")).then_some(())?;
        text(&browser, "table.jobs").await
    })
    .await;
    assert!(
        found.contains("live-3") && !found.contains("stuck-2"),
        "{found}"
    );
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(target_dir().join("console-jobs.png"), &png).expect("save");
    browser.close().await.expect("close the session");
    assert_eq!(daemon.stop().await, 0);
}

/// The preview's box and the window's size, as the page sees them: `[top, left, bottom,
/// right, innerHeight, innerWidth, scrollY]`.
async fn preview_box(browser: &fantoccini::Client) -> Vec<f64> {
    let script = "const r = document.getElementById('preview').getBoundingClientRect();
        return [r.top, r.left, r.bottom, r.right, window.innerHeight, window.innerWidth, window.scrollY];";
    let v = browser
        .execute(script, vec![])
        .await
        .expect("the preview's box");
    v.as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default()
}

/// Whether a box (from [`preview_box`]) lies inside the window, with something in it.
fn inside_the_window(b: &[f64]) -> bool {
    matches!(b, [top, left, bottom, right, height, width, _]
        if *top >= 0.0 && *left >= 0.0 && bottom <= height && right <= width && bottom - top > 50.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_opens_beside_the_row_that_asked_and_an_incident_acts_on_all() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.restart_aftermath(300, 0).await;
    let token = "BROWSER-SCALE-TOKEN-0123";
    let config = TestConfig::aftermath(&db.url)
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\""
        ))
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    let findings = wait_for("the incident", Duration::from_secs(30), || async {
        let (_, body) = common::get(&daemon.url("/api/v1/findings")).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["incidents"][0]["held_back"].is_string().then_some(v)
    })
    .await;
    let incident = findings["incidents"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let failed = || async {
        db.rows("SELECT id FROM jobs WHERE status = 'failed'")
            .await
            .len()
    };
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = driver.session(profile.path()).await;
    browser.goto(&daemon.url("/")).await.expect("open /");
    wait_for("the token prompt", Duration::from_secs(10), || async {
        shown(&browser, "#unlock").await.then_some(())
    })
    .await;
    browser
        .find(fantoccini::Locator::Css("#token"))
        .await
        .expect("token input")
        .send_keys(token)
        .await
        .expect("type");
    click(&browser, "#unlock-form button[type=submit]").await;

    // The 90th row, far down the page: its preview opens beside it, inside the window.
    let far = "tbody tr:nth-child(90) div.actions button[data-act=\"fail\"]";
    wait_for("the buttons", Duration::from_secs(10), || async {
        shown(&browser, far).await.then_some(())
    })
    .await;
    click(&browser, far).await;
    wait_for("the row's preview", Duration::from_secs(10), || async {
        text(&browser, "#preview-statement")
            .await
            .filter(|t| t.starts_with("UPDATE"))
    })
    .await;
    let b = preview_box(&browser).await;
    assert!(inside_the_window(&b), "the preview in the window: {b:?}");
    assert!(b[6] > 2_000.0, "the row was far down the page: {b:?}");
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(target_dir().join("console-preview-far.png"), &png).expect("save");
    click(&browser, "#cancel").await;
    assert_eq!(failed().await, 0, "a preview writes nothing");

    // The incident's "Fail all": its dry run in the same panel, beside the incident.
    let fail_all = format!("div.bulk[data-incident=\"{incident}\"] button[data-act=\"fail\"]");
    browser
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .expect("scroll up");
    click(&browser, &fail_all).await;
    let said = wait_for(
        "the incident's preview",
        Duration::from_secs(10),
        || async {
            let statement = text(&browser, "#preview-statement")
                .await
                .unwrap_or_default();
            let result = text(&browser, "#preview-result").await.unwrap_or_default();
            (!statement.is_empty() && statement != "…" || !result.is_empty())
                .then_some((statement, result))
        },
    )
    .await;
    assert!(shown(&browser, "#preview").await);
    let b = preview_box(&browser).await;
    assert!(
        inside_the_window(&b),
        "the incident's preview in the window: {b:?}"
    );
    assert_eq!(
        text(&browser, "#preview-title").await.as_deref(),
        Some(format!("Fail all jobs of incident {incident}?").as_str())
    );
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(target_dir().join("console-incident-preview.png"), &png).expect("save");
    let (statement, result) = said;
    assert!(
        statement.starts_with("300 jobs"),
        "the dry run's count: {statement:?} ({result:?})"
    );
    let reason = browser
        .find(fantoccini::Locator::Css("#preview-reason"))
        .await
        .expect("reason");
    reason
        .send_keys("the deploy killed the workers")
        .await
        .expect("type");
    click(&browser, "#confirm").await;
    wait_for("300 failed", Duration::from_secs(30), || async {
        (failed().await == 300).then_some(())
    })
    .await;
    let live = db
        .rows("SELECT id FROM jobs WHERE status = 'running' AND id LIKE 'live-%'")
        .await;
    assert_eq!(live.len(), 20, "the live jobs untouched");
    browser.close().await.expect("close the session");
    assert_eq!(daemon.stop().await, 0);
}
