//! The seeds' story end to end (issue 22): a worker process that runs thousands of jobs is
//! SIGKILLed, and every one of its jobs stays `running` with a heartbeat that no longer moves.
//! On PostgreSQL with 5,000 jobs, on MariaDB and SQLite with 500, one scenario function:
//!
//! 1. A real worker process (this test binary, re-executed with [`WORKER_SQL`] set) beats the
//!    heartbeats of the jobs it runs every second through sqlx; a second one keeps [`LIVE`]
//!    other jobs alive the whole time. On SQLite both write through WAL, as an app would.
//! 2. `jobwarden run` (the real binary) watches the table: interval 1 s, a heartbeat rule
//!    with `action = "fail"` after 10 s, a webhook and a Slack receiver, a token,
//!    `[http] external_url`.
//! 3. The worker is SIGKILLed. One incident opens within the rule's threshold, one interval
//!    and [`SCAN_MARGIN`]; each receiver hears of it once (Slack under 4,000 characters,
//!    naming the count); the mass-stall guard holds the writes and the log says so once,
//!    with no line per job.
//! 4. 20 readers load `/` in a loop: each page under 250 KB and 5 s, `/healthz` answering
//!    meanwhile.
//! 5. A person fails the incident: the dry run (the count, a sample, the statement), then the
//!    request repeating the count with a reason. Every dead job ends `failed`, the live ones
//!    are untouched, the audit trail has exactly one intent and one outcome per job under
//!    one batch id, and the log one line for the whole request.
//! 6. Each receiver hears once that the incident ended, and how: failed by a person.
//!
//! The worker beats all its jobs in one statement per second (one heartbeat time for all, as
//! a worker with one heartbeat loop writes it), so the scan that first sees them over the
//! threshold sees all of them: the opening message's count is the whole incident, not the
//! part a scan caught between two of the worker's statements.
//!
//! The three run one at a time ([`ONE_AT_A_TIME`]): the time bounds are for one daemon and
//! its workers on this 2-core machine, not three.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use common::{get, metric, wait_for, Backend, Daemon, Receiver, TestConfig, TestDb};

/// Set in a re-executed test binary: it is then a worker, running these statements every
/// [`BEAT`] until killed, against the database at [`WORKER_URL`].
const WORKER_SQL: &str = "JOBWARDEN_SCENARIO_WORKER_SQL";
const WORKER_URL: &str = "JOBWARDEN_SCENARIO_WORKER_URL";
/// A file the worker rewrites after each beat with the number of beats so far.
const WORKER_BEATS: &str = "JOBWARDEN_SCENARIO_WORKER_BEATS";
/// How often a worker beats.
const BEAT: Duration = Duration::from_secs(1);

const TOKEN: &str = "SCENARIO-T0KEN-0123456789";
/// Jobs the second worker keeps alive throughout.
const LIVE: usize = 20;
/// The daemon's scan period.
const INTERVAL: Duration = Duration::from_secs(1);
/// The heartbeat rule's `after`.
const AFTER: Duration = Duration::from_secs(10);
/// Beyond threshold + interval: the scan itself (5,000 rows read, judged and grouped), the
/// last beat's own up to one second before the kill, and a loaded 2-core machine.
const SCAN_MARGIN: Duration = Duration::from_secs(6);
/// How long a test waits for what a few scans bring.
const SCANS: Duration = Duration::from_secs(30);
const REASON: &str = "the deploy at 07:12 SIGKILLed worker-a";

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn postgres_5000_jobs_of_a_killed_worker() {
    scenario(
        Backend::Postgres,
        5_000,
        "postgres_5000_jobs_of_a_killed_worker",
    )
    .await;
}

#[tokio::test]
async fn mariadb_500_jobs_of_a_killed_worker() {
    scenario(Backend::MySql, 500, "mariadb_500_jobs_of_a_killed_worker").await;
}

#[tokio::test]
async fn sqlite_500_jobs_of_a_killed_worker() {
    scenario(Backend::Sqlite, 500, "sqlite_500_jobs_of_a_killed_worker").await;
}

/// One worker process: this test binary running only `test` (which turns into
/// [`worker_loop`] on seeing [`WORKER_SQL`]), killed on drop.
struct Worker {
    child: Child,
    beats: PathBuf,
}

impl Worker {
    fn start(test: &str, db: &TestDb, name: &str, sql: &str) -> Worker {
        let beats = db.dir().join(format!("{name}.beats"));
        let log = std::fs::File::create(db.dir().join(format!("{name}.log"))).expect("log");
        let url = match db.backend {
            Backend::Sqlite => format!("{}?mode=rw", db.url),
            _ => db.url.clone(),
        };
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(WORKER_SQL, sql)
            .env(WORKER_URL, url)
            .env(WORKER_BEATS, &beats)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn a worker");
        Worker { child, beats }
    }

    /// Beats so far.
    fn beats(&self) -> u64 {
        std::fs::read_to_string(&self.beats)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits for `n` more beats than now.
    async fn beat(&self, n: u64) {
        let start = self.beats();
        wait_for("a worker's beats", SCANS, || {
            std::future::ready((self.beats() >= start + n).then_some(()))
        })
        .await;
    }

    /// SIGKILL, as the OOM killer or a deploy's `kill -9` does.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the worker");
        self.child.wait().expect("reap the worker");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The worker's life: beat every [`BEAT`] until killed. A beat that fails is tried again at
/// the next one, as a worker's heartbeat loop does. A worker whose test is gone (killed
/// itself, say by a CI timeout) stops too, rather than beating forever.
async fn worker_loop(sql: String) -> ! {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    sqlx::any::install_default_drivers();
    let url = std::env::var(WORKER_URL).expect("worker url");
    let beats = PathBuf::from(std::env::var(WORKER_BEATS).expect("worker beats file"));
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("the worker connects");
    if url.starts_with("sqlite:") {
        // The scenario switched the file to WAL before starting its workers (the mode is kept
        // in the file); two workers switching it at once could meet a lock, so a failure here
        // is only reported.
        if let Err(e) = sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await
        {
            eprintln!("PRAGMA journal_mode = WAL: {e}");
        }
    }
    let mut tick = tokio::time::interval(BEAT);
    let mut done = 0u64;
    loop {
        tick.tick().await;
        // SAFETY: as above.
        if unsafe { libc::getppid() } != parent {
            std::process::exit(0);
        }
        match sqlx::query(&sql).execute(&pool).await {
            Ok(_) => {
                done += 1;
                let _ = std::fs::write(&beats, done.to_string());
            }
            Err(e) => eprintln!("beat failed: {e}"),
        }
    }
}

async fn post(
    client: &reqwest::Client,
    daemon: &Daemon,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = client
        .post(daemon.url(path))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The incident messages a webhook receiver accepted, in order.
fn incident_messages(hook: &Receiver) -> Vec<serde_json::Value> {
    hook.got()
        .into_iter()
        .filter(|r| r.status < 300 && r.body.get("incident").is_some())
        .map(|r| r.body)
        .collect()
}

fn slack_texts(slack: &Receiver) -> Vec<String> {
    slack
        .got()
        .iter()
        .map(|r| r.body["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn scans_total(daemon: &Daemon) -> Option<f64> {
    get(&daemon.url("/metrics"))
        .await
        .and_then(|(_, m)| metric(&m, "jobwarden_scans_total"))
}

/// Waits until the daemon has completed `n` more scans.
async fn scans(daemon: &Daemon, n: f64) {
    let start = wait_for("a scan", SCANS, || scans_total(daemon)).await;
    wait_for("more scans", SCANS, || async {
        scans_total(daemon).await.filter(|c| *c >= start + n)
    })
    .await;
}

/// `(status, error)` of every row, by id.
async fn rows(db: &TestDb) -> BTreeMap<String, (String, Option<String>)> {
    db.rows(&format!(
        "SELECT {}, {}, {} FROM jobs",
        db.text("id"),
        db.text("status"),
        db.text("error")
    ))
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap_or_default(),
            (r[1].clone().unwrap_or_default(), r[2].clone()),
        )
    })
    .collect()
}

/// 20 readers load `/` in a loop for `span` while `/healthz` is asked every 100 ms: the
/// slowest page, the largest, how many were loaded, and the slowest `/healthz`.
async fn readers(daemon: &Daemon, span: Duration) -> (Duration, usize, usize, Duration) {
    let client = reqwest::Client::new();
    let end = Instant::now() + span;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, url) = (client.clone(), daemon.url("/"));
        tasks.push(tokio::spawn(async move {
            let (mut slowest, mut largest, mut loaded) = (Duration::ZERO, 0, 0);
            while Instant::now() < end {
                let start = Instant::now();
                let r = client.get(&url).send().await.expect("GET /");
                assert_eq!(r.status().as_u16(), 200);
                let body = r.bytes().await.expect("the page");
                slowest = slowest.max(start.elapsed());
                largest = largest.max(body.len());
                loaded += 1;
            }
            (slowest, largest, loaded)
        }));
    }
    let mut health = Duration::ZERO;
    while Instant::now() < end {
        let start = Instant::now();
        let r = client
            .get(daemon.url("/healthz"))
            .send()
            .await
            .expect("GET /healthz");
        assert_eq!(r.status().as_u16(), 200);
        health = health.max(start.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut slowest, mut largest, mut loaded) = (Duration::ZERO, 0, 0);
    for t in tasks {
        let (s, l, n) = t.await.expect("a reader");
        slowest = slowest.max(s);
        largest = largest.max(l);
        loaded += n;
    }
    (slowest, largest, loaded, health)
}

async fn scenario(backend: Backend, dead: usize, test: &str) {
    if let Ok(sql) = std::env::var(WORKER_SQL) {
        worker_loop(sql).await;
    }
    let _alone = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let db = TestDb::new(backend).await;
    let (text, ts) = (db.ty("text"), db.ty("ts"));
    db.exec(&format!(
        "CREATE TABLE jobs (id {text} PRIMARY KEY, status {text}, created_at {ts}, \
         updated_at {ts}, error {})",
        db.ty("longtext")
    ))
    .await;
    // Started three hours ago (not on a whole or half hour: see the zone-offset hold), beating
    // now.
    let row = |id: String| {
        format!(
            "('{id}', 'running', {}, {}, NULL)",
            db.ago(181.3),
            db.ago(0.0)
        )
    };
    let mut all: Vec<String> = (1..=dead).map(|i| row(format!("dead-{i}"))).collect();
    all.extend((1..=LIVE).map(|i| row(format!("live-{i}"))));
    db.insert_rows("jobs", &all).await;
    let beat = |prefix: &str| {
        format!(
            "UPDATE jobs SET updated_at = {} WHERE id LIKE '{prefix}-%'",
            db.ago(0.0)
        )
    };
    if db.backend == Backend::Sqlite {
        db.exec("PRAGMA journal_mode = WAL").await;
    }
    let mut doomed = Worker::start(test, &db, "worker-a", &beat("dead"));
    let live = Worker::start(test, &db, "worker-b", &beat("live"));
    doomed.beat(1).await;
    live.beat(1).await;

    let hook = Receiver::start(0, &[]).await;
    let slack = Receiver::start(0, &[]).await;
    let state = db.dir().join("state");
    let config = TestConfig::new(&db.url)
        .top(&format!(
            "interval = \"{}s\"\nenvironment = \"production\"",
            INTERVAL.as_secs()
        ))
        .jobs("error = \"error\"")
        .heartbeat_rule(
            "hb",
            &format!("{}s", AFTER.as_secs()),
            "action = \"fail\"\nseverity = \"critical\"",
        )
        .section("[safety]\nmin_age = \"5s\"")
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\
             external_url = \"https://jobs.internal/jw\""
        ))
        .state(&state)
        .section(&format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n\
             [[alerts]]\nkind = \"slack\"\nurl = \"{}\"\n",
            hook.url("/hook"),
            slack.url("/slack")
        ))
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    // Healthy for a few scans: nothing found, nothing told.
    scans(&daemon, 3.0).await;
    let (_, findings) = get(&daemon.url("/api/v1/findings"))
        .await
        .expect("findings");
    let findings: serde_json::Value = serde_json::from_str(&findings).expect("json");
    assert_eq!(findings["findings"], serde_json::json!([]), "{findings}");
    assert!(hook.got().is_empty() && slack.got().is_empty());

    // The worker dies.
    doomed.kill();
    let killed = Instant::now();
    let opened_within = wait_for("the incident", AFTER + INTERVAL + SCAN_MARGIN, || async {
        let (_, m) = get(&daemon.url("/metrics")).await?;
        (metric(&m, "jobwarden_incidents_open") == Some(1.0)
            && metric(&m, "jobwarden_incident_jobs") == Some(dead as f64))
        .then(|| killed.elapsed())
    })
    .await;
    eprintln!(
        "{backend:?}, {dead} jobs: the incident opened {opened_within:.1?} after the kill \
         (bound {:?})",
        AFTER + INTERVAL + SCAN_MARGIN
    );
    let opening = wait_for("the incident's opening message", SCANS, || async {
        let told = incident_messages(&hook);
        (!told.is_empty() && !slack.got().is_empty()).then(|| told[0].clone())
    })
    .await;
    let id = opening["incident"]["id"]
        .as_str()
        .expect("an incident id")
        .to_string();
    // The guard holds every write, and the incident says so.
    let held = wait_for("the guard's hold on the incident", SCANS, || async {
        let (_, body) = get(&daemon.url("/api/v1/findings")).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["id"] == id.as_str())
            .and_then(|i| i["held_back"].as_str().map(str::to_string))
    })
    .await;
    scans(&daemon, 3.0).await;
    assert_eq!(opening["state"], "firing", "{opening}");
    assert_eq!(opening["incident"]["jobs"], dead, "{opening}");
    assert_eq!(
        opening["incident"]["url"],
        format!("https://jobs.internal/jw/?incident={id}").as_str()
    );
    assert_eq!(
        incident_messages(&hook).len(),
        1,
        "one opening message: {:?}",
        hook.got()
    );
    assert_eq!(hook.got().len(), 1, "and nothing per job");
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].chars().count() < 4_000, "{}", texts[0].len());
    assert!(
        texts[0].contains(&format!("incident `{id}`"))
            && texts[0].contains(&format!("{dead} jobs")),
        "{}",
        texts[0]
    );
    assert_eq!(
        rows(&db).await.values().filter(|r| r.0 == "failed").count(),
        0
    );

    // The log says the hold once, not once per job per scan: no dead job's id in a held-back
    // line, and only a few lines name a dead job at all.
    let log = daemon.log();
    let hold_lines: Vec<&str> = log.lines().filter(|l| l.contains("held back")).collect();
    let naming: Vec<&str> = log.lines().filter(|l| l.contains("dead-")).collect();
    assert!(
        !hold_lines.is_empty() && hold_lines.len() <= 2,
        "{hold_lines:#?}"
    );
    assert!(
        hold_lines.iter().all(|l| !l.contains("dead-")),
        "{hold_lines:#?}"
    );
    assert!(
        naming.len() <= 3,
        "{} lines name a dead job: {naming:#?}",
        naming.len()
    );
    assert!(held.contains("stuck"), "{held}");

    // 20 readers on the status page.
    let (slowest, largest, loaded, health) = readers(&daemon, Duration::from_secs(5)).await;
    eprintln!(
        "{backend:?}, {dead} jobs: {loaded} loads of / by 20 readers in 5 s, the slowest \
         {slowest:.2?}, the largest {largest} bytes; the slowest /healthz {health:.2?}"
    );
    assert!(largest < 250_000, "{largest} bytes");
    assert!(slowest < Duration::from_secs(5), "{slowest:?}");
    assert!(health < Duration::from_secs(2), "{health:?}");

    // A person fails the incident: first the preview, then the count it showed.
    let client = reqwest::Client::new();
    let (code, preview) = post(
        &client,
        &daemon,
        "/api/v1/jobs/fail",
        &serde_json::json!({"incident": id, "dry_run": true}),
    )
    .await;
    assert_eq!(code, 200, "{preview}");
    assert_eq!(preview["count"], dead, "{preview}");
    let sample = preview["sample"].as_array().expect("a sample");
    assert!(
        !sample.is_empty()
            && sample
                .iter()
                .all(|s| s.as_str().is_some_and(|s| s.starts_with("dead-"))),
        "{preview}"
    );
    let statement = preview["statement"].as_str().unwrap_or_default();
    assert!(
        statement.starts_with("UPDATE") && statement.contains("failed"),
        "{preview}"
    );
    let asked = Instant::now();
    let (code, done) = post(
        &client,
        &daemon,
        "/api/v1/jobs/fail",
        &serde_json::json!({"incident": id, "expect": dead, "reason": REASON}),
    )
    .await;
    let took = asked.elapsed();
    eprintln!("{backend:?}: the bulk fail of {dead} jobs took {took:.1?}");
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["count"], dead, "{done}");
    assert_eq!(done["outcomes"]["applied"], dead, "{done}");
    let batch = done["batch"].as_str().expect("a batch id").to_string();

    // Every dead job failed with the reason, every live one still running and untouched.
    let table = rows(&db).await;
    for (id, (status, error)) in &table {
        if id.starts_with("dead-") {
            assert_eq!(status, "failed", "{id}");
            assert!(
                error.as_deref().is_some_and(|e| e.contains(REASON)),
                "{id}: {error:?}"
            );
        } else {
            assert_eq!((status.as_str(), error), ("running", &None), "{id}");
        }
    }
    assert_eq!(table.len(), dead + LIVE);
    // One line for the bulk action, none per row: each row is in the audit trail.
    let log = daemon.log();
    let naming: Vec<&str> = log.lines().filter(|l| l.contains("dead-")).collect();
    assert!(
        naming.len() <= 3,
        "{} lines name a dead job, such as {:#?}",
        naming.len(),
        &naming[..5.min(naming.len())]
    );
    let bulk = format!("{dead} of {dead} jobs marked failed by a person in one bulk action");
    assert_eq!(log.matches(&bulk).count(), 1, "no `{bulk}` in the log");

    // The audit trail: each dead job once intended and once written, all in the one batch.
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).expect("audit.jsonl");
    let mut per_job: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in audit.lines() {
        let e: serde_json::Value = serde_json::from_str(line).expect("an audit line");
        assert_eq!(e["batch"], batch.as_str(), "{line}");
        assert_eq!(e["forced"], true, "{line}");
        per_job
            .entry(e["job_id"].as_str().expect("job_id").to_string())
            .or_default()
            .push(format!(
                "{}:{}",
                e["stage"].as_str().unwrap_or("?"),
                e["outcome"].as_str().unwrap_or("?")
            ));
    }
    assert_eq!(per_job.len(), dead, "{} lines", audit.lines().count());
    let odd: Vec<_> = per_job
        .iter()
        .filter(|(id, stages)| {
            !id.starts_with("dead-") || **stages != ["intent:intent", "outcome:applied"]
        })
        .take(5)
        .collect();
    assert!(odd.is_empty(), "{odd:?}");

    // The end: one message each, saying how it ended.
    let ended = wait_for("the incident's end", SCANS, || async {
        let told = incident_messages(&hook);
        (told.len() >= 2 && slack.got().len() >= 2).then(|| told[1].clone())
    })
    .await;
    scans(&daemon, 3.0).await;
    assert_eq!(incident_messages(&hook).len(), 2, "{:?}", hook.got());
    assert_eq!(hook.got().len(), 2, "nothing per job: {:?}", hook.got());
    let ending = format!("{dead} failed by a person");
    assert_eq!(ended["state"], "resolved", "{ended}");
    assert_eq!(ended["incident"]["id"], id.as_str(), "{ended}");
    assert!(
        ended["incident"]["ending"]
            .as_str()
            .is_some_and(|e| e.starts_with(&ending)),
        "{ended}"
    );
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[1].starts_with(":white_check_mark: ended:") && texts[1].contains(&ending),
        "{}",
        texts[1]
    );
    live.beat(1).await;
    assert_eq!(daemon.stop().await, 0);
    eprintln!(
        "{backend:?}, {dead} jobs: the scenario took {:.1?}",
        started.elapsed()
    );
}
