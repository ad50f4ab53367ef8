//! Every write has its record, whatever fails: faults injected into the real binary on SQLite
//! and PostgreSQL, with a trigger on the jobs table as the ground truth of what was written.
//! After each fault: every job written at most once, and every write with exactly one
//! complete audit record (its intent and its outcome).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{get, jobwarden, metric, wait_for, Backend, Daemon, Receiver, TestConfig, TestDb};

/// A jobs table with `n` running jobs silent for 45 minutes, and a `history` table that a
/// trigger fills with every status change: what was really written.
async fn stalled_jobs(db: &TestDb, n: usize) {
    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {t} NOT NULL, created_at {ts}, updated_at {ts})",
        t = db.ty("text"),
        ts = db.ty("ts")
    ))
    .await;
    db.exec("CREATE INDEX jobs_status ON jobs (status)").await;
    db.exec(&format!(
        "CREATE TABLE history (job_id INTEGER, old_status {t}, new_status {t})",
        t = db.ty("text")
    ))
    .await;
    match db.backend {
        Backend::Postgres => {
            db.exec(
                "CREATE FUNCTION log_status() RETURNS trigger AS $$ BEGIN \
                 IF NEW.status IS DISTINCT FROM OLD.status THEN \
                 INSERT INTO history VALUES (NEW.id, OLD.status, NEW.status); END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .await;
            db.exec(
                "CREATE TRIGGER jobs_history AFTER UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION log_status()",
            )
            .await;
        }
        _ => {
            db.exec(
                "CREATE TRIGGER jobs_history AFTER UPDATE OF status ON jobs \
                 BEGIN INSERT INTO history VALUES (NEW.id, OLD.status, NEW.status); END",
            )
            .await;
        }
    }
    for chunk in (1..=n).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|id| format!("({id}, 'running', {}, {})", db.ago(90.0), db.ago(45.0)))
            .collect();
        db.exec(&format!(
            "INSERT INTO jobs (id, status, created_at, updated_at) VALUES {}",
            values.join(", ")
        ))
        .await;
    }
}

/// A config that fails every stalled job at once: no blast-radius limit in the way. The rows
/// are inserted running, so they entered that status when created (`status_since`): a daemon
/// that first sees rows inserted while it runs knows how long they have been running.
fn config(db: &TestDb, state: &Path, extra: &str) -> PathBuf {
    TestConfig::new(db.jobwarden_url())
        .top(extra)
        .jobs("status_since = \"created_at\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section(
            "[safety]\nmax_actions_per_scan = 100000\nmax_stuck_fraction = 1.0\nstartup_grace = \"0s\"\nconfirm_scans = 1",
        )
        .state(state)
        .write(db.dir().join("jw.toml"))
}

/// [`config`] for a daemon: `extra` top-level keys, a listener on a free port, and any
/// further `sections`.
fn daemon_config(db: &TestDb, state: &Path, extra: &str, sections: &str) -> PathBuf {
    let path = config(db, state, extra);
    let text = std::fs::read_to_string(&path).unwrap();
    let port = 0;
    std::fs::write(
        &path,
        format!("{text}\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n{sections}\n"),
    )
    .unwrap();
    path
}

/// Job ids and how many times the trigger saw each written.
async fn written(db: &TestDb) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for row in db
        .rows(&format!(
            "SELECT {} FROM history WHERE new_status = 'failed'",
            db.text("job_id")
        ))
        .await
    {
        *out.entry(row[0].clone().unwrap_or_default()).or_default() += 1;
    }
    out
}

async fn written_count(db: &TestDb) -> usize {
    db.rows(&format!("SELECT {} FROM history", db.text("COUNT(*)")))
        .await[0][0]
        .as_deref()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The audit trail: for each write id, its intent's and its outcomes' job ids and outcomes.
struct Trail {
    intents: BTreeMap<String, String>,
    outcomes: BTreeMap<String, Vec<(String, String)>>,
}

fn trail(state: &Path) -> Trail {
    let text = std::fs::read_to_string(state.join("audit.jsonl")).unwrap_or_default();
    let mut t = Trail {
        intents: BTreeMap::new(),
        outcomes: BTreeMap::new(),
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let id = v["id"].as_str().unwrap_or_default().to_string();
        let job = v["job_id"].as_str().unwrap_or_default().to_string();
        if v["stage"] == "intent" {
            t.intents.insert(id, job);
        } else {
            t.outcomes
                .entry(id)
                .or_default()
                .push((job, v["outcome"].as_str().unwrap_or_default().to_string()));
        }
    }
    t
}

/// The invariant: every job written at most once, and the jobs the trail says were applied
/// are exactly the jobs the trigger saw written, each with one intent and one outcome.
async fn trail_and_table_agree(db: &TestDb, state: &Path) -> usize {
    let written = written(db).await;
    assert!(
        written.values().all(|n| *n == 1),
        "a job was written twice: {written:?}"
    );
    let t = trail(state);
    for (id, outcomes) in &t.outcomes {
        assert_eq!(
            outcomes.len(),
            1,
            "write {id} has {} outcomes",
            outcomes.len()
        );
        assert!(
            t.intents.contains_key(id),
            "write {id} has an outcome and no intent"
        );
    }
    let unresolved: Vec<&String> = t
        .intents
        .keys()
        .filter(|id| !t.outcomes.contains_key(*id))
        .collect();
    assert!(
        unresolved.is_empty(),
        "intents without an outcome: {unresolved:?}"
    );
    let applied: BTreeSet<String> = t
        .outcomes
        .values()
        .flatten()
        .filter(|(_, o)| o == "applied")
        .map(|(job, _)| job.clone())
        .collect();
    let truth: BTreeSet<String> = written.keys().cloned().collect();
    assert_eq!(
        applied.len(),
        truth.len(),
        "the trail says {} written, the table {}",
        applied.len(),
        truth.len()
    );
    assert_eq!(applied, truth);
    truth.len()
}

fn spawn_recover(db: &TestDb, config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .args(["recover", "--config", config.to_str().unwrap()])
        .env("DATABASE_URL", db.jobwarden_url())
        .env_remove("JOBWARDEN_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recover")
}

async fn wait_written(db: &TestDb, at_least: usize) {
    wait_for("writes under way", Duration::from_secs(60), || async {
        (written_count(db).await >= at_least).then_some(())
    })
    .await;
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

const JOBS: usize = 2000;

/// SIGKILL of a one-shot `recover` mid-way: the write in flight has its intent on disk; the
/// next `recover` resolves it by reading the row, then finishes the rest.
async fn kill_recover(backend: Backend) {
    let db = TestDb::new(backend).await;
    stalled_jobs(&db, JOBS).await;
    let state = db.dir().join("state");
    let config = config(&db, &state, "");
    let mut child = spawn_recover(&db, &config);
    wait_written(&db, 200).await;
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    let before = written(&db).await.len();
    let out = jobwarden(
        db.jobwarden_url(),
        &["recover", "--config", config.to_str().unwrap()],
    );
    assert!(out.status.code().is_some(), "the second recover ran");
    let total = trail_and_table_agree(&db, &state).await;
    eprintln!("{backend:?}: SIGKILL after {before} writes; {total} jobs written in all, each with one intent and one outcome");
    assert_eq!(total, JOBS);
}

per_backend!(sigkill_mid_recover, kill_recover, postgres => Postgres, sqlite => Sqlite);

/// SIGTERM of a one-shot `recover`: no write starts after it, the one in flight is recorded,
/// and it says what it did.
async fn term_recover(backend: Backend) {
    let db = TestDb::new(backend).await;
    stalled_jobs(&db, JOBS).await;
    let state = db.dir().join("state");
    let config = config(&db, &state, "");
    let child = spawn_recover(&db, &config);
    wait_written(&db, 200).await;
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().expect("recover ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("stopped by a signal:"),
        "it says it stopped: {}",
        stdout.lines().last().unwrap_or_default()
    );
    let total = trail_and_table_agree(&db, &state).await;
    eprintln!("{backend:?}: SIGTERM stopped recover after {total} of {JOBS} writes, all recorded");
    assert!(total < JOBS, "it stopped before the end");
}

per_backend!(sigterm_mid_recover, term_recover, postgres => Postgres, sqlite => Sqlite);

/// The daemon killed mid-scan and started again: it resolves the interrupted write and
/// finishes the job; then SIGTERM mid-scan of a second batch stops at once, recorded.
async fn daemon_faults(backend: Backend) {
    let db = TestDb::new(backend).await;
    stalled_jobs(&db, JOBS).await;
    let state = db.dir().join("state");
    let config = daemon_config(&db, &state, "interval = \"1s\"", "");
    let daemon = Daemon::start(&config, &[]);
    wait_written(&db, 200).await;
    daemon.signal(libc::SIGKILL);
    drop(daemon);
    let daemon = Daemon::start(&config, &[]);
    wait_for("every job failed", Duration::from_secs(120), || async {
        (written(&db).await.len() == JOBS).then_some(())
    })
    .await;
    // A second batch, stopped by SIGTERM while it is being written.
    db.exec("DELETE FROM history").await;
    let values: Vec<String> = (JOBS + 1..=2 * JOBS)
        .map(|id| format!("({id}, 'running', {}, {})", db.ago(90.0), db.ago(45.0)))
        .collect();
    for chunk in values.chunks(500) {
        db.exec(&format!(
            "INSERT INTO jobs (id, status, created_at, updated_at) VALUES {}",
            chunk.join(", ")
        ))
        .await;
    }
    wait_written(&db, 100).await;
    assert_eq!(daemon.stop().await, 0);
    let second = written(&db).await.len();
    assert!(second < JOBS, "SIGTERM stopped the writes: {second}");
    db.exec("DELETE FROM history").await;
    // The first batch as ground truth again: the jobs failed, through both daemons.
    let failed = db
        .rows(&format!(
            "SELECT {} FROM jobs WHERE status = 'failed'",
            db.text("COUNT(*)")
        ))
        .await;
    let t = trail(&state);
    let applied = t
        .outcomes
        .values()
        .flatten()
        .filter(|(_, o)| o == "applied")
        .count();
    let unresolved = t
        .intents
        .keys()
        .filter(|id| !t.outcomes.contains_key(*id))
        .count();
    assert_eq!(unresolved, 0, "every intent has its outcome");
    let failed: usize = failed[0][0].as_deref().unwrap_or("0").parse().unwrap_or(0);
    eprintln!("{backend:?} daemon: {failed} jobs failed, {applied} applied outcomes in the trail");
    assert_eq!(applied, failed, "the trail and the table agree");
}

per_backend!(daemon_killed_and_stopped_mid_scan, daemon_faults, postgres => Postgres, sqlite => Sqlite);

/// Job ids of every firing alert a webhook accepted, digests included, and how many jobs the
/// incidents it was told of hold (their findings are told as the incident, not one by one).
fn alerted(hook: &Receiver) -> (BTreeSet<String>, usize) {
    let id = |f: &serde_json::Value| f["job_id"].as_str().unwrap_or_default().to_string();
    let mut out = BTreeSet::new();
    let mut in_incidents = 0;
    for r in hook.accepted("firing") {
        match (
            r.body["findings"].as_array(),
            r.body["incident"]["jobs"].as_u64(),
        ) {
            (Some(digest), _) => out.extend(digest.iter().map(id)),
            (None, Some(jobs)) => in_incidents += jobs as usize,
            (None, None) => {
                out.insert(id(&r.body["finding"]));
            }
        }
    }
    (out, in_incidents)
}

/// A daemon SIGKILLed in the middle of its writes: the jobs it failed before the kill are no
/// longer active after the restart, so no scan finds them again; their alerts were made
/// durable before the writes, and the restarted daemon sends every one. The jobs it fails
/// itself died together: they are told as one incident.
#[tokio::test]
async fn a_daemon_killed_after_its_writes_sends_their_alerts_after_the_restart() {
    let db = TestDb::new(Backend::Postgres).await;
    stalled_jobs(&db, JOBS).await;
    let state = db.dir().join("state");
    let hook = Receiver::start(0, &[]).await;
    let config = daemon_config(
        &db,
        &state,
        "interval = \"1s\"",
        &format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"",
            hook.url("/hook")
        ),
    );
    let daemon = Daemon::start(&config, &[]);
    wait_written(&db, 200).await;
    daemon.signal(libc::SIGKILL);
    drop(daemon);
    let before_kill = written(&db).await.len();
    let daemon = Daemon::start(&config, &[]);
    wait_for(
        "every job failed and alerted on",
        Duration::from_secs(120),
        || async {
            let failed = written(&db).await;
            let (one_by_one, in_incidents) = alerted(&hook);
            (failed.len() == JOBS && one_by_one.len() + in_incidents >= JOBS).then_some(())
        },
    )
    .await;
    let failed: BTreeSet<String> = written(&db).await.into_keys().collect();
    let (told, in_incidents) = alerted(&hook);
    let missing: Vec<&String> = failed.difference(&told).collect();
    eprintln!(
        "SIGKILL after {before_kill} writes; {} jobs failed, {} alerted one by one, {in_incidents} in incidents",
        failed.len(),
        told.len(),
    );
    assert!(
        told.len() >= before_kill,
        "every job failed before the kill is alerted on by itself"
    );
    assert_eq!(
        missing.len(),
        in_incidents,
        "failed without an alert or an incident: {:?}",
        &missing[..missing.len().min(10)]
    );
    assert_eq!(daemon.stop().await, 0);
}

/// A state directory that cannot take the audit trail: nothing is written, and `recover`
/// exits 3. Once as a path that is a file (any user), once as a full 64 KiB tmpfs (root).
#[tokio::test]
async fn an_unwritable_state_dir_writes_nothing() {
    let db = TestDb::new(Backend::Sqlite).await;
    stalled_jobs(&db, 20).await;
    let state = db.dir().join("state-file");
    std::fs::write(&state, "not a directory").unwrap();
    let config = config(&db, &state, "");
    let out = jobwarden(
        db.jobwarden_url(),
        &["recover", "--config", config.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("audit trail not writable"), "{stdout}");
    assert_eq!(written(&db).await.len(), 0, "no write without its record");
}

#[tokio::test]
async fn a_full_state_dir_writes_nothing() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "this test mounts a small tmpfs: run it as root (scripts/test does, in CI)"
    );
    let db = TestDb::new(Backend::Postgres).await;
    stalled_jobs(&db, 20).await;
    let state = db.dir().join("tmpfs");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=64k",
            "tmpfs",
            state.to_str().unwrap(),
        ])
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.clone());
    // Fill it.
    let _ = std::fs::write(state.join("filler"), vec![b'x'; 128 * 1024]);
    let config = config(&db, &state, "");
    let out = jobwarden(
        db.jobwarden_url(),
        &["recover", "--config", config.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert_eq!(written(&db).await.len(), 0, "no write without its record");
}

/// The daemon with an unwritable trail: writes held back, counted, `/readyz` 503 with why.
#[tokio::test]
async fn the_daemon_with_an_unwritable_trail_is_not_ready() {
    let db = TestDb::new(Backend::Sqlite).await;
    stalled_jobs(&db, 5).await;
    let state = db.dir().join("state-file");
    std::fs::write(&state, "not a directory").unwrap();
    let config = daemon_config(&db, &state, "interval = \"500ms\"", "");
    let daemon = Daemon::start(&config, &[]);
    let body = wait_for(
        "readyz 503 for the trail",
        Duration::from_secs(20),
        || async {
            get(&daemon.url("/readyz"))
                .await
                .filter(|(code, body)| *code == 503 && body.contains("audit trail not writable"))
                .map(|(_, body)| body)
        },
    )
    .await;
    assert!(body.contains("\"ready\":false"), "{body}");
    let (_, metrics) = get(&daemon.url("/metrics")).await.expect("metrics");
    assert!(metric(&metrics, "jobwarden_audit_errors_total") >= Some(1.0));
    assert_eq!(written(&db).await.len(), 0);
    assert_eq!(daemon.stop().await, 0);
}

/// `where` cannot smuggle a statement in (SQLite runs every statement of a string), and a
/// scan cannot write even through a function `where` calls (PostgreSQL).
#[tokio::test]
async fn a_where_cannot_write() {
    let db = TestDb::new(Backend::Sqlite).await;
    stalled_jobs(&db, 3).await;
    let config = TestConfig::new(db.jobwarden_url())
        .jobs("where = \"1=1); DROP TABLE jobs; --\"")
        .write(db.dir().join("jw.toml"));
    for args in [&["validate", "--connect"][..], &["check"][..]] {
        let mut all = args.to_vec();
        all.extend(["--config", config.to_str().unwrap()]);
        let out = jobwarden(db.jobwarden_url(), &all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("`jobs.where`") && err.contains("one SQL expression"),
            "{err}"
        );
    }
    assert_eq!(
        db.rows(&format!("SELECT {} FROM jobs", db.text("COUNT(*)")))
            .await[0][0]
            .as_deref(),
        Some("3"),
        "the table survives"
    );

    let pg = TestDb::new(Backend::Postgres).await;
    stalled_jobs(&pg, 3).await;
    pg.exec("CREATE TABLE side_effects (at timestamptz DEFAULT now())")
        .await;
    pg.exec(
        "CREATE FUNCTION sneaky() RETURNS boolean AS $$ INSERT INTO side_effects DEFAULT VALUES; SELECT true $$ LANGUAGE sql",
    )
    .await;
    let config = TestConfig::new(pg.jobwarden_url())
        .jobs("where = \"sneaky()\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .state(&pg.dir().join("state"))
        .write(pg.dir().join("jw.toml"));
    for args in [
        &["check"][..],
        &["recover", "--dry-run"][..],
        &["validate", "--connect"][..],
    ] {
        let mut all = args.to_vec();
        all.extend(["--config", config.to_str().unwrap()]);
        let out = jobwarden(pg.jobwarden_url(), &all);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(
            text.contains("`jobs.where`") && text.contains("read-only"),
            "{text}"
        );
    }
    assert!(
        pg.rows("SELECT at FROM side_effects").await.is_empty(),
        "no row written by a scan"
    );
}

/// Config paths that are not regular files are refused at once, naming the path.
#[test]
fn a_fifo_or_a_device_is_not_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("jw.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for path in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
        let out = jobwarden(
            "sqlite://x.db",
            &["validate", "--config", path.to_str().unwrap()],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", path.display());
        assert!(
            err.contains(&path.display().to_string()) && err.contains("not a regular file"),
            "{err}"
        );
    }
}

/// A TLS certificate or key that is a FIFO or a device is refused at once, by `validate` and
/// by `run` (it used to block the start on the FIFO, or read `/dev/zero` until memory ran
/// out), naming the file.
#[test]
fn a_fifo_or_a_device_is_not_a_tls_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("tls.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(dir.path().join("tls.crt"), made.cert.pem()).expect("cert");
    std::fs::write(dir.path().join("tls.key"), made.key_pair.serialize_pem()).expect("key");
    for (cert, key, named) in [
        ("tls.fifo", "tls.key", "tls.fifo"),
        ("tls.crt", "/dev/zero", "/dev/zero"),
    ] {
        let config = TestConfig::new("sqlite://x.db")
            .heartbeat_rule("hb", "30m", "")
            .section(&format!(
                "[http]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\""
            ))
            .write(dir.path().join("jw.toml"));
        for command in ["validate", "run"] {
            let log = dir.path().join("out.log");
            let file = std::fs::File::create(&log).expect("log");
            let mut child = Command::new(env!("CARGO_BIN_EXE_jobwarden"))
                .args([command, "--config", config.to_str().unwrap()])
                .stdout(file.try_clone().expect("log"))
                .stderr(file)
                .spawn()
                .expect("spawn");
            let deadline = std::time::SystemTime::now() + Duration::from_secs(10);
            let status = loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    break Some(status);
                }
                if std::time::SystemTime::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            let status = status.unwrap_or_else(|| panic!("{command} hung on {named}: {err}"));
            assert_eq!(status.code(), Some(2), "{command} {named}: {err}");
            assert!(
                err.contains(named) && err.contains("not a regular file"),
                "{command}: {err}"
            );
        }
    }
}

/// SIGHUP with a config that cannot scan (a column the table lacks): the old config stays and
/// the daemon goes on scanning; one clear line says why.
#[tokio::test]
async fn a_reload_that_cannot_scan_keeps_the_old_config() {
    let db = TestDb::new(Backend::Sqlite).await;
    stalled_jobs(&db, 1).await;
    let port = 0;
    let good = TestConfig::new(db.jobwarden_url())
        .top("interval = \"300ms\"\ndry_run = true")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .state(&db.dir().join("state"))
        .http(port);
    let config = good.write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    wait_for("ready", Duration::from_secs(20), || async {
        get(&daemon.url("/readyz")).await.filter(|(c, _)| *c == 200)
    })
    .await;
    std::fs::write(
        &config,
        good.text()
            .replace("heartbeat_at = \"updated_at\"", "heartbeat_at = \"beat\""),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    wait_for("the refusal logged", Duration::from_secs(20), || async {
        daemon
            .log()
            .contains("config reload refused, keeping the old config")
            .then_some(())
    })
    .await;
    let scans = |body: &str| metric(body, "jobwarden_scans_total").unwrap_or(0.0);
    let (_, before) = get(&daemon.url("/metrics")).await.expect("metrics");
    wait_for("scans go on", Duration::from_secs(20), || async {
        get(&daemon.url("/metrics"))
            .await
            .filter(|(_, after)| scans(after) >= scans(&before) + 2.0)
    })
    .await;
    let (code, _) = get(&daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(code, 200, "{}", daemon.log());
    assert_eq!(daemon.stop().await, 0);
}

/// An application's write transaction holding the SQLite table (`BEGIN IMMEDIATE` and an
/// update, kept open) does not stop the scans: each write waits at most 1 s for the lock and
/// a scan's writes 3 s in all, the rest are held back (`limited`, "another writer holds a
/// lock") and tried again, so scans keep their 4 s schedule and `/readyz` stays 200; once the
/// lock goes, the writes are made.
#[tokio::test]
async fn a_held_sqlite_lock_does_not_stop_the_scans() {
    let db = TestDb::new(Backend::Sqlite).await;
    stalled_jobs(&db, 10).await;
    let state = db.dir().join("state");
    let config = TestConfig::new(db.jobwarden_url())
        .top("interval = \"4s\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section("[safety]\nmax_stuck_fraction = 1.0\nstartup_grace = \"0s\"\nconfirm_scans = 1")
        .state(&state)
        .http(0)
        .write(db.dir().join("jw.toml"));
    // An application's write transaction, taken before the daemon starts and kept open.
    let mut lock = db.pool.acquire().await.expect("connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *lock)
        .await
        .expect("take the write lock");
    sqlx::query("UPDATE jobs SET updated_at = updated_at WHERE id = 10")
        .execute(&mut *lock)
        .await
        .expect("an update in the transaction");
    let daemon = Daemon::start(&config, &[]);
    let scans = || async {
        get(&daemon.url("/metrics"))
            .await
            .and_then(|(_, m)| metric(&m, "jobwarden_scans_total"))
    };
    let first = wait_for("a first scan", Duration::from_secs(20), || async {
        scans().await.filter(|n| *n >= 1.0)
    })
    .await;
    let since = tokio::time::Instant::now();
    wait_for(
        "three more scans while the lock is held",
        Duration::from_secs(20),
        || async { scans().await.filter(|n| *n >= first + 3.0) },
    )
    .await;
    let took = since.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "three scans on a 4 s schedule took {took:?}"
    );
    let (code, body) = get(&daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(code, 200, "{body}");
    let (_, findings) = get(&daemon.url("/api/v1/findings"))
        .await
        .expect("findings");
    let report: serde_json::Value = serde_json::from_str(&findings).expect("json");
    let outcomes: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(outcomes, vec!["limited"; 10], "{findings}");
    let page = get(&daemon.url("/")).await.expect("status page").1;
    assert!(page.contains("another writer holds a lock"), "{page}");
    let metrics = get(&daemon.url("/metrics")).await.expect("metrics").1;
    assert!(
        metric(
            &metrics,
            "jobwarden_actions_total{action=\"fail\",outcome=\"limited\"}"
        )
        .unwrap_or(0.0)
            >= 10.0,
        "{metrics}"
    );
    assert_eq!(written_count(&db).await, 0);

    sqlx::query("ROLLBACK")
        .execute(&mut *lock)
        .await
        .expect("release");
    drop(lock);
    wait_for(
        "every job failed once the lock is gone",
        Duration::from_secs(20),
        || async { (written_count(&db).await == 10).then_some(()) },
    )
    .await;
    // Every write that gave up on the lock is on record as not written.
    let trail = std::fs::read_to_string(state.join("audit.jsonl")).expect("audit trail");
    assert!(trail.contains("\"not_written\""), "{trail}");
    assert_eq!(daemon.stop().await, 0);
}

/// A dry-run daemon says and audits each would-be write once, however many scans see it, and
/// counts it every scan.
#[tokio::test]
async fn a_dry_run_daemon_says_each_write_once() {
    let db = TestDb::new(Backend::Sqlite).await;
    stalled_jobs(&db, 3).await;
    let state = db.dir().join("state");
    let config = daemon_config(&db, &state, "interval = \"200ms\"\ndry_run = true", "");
    let daemon = Daemon::start(&config, &[]);
    let dry = |body: &str| {
        metric(
            body,
            "jobwarden_actions_total{action=\"fail\",outcome=\"dry_run\"}",
        )
        .unwrap_or(0.0)
    };
    wait_for(
        "many scans of would-be writes",
        Duration::from_secs(30),
        || async {
            get(&daemon.url("/metrics"))
                .await
                .filter(|(_, body)| dry(body) >= 15.0)
        },
    )
    .await;
    let log = daemon.log();
    assert_eq!(daemon.stop().await, 0);
    let lines = std::fs::read_to_string(state.join("audit.jsonl")).unwrap_or_default();
    assert_eq!(
        lines.lines().count(),
        3,
        "one audit line per would-be write: {lines}"
    );
    assert_eq!(
        log.matches("fail job: running -> failed").count(),
        3,
        "{log}"
    );
    assert_eq!(written(&db).await.len(), 0);
}

/// Failing many jobs that died together: the webhook hears of them as one incident, opened
/// and then ended saying jobwarden wrote them, and nothing is dropped even with a small queue.
/// (Many findings outside an incident go out as digests: `tests/alerts.rs`.)
#[tokio::test]
async fn a_mass_failure_resolves_every_alert() {
    let db = TestDb::new(Backend::Sqlite).await;
    stalled_jobs(&db, 60).await;
    let hook = common::Receiver::start(0, &[]).await;
    let state = db.dir().join("state");
    let config = daemon_config(
        &db,
        &state,
        "interval = \"300ms\"",
        &format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\nqueue = 2",
            hook.url("/hook")
        ),
    );
    let daemon = Daemon::start(&config, &[]);
    let ended = wait_for("the incident ended", Duration::from_secs(60), || async {
        hook.accepted("resolved").into_iter().next()
    })
    .await;
    assert_eq!(written(&db).await.len(), 60);
    let (_, metrics) = get(&daemon.url("/metrics")).await.expect("metrics");
    assert_eq!(daemon.stop().await, 0);
    let fired = hook.accepted("firing");
    assert_eq!(
        (fired.len(), hook.accepted("resolved").len()),
        (1, 1),
        "{:?}",
        hook.got()
    );
    assert_eq!(fired[0].body["incident"]["jobs"], 60);
    assert_eq!(ended.body["incident"]["jobs"], 60);
    assert_eq!(ended.body["incident"]["ending"], "60 written by jobwarden");
    assert_eq!(
        metric(&metrics, "jobwarden_alerts_dropped_total{sink=\"webhook\"}"),
        Some(0.0)
    );
}
