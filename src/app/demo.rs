//! `jobwarden demo`: a throwaway SQLite jobs table with a job in every state, a report folder,
//! and a config for
//! it, then `check` on it. A newcomer sees real findings with no setup, and can go on with
//! the printed commands against the same files.

use std::io::Write;
use std::path::{Path, PathBuf};

use sqlx::any::AnyPoolOptions;

use crate::app::commands::{self, Error};
use crate::config;

/// The demo's config, with `{url}` replaced by the database's URL.
const CONFIG: &str = r#"# jobwarden demo config: a research_jobs table as a Supabase app keeps it.
environment = "development"

[database]
url = "{url}"

[jobs]
table = "research_jobs"
heartbeat_at = "updated_at"        # the app touches updated_at while it works
progress = "metadata.steps"        # a JSON array that grows as steps finish
phase = "metadata.phase"
finished_at = "completed_at"
error = "error"
parent_id = "main_job_id"
pid = "pid"
host = "hostname"

[jobs.statuses]
pending = ["pending"]
running = ["running"]
succeeded = ["completed"]
failed = ["failed"]
cancelled = ["cancelled"]

[[rules]]
name = "stalled-heartbeat"
statuses = ["running"]
signal = "heartbeat"
after = { development = "30m", production = "1h" }
action = "fail"
severity = "critical"

[[rules]]
name = "stalled-progress"
statuses = ["running"]
signal = "progress"
after = "15m"
action = "alert"
severity = "warning"

[[rules]]
name = "pending-too-long"
statuses = ["pending"]
signal = "created"
after = "1h"

# The report folder: one folder per job, report.pdf when done, *.part while writing.
[[artifacts]]
name = "reports"
root = "reports"
pattern = "{job_id}/**"
partial = ["*.part"]
settle = "2m"
required = ["report.pdf"]

# The daemon on this config fails nothing by itself for its first hour (its startup grace), so
# the stuck jobs wait for you on the console. To let it fail them itself, as it would in
# production, set startup_grace = "0s" (or remove these two lines) and restart it.
[safety]
startup_grace = "1h"

# jobwarden's own files (the audit trail, what it remembers of each job) stay in the demo folder.
[state]
dir = "state"

# The console's buttons (mark as failed, re-queue, snooze) ask for this token once. A real
# deployment keeps it out of the file: token = "${JOBWARDEN_TOKEN}".
[http]
token = "demo-console-token"
"#;

/// Rows: id, status, created (minutes ago, NULL for none), updated (minutes ago), phase,
/// steps, parent, pid.
struct Row {
    id: i64,
    status: &'static str,
    created: Option<f64>,
    updated: Option<f64>,
    phase: &'static str,
    steps: &'static [&'static str],
    parent: Option<i64>,
    pid: Option<i64>,
}

const fn row(id: i64, status: &'static str, created: Option<f64>, updated: Option<f64>) -> Row {
    Row {
        id,
        status,
        created,
        updated,
        phase: "designing",
        steps: &["plan"],
        parent: None,
        pid: None,
    }
}

/// Makes the demo database and config under a new temporary folder, runs `check` on it, and
/// leaves the files for the user. Returns `check`'s findings exit code as 0: the findings are
/// the point of the demo.
pub async fn demo(format: commands::Format, out: &mut dyn Write) -> Result<u8, Error> {
    let dir = tempfile::Builder::new()
        .prefix("jobwarden-demo-")
        .tempdir()?
        .keep();
    let config_path = build(&dir).await?;
    let config = config::load(&config_path, None, &config::env_lookup)?;
    if format == commands::Format::Human {
        writeln!(
            out,
            "jobwarden demo: a SQLite jobs table with a job in every state"
        )?;
        writeln!(out, "  database: {}", dir.join("demo.db").display())?;
        writeln!(out, "  reports:  {}", dir.join("reports").display())?;
        writeln!(out, "  config:   {}\n", config_path.display())?;
    }
    commands::check(&config, commands::Strictness::Lenient, format, out).await?;
    if format == commands::Format::Human {
        writeln!(
            out,
            "\nNext: see what recover would write, and change nothing:"
        )?;
        writeln!(
            out,
            "  jobwarden recover --dry-run --config {}",
            config_path.display()
        )?;
        writeln!(
            out,
            "or watch them in a browser (the console at http://{}/):",
            config.http.listen
        )?;
        writeln!(out, "  jobwarden run --config {}", config_path.display())?;
        writeln!(
            out,
            "(its buttons ask for the token in that config: demo-console-token)"
        )?;
    }
    Ok(commands::EXIT_OK)
}

/// Writes `demo.db` and `jobwarden.toml` into `dir`; returns the config's path.
pub async fn build(dir: &Path) -> Result<PathBuf, Error> {
    sqlx::any::install_default_drivers();
    let db = dir.join("demo.db");
    let url = format!("sqlite://{}", db.display());
    let unavailable = |e: sqlx::Error| {
        Error::Store(crate::adapters::store::StoreError::Query {
            what: "making the demo database",
            message: e.to_string(),
        })
    };
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{url}?mode=rwc"))
        .await
        .map_err(unavailable)?;
    sqlx::query(
        "CREATE TABLE research_jobs (
            id INTEGER PRIMARY KEY, status TEXT NOT NULL, created_at TEXT, updated_at TEXT,
            completed_at TEXT, error TEXT, metadata TEXT, main_job_id INTEGER,
            pid INTEGER, hostname TEXT)",
    )
    .execute(&pool)
    .await
    .map_err(unavailable)?;
    sqlx::query("CREATE INDEX research_jobs_status_idx ON research_jobs (status)")
        .execute(&pool)
        .await
        .map_err(unavailable)?;

    // A process that has exited: its pid is free, so the job that claims it is dead.
    let dead_pid = match std::process::Command::new("true").spawn() {
        Ok(mut child) => {
            let pid = i64::from(child.id());
            child.wait()?;
            Some(pid)
        }
        Err(_) => None,
    };
    let rows = [
        // Healthy: beating, and progressing.
        Row {
            steps: &["plan", "search"],
            ..row(1, "running", Some(20.0), Some(1.0))
        },
        // Stalled: no heartbeat for 45 minutes.
        Row {
            phase: "assessing",
            steps: &["plan", "search", "draft"],
            ..row(2, "running", Some(120.0), Some(45.0))
        },
        // Still beating 20 minutes ago, but its steps have not moved since.
        row(3, "running", Some(50.0), Some(20.0)),
        // Pending for three hours: overdue.
        row(4, "pending", Some(180.0), None),
        // Pending for five minutes: fine.
        row(5, "pending", Some(5.0), None),
        // Its worker process on this host has exited.
        Row {
            pid: dead_pid,
            ..row(6, "running", Some(10.0), Some(0.5))
        },
        // A failed parent with a child still running.
        row(7, "failed", Some(30.0), Some(25.0)),
        Row {
            parent: Some(7),
            ..row(8, "running", Some(28.0), Some(1.0))
        },
        // Finished jobs: never scanned.
        row(9, "completed", Some(300.0), Some(250.0)),
        row(10, "cancelled", Some(300.0), Some(290.0)),
        // A row whose creation time the app wrote as text no clock can read (below): a
        // warning, never a failure.
        row(11, "running", None, None),
    ];
    let host = crate::adapters::process::hostname();
    for r in &rows {
        let ago = |m: Option<f64>| m.map(|m| format!("-{} seconds", (m * 60.0) as i64));
        let metadata = serde_json::json!({"phase": r.phase, "steps": r.steps}).to_string();
        sqlx::query(
            "INSERT INTO research_jobs (id, status, created_at, updated_at, metadata, main_job_id, pid, hostname)
             VALUES (?, ?, datetime('now', ?), datetime('now', ?), ?, ?, ?, ?)",
        )
        .bind(r.id)
        .bind(r.status)
        .bind(ago(r.created))
        .bind(ago(r.updated))
        .bind(metadata)
        .bind(r.parent)
        .bind(r.pid)
        .bind(r.pid.map(|_| host.clone()))
        .execute(&pool)
        .await
        .map_err(unavailable)?;
    }
    for fix in [
        "UPDATE research_jobs SET completed_at = datetime('now', '-250 minutes') WHERE id = 9",
        "UPDATE research_jobs SET created_at = 'yesterday' WHERE id = 11",
    ] {
        sqlx::query(fix).execute(&pool).await.map_err(unavailable)?;
    }
    pool.close().await;
    // The report folder: job 2 finished its report after its last heartbeat (and never said
    // so), job 3 left a half-written file, job 9 completed without its report, and folder 999
    // belongs to no job at all.
    let reports = dir.join("reports");
    for (path, minutes_ago) in [
        ("1/notes.md", 1.0),
        ("2/report.pdf", 40.0),
        ("3/draft.md.part", 30.0),
        ("999/report.pdf", 90.0),
    ] {
        let file = reports.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, format!("demo output of {path}\n"))?;
        let when =
            std::time::SystemTime::now() - std::time::Duration::from_secs_f64(minutes_ago * 60.0);
        std::fs::File::options()
            .write(true)
            .open(&file)?
            .set_modified(when)?;
    }
    let config_path = dir.join("jobwarden.toml");
    let toml_url = url.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(&config_path, CONFIG.replace("{url}", &toml_url))?;
    Ok(config_path)
}
