//! The report folders, with real files in temporary folders: the daemon follows real notify
//! events (a file created, grown, renamed from `.part` to its final name, deleted) and the
//! forced polling fallback; `check` ties files to rows of the Supabase-shaped example on
//! PostgreSQL, MariaDB and SQLite; nothing under a root is ever written.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{get, jobwarden_json, metric, wait_for, Backend, Daemon, TestConfig, TestDb};

const WAIT: Duration = Duration::from_secs(20);

fn age(path: &Path, minutes: f64) {
    let when = SystemTime::now() - Duration::from_secs_f64(minutes * 60.0);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .expect("set mtime");
}

fn write(path: &Path, text: &str, minutes_ago: f64) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    age(path, minutes_ago);
}

/// Every path under a folder with its size and mtime: to prove nothing was touched.
fn tree(root: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), m.len(), m.modified().expect("mtime")));
        }
    }
    out.sort();
    out
}

async fn daemon_config(db: &TestDb, root: &Path, watch: &str) -> (PathBuf, u16) {
    db.small_jobs_table().await;
    db.running(1, 120.0, 60.0).await;
    let port = 0;
    let path = TestConfig::new(&db.url)
        .top(r#"interval = "200ms""#)
        .section(&format!(
            "[[artifacts]]\nname = \"reports\"\nroot = \"{}\"\npattern = \"{{job_id}}/**\"\n\
             partial = [\"*.part\"]\nsettle = \"1s\"\nwatch = \"{watch}\"",
            root.display()
        ))
        .http(port)
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"));
    (path, port)
}

async fn artifacts_in_state(daemon: &Daemon, state: &str, n: f64) {
    let prefix = format!("jobwarden_artifacts{{root=\"reports\",state=\"{state}\"}}");
    wait_for(&format!("{n} {state} files"), WAIT, || async {
        get(&daemon.url("/metrics"))
            .await
            .filter(|(_, m)| metric(m, &prefix) == Some(n))
    })
    .await;
}

async fn finding_kinds(daemon: &Daemon) -> Vec<String> {
    let (_, body) = get(&daemon.url("/api/v1/findings"))
        .await
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["kind"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn follows_a_report_through_its_life(watch: &str) {
    let db = TestDb::new(Backend::Sqlite).await;
    let root = db.dir().join("reports");
    std::fs::create_dir_all(&root).expect("root");
    let (config, _) = daemon_config(&db, &root, watch).await;
    let daemon = Daemon::start(&config, &[]);
    let mode = if watch == "poll" { "poll" } else { "events" };
    wait_for("watch mode", WAIT, || async {
        get(&daemon.url("/metrics")).await.filter(|(_, m)| {
            metric(
                m,
                &format!("jobwarden_artifact_watch_mode{{mode=\"{mode}\",root=\"reports\"}}"),
            ) == Some(1.0)
        })
    })
    .await;

    // Created, then grown, while the writer works: partial, no finding yet.
    let part = root.join("1/report.pdf.part");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, "half").unwrap();
    artifacts_in_state(&daemon, "partial", 1.0).await;
    std::fs::write(&part, "half and more").unwrap();
    // Renamed to its final name: the report is written, but the row still says running.
    std::fs::rename(&part, root.join("1/report.pdf")).unwrap();
    artifacts_in_state(&daemon, "partial", 0.0).await;
    wait_for(
        "unreported_artifact once the file settles",
        WAIT,
        || async {
            finding_kinds(&daemon)
                .await
                .contains(&"unreported_artifact".to_string())
                .then_some(())
        },
    )
    .await;
    let (_, body) = get(&daemon.url("/api/v1/findings")).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "unreported_artifact")
        .unwrap()
        .clone();
    assert_eq!(f["job_id"], "1");
    assert_eq!(
        f["artifacts"],
        serde_json::json!([{"path": "1/report.pdf", "size": 13}])
    );
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .ends_with("status still running"),
        "{f}"
    );

    // Deleted: the finding goes.
    std::fs::remove_file(root.join("1/report.pdf")).unwrap();
    wait_for("the finding cleared", WAIT, || async {
        (!finding_kinds(&daemon)
            .await
            .contains(&"unreported_artifact".to_string()))
        .then_some(())
    })
    .await;
    artifacts_in_state(&daemon, "settled", 0.0).await;
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn notify_events_follow_a_report_through_its_life() {
    follows_a_report_through_its_life("auto").await;
}

#[tokio::test]
async fn forced_polling_follows_it_too() {
    follows_a_report_through_its_life("poll").await;
}

#[tokio::test]
async fn a_root_created_later_is_picked_up() {
    let db = TestDb::new(Backend::Sqlite).await;
    let root = db.dir().join("later");
    let (config, _) = daemon_config(&db, &root, "auto").await;
    let daemon = Daemon::start(&config, &[]);
    wait_for("scans go on without the root", WAIT, || async {
        get(&daemon.url("/readyz")).await.filter(|r| r.0 == 200)
    })
    .await;
    assert!(
        daemon
            .log()
            .contains("the artifact root does not exist (yet)"),
        "{}",
        daemon.log()
    );
    write(&root.join("1/report.pdf"), "done", 5.0);
    wait_for(
        "the report seen once the root exists",
        Duration::from_secs(30),
        || async {
            finding_kinds(&daemon)
                .await
                .contains(&"unreported_artifact".to_string())
                .then_some(())
        },
    )
    .await;
    assert_eq!(daemon.stop().await, 0);
}

const A1: &str = "a0000000-0000-0000-0000-000000000001";
const A2: &str = "a0000000-0000-0000-0000-000000000002";
const A3: &str = "a0000000-0000-0000-0000-000000000003";
const A4: &str = "a0000000-0000-0000-0000-000000000004";
const UNKNOWN: &str = "f0000000-0000-0000-0000-00000000000f";

/// The Supabase research example: reports exist but the row says running, a `.part` left by a
/// killed writer, output for an unknown id, a completed job without its report.
async fn research_reports(backend: Backend) {
    let db = TestDb::new(backend).await;
    let id = if backend == Backend::Postgres {
        "uuid"
    } else {
        db.ty("text")
    };
    db.exec(&format!(
        "CREATE TABLE research_jobs (id {id} PRIMARY KEY, status {t}, created_at {ts}, updated_at {ts}, \
         completed_at {ts}, error {long}, metadata {json}, main_job_id {id})",
        t = db.ty("text"),
        ts = db.ty("ts"),
        long = db.ty("longtext"),
        json = db.ty("json")
    ))
    .await;
    for (job, status, beat, completed) in [
        (A1, "running", 45.0, None),
        (A2, "running", 1.0, None),
        (A3, "completed", 200.0, Some(180.0)),
        (A4, "completed", 200.0, Some(180.0)),
    ] {
        db.exec(&format!(
            "INSERT INTO research_jobs (id, status, created_at, updated_at, completed_at, metadata) \
             VALUES ('{job}', '{status}', {}, {}, {}, '{{\"steps\": []}}')",
            db.ago(300.0),
            db.ago(beat),
            completed.map_or("NULL".to_string(), |c| db.ago(c))
        ))
        .await;
    }
    let edits: &[(&str, &str)] = match backend {
        Backend::Postgres => &[],
        _ => &[(
            "table = \"public.research_jobs\"",
            "table = \"research_jobs\"",
        )],
    };
    let config = db.config("supabase-research-jobs.toml", edits);
    let logs = db.dir().join("volumes/logs");
    // A1: the report was written 40 minutes ago, after its last heartbeat (45 minutes ago).
    write(&logs.join(A1).join("report.pdf"), "%PDF report", 40.0);
    write(&logs.join(A1).join("insights.md"), "# insights", 41.0);
    // A2: still writing, and beating: nothing to say.
    write(&logs.join(A2).join("draft.md.tmp"), "half", 0.1);
    // A3: completed, with its report; A4: completed without it, and a .part left behind.
    write(&logs.join(A3).join("report.pdf"), "%PDF", 185.0);
    write(&logs.join(A4).join("summary.md.part"), "half", 170.0);
    // Output for a job the table never had, and a folder that cannot be an id at all.
    write(&logs.join(UNKNOWN).join("report.pdf"), "%PDF", 30.0);
    write(&logs.join("not-a-job-id").join("report.pdf"), "%PDF", 30.0);
    let before = tree(&logs);

    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!(code, 1, "{report}");
    let mut got: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "reports")
        .map(|f| {
            (
                f["job_id"].as_str().unwrap().to_string(),
                f["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let mut expected: Vec<(String, String)> = vec![
        (A1.into(), "unreported_artifact".into()),
        (A4.into(), "incomplete_artifact".into()),
        (A4.into(), "missing_artifact".into()),
        (UNKNOWN.into(), "orphan_artifact".into()),
    ];
    if backend != Backend::Postgres {
        // Only a uuid column rules the odd folder out; elsewhere it is one more unknown id.
        expected.push(("not-a-job-id".into(), "orphan_artifact".into()));
    }
    expected.sort();
    assert_eq!(got, expected, "{report}");
    let unreported = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "unreported_artifact")
        .unwrap();
    assert_eq!(
        unreported["message"],
        "report written 40m ago, status still running"
    );
    assert_eq!(unreported["artifacts"].as_array().map(Vec::len), Some(2));
    let stalled = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "stalled" && f["job_id"] == A1)
        .unwrap();
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .starts_with("report written 40m ago, status still running; no heartbeat"),
        "{stalled}"
    );
    let missing = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "missing_artifact")
        .unwrap();
    assert_eq!(missing["status"], "completed");
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .starts_with("completed 3h ago without report.pdf"),
        "{missing}"
    );

    // recover acts on rows only: the folder is exactly as it was.
    let _ = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(tree(&logs), before, "jobwarden wrote under the root");
}
per_backend!(research_reports_example, research_reports);

#[tokio::test]
async fn a_missing_root_warns_and_strict_makes_it_an_error() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.exec("CREATE TABLE research_jobs (id TEXT PRIMARY KEY, status TEXT, created_at TEXT, updated_at TEXT, completed_at TEXT, error TEXT, metadata TEXT, main_job_id TEXT)")
        .await;
    let config = db.config(
        "supabase-research-jobs.toml",
        &[(
            "table = \"public.research_jobs\"",
            "table = \"research_jobs\"",
        )],
    );
    let (code, _) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!(code, 0);
    let out = common::jobwarden(
        &db.url,
        &["check", "--strict", "--config", config.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} (reports, given as \"volumes/logs\", relative to the config file's folder) does not exist",
            db.dir().join("volumes/logs").display()
        )),
        "{err}"
    );
}

/// Links in the root to a folder outside it and to `/etc` are never followed, in events mode:
/// no file outside the root is listed, watched, or tied to a job.
#[tokio::test]
async fn symlinks_are_never_followed_in_events_mode() {
    let db = TestDb::new(Backend::Sqlite).await;
    let root = db.dir().join("reports");
    let outside = db.dir().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    write(&outside.join("report.pdf"), "not job 1's", 30.0);
    std::os::unix::fs::symlink(&outside, root.join("1")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("2")).unwrap();
    let (config, _) = daemon_config(&db, &root, "auto").await;
    let daemon = Daemon::start(&config, &[]);
    let skipped = wait_for("the links skipped", WAIT, || async {
        get(&daemon.url("/metrics")).await.and_then(|(_, m)| {
            metric(
                &m,
                "jobwarden_artifact_skipped_total{reason=\"symlink\",root=\"reports\"}",
            )
            .filter(|n| *n >= 2.0)
        })
    })
    .await;
    // A file written behind the link after the watch was placed: no event may reach it.
    write(&outside.join("later.pdf"), "still not job 1's", 5.0);
    let scans = |m: &str| metric(m, "jobwarden_scans_total").unwrap_or(0.0);
    let (_, before) = get(&daemon.url("/metrics")).await.expect("metrics");
    wait_for("more scans", WAIT, || async {
        get(&daemon.url("/metrics"))
            .await
            .filter(|(_, m)| scans(m) >= scans(&before) + 5.0)
    })
    .await;
    let (_, metrics) = get(&daemon.url("/metrics")).await.expect("metrics");
    for state in ["settled", "writing", "partial"] {
        let line = format!("jobwarden_artifacts{{root=\"reports\",state=\"{state}\"}}");
        assert_eq!(metric(&metrics, &line), Some(0.0), "{state}: {metrics}");
    }
    assert!(
        !finding_kinds(&daemon)
            .await
            .iter()
            .any(|k| k.ends_with("artifact")),
        "files behind a link are no job's artifacts"
    );
    assert_eq!(daemon.stop().await, 0);
    assert!(skipped >= 2.0);
}
