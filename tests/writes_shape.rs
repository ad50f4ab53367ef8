//! Writes in the queue library's own shape (`[writes.fail]`, `[writes.requeue]`), through the
//! real binary on real PostgreSQL, MariaDB and SQLite: Celery's exception description as
//! JSON, graphile-worker's unlock (`locked_at`/`locked_by` set to NULL), typed values cast to
//! their columns, pg-boss's `jsonb` output (as `jobs.error` and as `{ json = ... }`), the
//! dry run showing every value, bytes (`{ pickle = ... }`, JSON) in binary columns, and a
//! rejected statement naming its key and line.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{jobwarden, jobwarden_json, wait_for, Backend, Daemon, TestConfig, TestDb};

/// The column types this file needs beyond `TestDb::ty`.
fn ty(db: &TestDb, kind: &str) -> &'static str {
    match (kind, db.backend) {
        ("float", Backend::Postgres) => "double precision",
        ("float", Backend::MySql) => "DOUBLE",
        ("float", Backend::Sqlite) => "REAL",
        ("bool", Backend::Sqlite) => "INTEGER",
        ("bool", _) => "BOOLEAN",
        (k, _) => db.ty(k),
    }
}

/// A table shaped like a queue library's: the result, an owner lock, typed extras.
async fn library_table(db: &TestDb, locked_by_null: &str) {
    db.exec(&format!(
        "CREATE TABLE jobs (id {t} PRIMARY KEY, status {t} NOT NULL, created_at {ts}, \
         updated_at {ts}, completed_at {ts}, error {long}, result {json}, note {long}, \
         done_at {ts}, tries {int}, score {float}, flagged {bool}, locked_at {ts}, \
         locked_by {t} {locked_by_null})",
        t = db.ty("text"),
        ts = db.ty("ts"),
        long = db.ty("longtext"),
        json = db.ty("json"),
        int = db.ty("int"),
        float = ty(db, "float"),
        bool = ty(db, "bool"),
    ))
    .await;
    for (id, status, beat) in [
        ("dead", "running", 45.0),
        ("held", "locked", 45.0),
        ("live", "running", 0.0),
    ] {
        db.exec(&format!(
            "INSERT INTO jobs (id, status, created_at, updated_at, locked_at, locked_by) VALUES \
             ('{id}', '{status}', {}, {}, {}, 'worker-7')",
            db.ago(120.0),
            db.ago(beat),
            db.ago(beat),
        ))
        .await;
    }
}

const WRITES: &str = r#"[writes.fail]
result = { json = { exc_type = "WorkerLostError", exc_message = ["{reason}"] } }
note = "{rule} gave up on {job_id}"
done_at = "{now}"
tries = 7
score = 0.5
flagged = true

[writes.requeue]
locked_at = { null = true }
locked_by = { null = true }"#;

fn library_config(db: &TestDb, writes: &str) -> PathBuf {
    TestConfig::new(db.jobwarden_url())
        .jobs("finished_at = \"completed_at\"\nerror = \"error\"")
        .statuses(
            "pending = [\"queued\"]\nrunning = [\"running\", \"locked\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]",
        )
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section(
            "[[rules]]\nname = \"unlock\"\nstatuses = [\"locked\"]\nsignal = \"heartbeat\"\nafter = \"30m\"\naction = \"requeue\"",
        )
        .section(writes)
        .state(&db.dir().join("state"))
        .write(db.dir().join("writes.toml"))
}

fn run(db: &TestDb, config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().expect("utf-8 path")]);
    let out = jobwarden(db.jobwarden_url(), &all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One row's columns, as text.
async fn row(db: &TestDb, id: &str, columns: &[&str]) -> Vec<Option<String>> {
    let select = columns
        .iter()
        .map(|c| db.text(&db.quote(c)))
        .collect::<Vec<_>>()
        .join(", ");
    db.rows(&format!("SELECT {select} FROM jobs WHERE id = '{id}'"))
        .await
        .remove(0)
}

/// The 1-based line of the first line of `config` holding `needle`.
fn line_of(config: &Path, needle: &str) -> usize {
    std::fs::read_to_string(config)
        .expect("config")
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no `{needle}` in the config"))
}

async fn library_shapes_are_written(backend: Backend) {
    let db = TestDb::new(backend).await;
    library_table(&db, "NULL").await;
    let config = library_config(&db, WRITES);

    // validate --connect proves the columns with the EXPLAIN of both guarded UPDATEs.
    let (code, out, err) = run(&db, &config, &["validate", "--connect"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("needs UPDATE (status, completed_at, error, done_at, flagged, note, result, score, tries, locked_at, locked_by)"),
        "{out}"
    );
    // validate --print shows them as written, placeholders and all.
    let (code, out, err) = run(&db, &config, &["validate", "--print", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let printed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        printed["config"]["writes"],
        serde_json::json!({
            "fail": {
                "result": {"json": {"exc_type": "WorkerLostError", "exc_message": ["{reason}"]}},
                "note": "{rule} gave up on {job_id}", "done_at": "{now}",
                "tries": 7, "score": 0.5, "flagged": true,
            },
            "requeue": {"locked_at": {"null": true}, "locked_by": {"null": true}},
        })
    );

    // The dry run shows every column each write would set, with this job's values.
    let before = db.dump("jobs").await;
    let (code, out, err) = run(&db, &config, &["recover", "--dry-run"]);
    assert_eq!(code, 1, "{out}{err}");
    let dead = out
        .lines()
        .find(|l| l.starts_with("would write: job dead:"))
        .unwrap_or_else(|| panic!("no dry run of `dead`: {out}"));
    for part in [
        "status = 'failed'",
        "completed_at = now",
        r#"result = "{\"exc_message\":[\"jobwarden: hb: no heartbeat for 45m"#,
        r#"note = "hb gave up on dead""#,
        "done_at = now",
        "tries = 7",
        "score = 0.5",
        "flagged = true",
    ] {
        assert!(dead.contains(part), "`{part}` missing from: {dead}");
    }
    let held = out
        .lines()
        .find(|l| l.starts_with("would write: job held:"))
        .unwrap_or_else(|| panic!("no dry run of `held`: {out}"));
    assert!(
        held.contains("status = 'queued'")
            && held.contains("locked_at = NULL")
            && held.contains("locked_by = NULL")
            && !held.contains("result"),
        "{held}"
    );
    assert_eq!(db.dump("jobs").await, before, "a dry run writes nothing");

    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["recover"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(common::applied(&report), ["dead", "held"], "{report}");

    // Celery's shape: a JSON exception description the library can read back.
    let dead = row(
        &db,
        "dead",
        &[
            "status",
            "result",
            "note",
            "done_at",
            "completed_at",
            "tries",
            "score",
            "flagged",
        ],
    )
    .await;
    assert_eq!(dead[0].as_deref(), Some("failed"));
    let result: serde_json::Value =
        serde_json::from_str(dead[1].as_deref().expect("result set")).expect("result is JSON");
    assert_eq!(result["exc_type"], "WorkerLostError", "{result}");
    let message = result["exc_message"][0].as_str().expect("exc_message[0]");
    assert!(
        message.starts_with("jobwarden: hb: no heartbeat for 45m"),
        "{message}"
    );
    assert_eq!(dead[2].as_deref(), Some("hb gave up on dead"));
    // `{now}` alone in a timestamp column is the database's now, as finished_at gets it.
    assert!(dead[3].is_some());
    assert_eq!(
        dead[3], dead[4],
        "done_at and completed_at are the same now"
    );
    assert_eq!(dead[5].as_deref(), Some("7"));
    assert_eq!(dead[6].as_deref(), Some("0.5"));
    let flagged = if backend == Backend::Postgres {
        "true"
    } else {
        "1"
    };
    assert_eq!(dead[7].as_deref(), Some(flagged));
    if backend == Backend::Sqlite {
        // Cast to the number it is, not stored as the text "7".
        let types = db
            .rows("SELECT typeof(tries), typeof(score) FROM jobs WHERE id = 'dead'")
            .await;
        assert_eq!(
            types[0],
            [Some("integer".to_string()), Some("real".to_string())]
        );
    }

    // graphile-worker's unlock: the row is queued again with no owner.
    let held = row(
        &db,
        "held",
        &["status", "locked_at", "locked_by", "result", "note"],
    )
    .await;
    assert_eq!(held, [Some("queued".to_string()), None, None, None, None]);

    // The audit trail keeps the statement with this job's values, intent and outcome alike.
    let audit =
        std::fs::read_to_string(db.dir().join("state").join("audit.jsonl")).expect("audit trail");
    let dead_lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line"))
        .filter(|e: &serde_json::Value| e["job_id"] == "dead" && e["outcome"] != "dry_run")
        .collect();
    assert_eq!(dead_lines.len(), 2, "intent and outcome: {audit}");
    for e in &dead_lines {
        let statement = e["statement"].as_str().unwrap_or_default();
        assert!(
            statement.contains(r#"note = "hb gave up on dead""#) && statement.contains("tries = 7"),
            "{e}"
        );
    }

    // The live job is untouched.
    let live = row(&db, "live", &["status", "locked_by", "result"]).await;
    assert_eq!(
        live,
        [
            Some("running".to_string()),
            Some("worker-7".to_string()),
            None
        ]
    );
}
per_backend!(library_shapes, library_shapes_are_written);

async fn an_error_column_of_json_type(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.exec(&format!(
        "CREATE TABLE jobs (id {t} PRIMARY KEY, status {t} NOT NULL, created_at {ts}, \
         updated_at {ts}, output {json})",
        t = db.ty("text"),
        ts = db.ty("ts"),
        json = db.ty("json"),
    ))
    .await;
    let insert = |id: &str| {
        format!(
            "INSERT INTO jobs (id, status, created_at, updated_at) VALUES ('{id}', 'running', {}, {})",
            db.ago(120.0),
            db.ago(45.0)
        )
    };
    let base =
        || TestConfig::new(db.jobwarden_url()).heartbeat_rule("hb", "30m", "action = \"fail\"");

    // `error = "output"` on a JSON column: the reason goes in as a JSON string, where the
    // raw text was `invalid input syntax for type json`.
    db.exec(&insert("a")).await;
    let as_error = base()
        .state(&db.dir().join("state-a"))
        .jobs("error = \"output\"")
        .write(db.dir().join("error.toml"));
    let (code, out, err) = run(&db, &as_error, &["validate", "--connect"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, report) = jobwarden_json(db.jobwarden_url(), &as_error, &["recover"]);
    assert_eq!(code, 0, "{report}");
    let output = row(&db, "a", &["output"])
        .await
        .remove(0)
        .expect("output set");
    let reason = match backend {
        Backend::Sqlite => output.clone(),
        _ => match serde_json::from_str(&output) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("not a JSON string: {output} ({other:?})"),
        },
    };
    assert!(
        reason.starts_with("jobwarden: hb: no heartbeat for 45m"),
        "{output}"
    );

    // pg-boss's own shape: `output = {"message": ...}`.
    db.exec(&insert("b")).await;
    // (A state of its own: the first run's warm memory would date `b` from its first sight.)
    let as_object = base()
        .state(&db.dir().join("state-b"))
        .section("[writes.fail]\noutput = { json = { message = \"{reason}\" } }")
        .write(db.dir().join("object.toml"));
    let (code, report) = jobwarden_json(db.jobwarden_url(), &as_object, &["recover"]);
    assert_eq!(code, 0, "{report}");
    let output = row(&db, "b", &["output"])
        .await
        .remove(0)
        .unwrap_or_else(|| panic!("output not set: {report}"));
    let value: serde_json::Value = serde_json::from_str(&output).expect("JSON");
    assert!(
        value["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("jobwarden: hb: no heartbeat for 45m")),
        "{output}"
    );
}
per_backend!(json_error_column, an_error_column_of_json_type);

async fn a_rejected_write_names_its_key(backend: Backend) {
    let db = TestDb::new(backend).await;
    library_table(&db, "NOT NULL").await;
    let config = library_config(&db, "[writes.requeue]\nlocked_by = { null = true }");
    let (code, out, err) = run(&db, &config, &["recover", "--json"]);
    assert_eq!(code, 3, "a write the database refused: {out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let held = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["job_id"] == "held")
        .expect("held's finding");
    assert_eq!(held["outcome"], "error", "{held}");
    let line = line_of(&config, "locked_by = { null");
    let place = format!("`writes.requeue.locked_by` (line {line})");
    assert!(
        err.contains(&place) && !err.contains("`jobs.status`"),
        "the database names the column, so only its key is named: {err}"
    );
    let held = row(&db, "held", &["status", "locked_by"]).await;
    assert_eq!(
        held,
        [Some("locked".to_string()), Some("worker-7".to_string())]
    );
}
per_backend!(rejected_write, a_rejected_write_names_its_key);

/// PostgreSQL rejects a value its column cannot hold already at `EXPLAIN`: `validate
/// --connect` names the one key whose value it is, though the database names no column; at
/// write time, the error lists every column the statement sets.
async fn a_value_the_column_cannot_hold(backend: Backend) {
    let db = TestDb::new(backend).await;
    library_table(&db, "NULL").await;
    let config = library_config(&db, "[writes.fail]\nnote = \"ok\"\ntries = \"many\"");
    let line = line_of(&config, "tries = \"many\"");
    let (code, out, err) = run(&db, &config, &["validate", "--connect"]);
    assert_eq!(code, 2, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains(&format!(
            "`writes.fail.tries` (line {line}): the guarded UPDATE of `fail` was rejected"
        )) && all.contains("invalid input syntax for type integer")
            && !all.contains("`writes.fail.note`"),
        "{all}"
    );
    let (code, _, err) = run(&db, &config, &["recover"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("`writes.fail.tries` (line {line})"))
            && err.contains("`jobs.status`")
            && err.contains("`jobs.error`"),
        "{err}"
    );
    assert_eq!(
        row(&db, "dead", &["status"]).await,
        [Some("running".to_string())]
    );
}
per_backend!(unholdable_value, a_value_the_column_cannot_hold, postgres => Postgres);

async fn a_missing_write_column_is_named(backend: Backend) {
    let db = TestDb::new(backend).await;
    library_table(&db, "NULL").await;
    let config = library_config(&db, "[writes.requeue]\nlocked_until = { null = true }");
    let (code, out, err) = run(&db, &config, &["validate", "--connect"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("`locked_until` (set by `writes.requeue.locked_until`)"),
        "{out}{err}"
    );
}
per_backend!(missing_write_column, a_missing_write_column_is_named);

/// Bytes for a binary column: `{ pickle = ... }` (Celery before 5.7) and a value written into
/// a `bytea`/`BLOB` column (Celery 5.7's JSON `result`) are stored as exactly their bytes, and
/// the dry run shows the pickle's value; `validate --connect` refuses a pickle aimed at a text
/// column, naming its key and line.
async fn bytes_are_written_into_binary_columns(backend: Backend) {
    let db = TestDb::new(backend).await;
    library_table(&db, "NULL").await;
    let (blob, hex) = match backend {
        Backend::Postgres => ("bytea", "encode({}, 'hex')"),
        Backend::MySql => ("LONGBLOB", "LOWER(HEX({}))"),
        Backend::Sqlite => ("BLOB", "lower(hex({}))"),
    };
    for column in ["legacy", "payload"] {
        db.exec(&format!("ALTER TABLE jobs ADD COLUMN {column} {blob}"))
            .await;
    }
    let config = library_config(
        &db,
        "[writes.fail]\nlegacy = { pickle = { exc_type = \"E\", n = [1, true] } }\n\
         payload = { json = { message = \"it's {job_id}\" } }",
    );
    let (_, out, err) = run(&db, &config, &["recover", "--dry-run"]);
    assert!(
        out.contains(r#"legacy = pickle {"exc_type":"E","n":[1,true]}"#),
        "{out}{err}"
    );
    let (_, out, err) = run(&db, &config, &["recover", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert!(
        common::applied(&report).contains(&"dead".to_string()),
        "{out}{err}"
    );
    let bytes = db
        .rows(&format!(
            "SELECT {}, {} FROM jobs WHERE id = 'dead'",
            hex.replace("{}", "legacy"),
            hex.replace("{}", "payload")
        ))
        .await
        .remove(0);
    assert_eq!(
        bytes,
        [
            // pickletools.optimize(pickle.dumps({"exc_type": "E", "n": [1, True]}, 2)).hex()
            Some(
                "80027d2858080000006578635f7479706558010000004558010000006e5d284b018865752e"
                    .to_string()
            ),
            // {"message":"it's dead"}
            Some("7b226d657373616765223a22697427732064656164227d".to_string()),
        ]
    );

    let config = library_config(&db, "[writes.fail]\nnote = { pickle = 1 }");
    let (code, out, err) = run(&db, &config, &["validate", "--connect"]);
    assert_eq!(code, 2, "{out}{err}");
    let line = line_of(&config, "note = { pickle");
    assert!(
        format!("{out}{err}").contains(&format!(
            "`writes.fail.note` (line {line}): `{{ pickle = ... }}` writes bytes, and `note` is"
        )),
        "{out}{err}"
    );
}
per_backend!(binary_columns, bytes_are_written_into_binary_columns);

const TOKEN: &str = "WRITES-T0KEN-0123456789";

/// A person's fail of one job from the console: the preview shows the statement with the
/// job's own values, the write sets them, and its audit line keeps them.
async fn a_person_writes_the_library_shape(backend: Backend) {
    let db = TestDb::new(backend).await;
    library_table(&db, "NULL").await;
    let state = db.dir().join("state");
    let config = TestConfig::new(db.jobwarden_url())
        .top("interval = \"500ms\"")
        .jobs("finished_at = \"completed_at\"\nerror = \"error\"")
        .heartbeat_rule("hb", "30m", "action = \"alert\"")
        .section(WRITES.split("[writes.requeue]").next().expect("fail part"))
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""
        ))
        .state(&state)
        .write(db.dir().join("person.toml"));
    let daemon = Daemon::start(&config, &[]);
    let client = reqwest::Client::new();
    wait_for("the finding of `dead`", Duration::from_secs(30), || {
        let client = client.clone();
        let url = daemon.url("/api/v1/findings");
        async move {
            let v: serde_json::Value = client.get(&url).send().await.ok()?.json().await.ok()?;
            v["findings"]
                .as_array()?
                .iter()
                .any(|f| f["job_id"] == "dead")
                .then_some(())
        }
    })
    .await;
    let post = |body: &'static str| {
        client
            .post(daemon.url("/api/v1/jobs/dead/fail"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let preview: serde_json::Value = post("{\"dry_run\": true}")
        .await
        .expect("preview")
        .json()
        .await
        .expect("JSON");
    let statement = preview["statement"].as_str().unwrap_or_default();
    assert!(
        statement.contains("'hb gave up on dead'")
            && statement.contains(r#"{"exc_message":["jobwarden: hb: marked failed by"#)
            && statement.contains("WorkerLostError"),
        "{preview}"
    );
    assert_eq!(
        row(&db, "dead", &["status"]).await,
        [Some("running".to_string())]
    );

    let done: serde_json::Value = post("{}").await.expect("write").json().await.expect("JSON");
    assert_eq!(done["outcome"], "applied", "{done}");
    let dead = row(&db, "dead", &["status", "note", "result"]).await;
    assert_eq!(dead[0].as_deref(), Some("failed"));
    assert_eq!(dead[1].as_deref(), Some("hb gave up on dead"));
    let result: serde_json::Value =
        serde_json::from_str(dead[2].as_deref().unwrap_or_default()).expect("result is JSON");
    assert_eq!(result["exc_type"], "WorkerLostError", "{result}");
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).expect("audit trail");
    let applied = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["job_id"] == "dead" && e["outcome"] == "applied")
        .unwrap_or_else(|| panic!("no applied line: {audit}"));
    assert!(
        applied["requested_by"].is_string()
            && applied["statement"]
                .as_str()
                .is_some_and(|s| s.contains(r#"note = "hb gave up on dead""#)),
        "{applied}"
    );
}
per_backend!(person, a_person_writes_the_library_shape);

/// pg-boss 10's own table shape on PostgreSQL: a schema-qualified `pgboss.job` whose `state`
/// is the enum `pgboss.job_state`, with no heartbeat (an active job is judged by
/// `started_on`), failed the way pg-boss fails a job: `completed_on` and `output` as
/// `{"message": ...}` in `jsonb`.
async fn a_pg_boss_job_is_failed_in_its_shape(backend: Backend) {
    let db = TestDb::new(backend).await;
    for sql in [
        "CREATE SCHEMA pgboss",
        "CREATE TYPE pgboss.job_state AS ENUM ('created', 'retry', 'active', 'completed', 'cancelled', 'failed')",
        "CREATE TABLE pgboss.job (id uuid PRIMARY KEY, name text NOT NULL, \
         state pgboss.job_state NOT NULL DEFAULT 'created', output jsonb, \
         created_on timestamptz NOT NULL DEFAULT now(), started_on timestamptz, completed_on timestamptz)",
        "CREATE INDEX job_state ON pgboss.job (state)",
    ] {
        db.exec(sql).await;
    }
    let dead = "9f1c2a6e-5d1b-4b1e-9c7a-2f1e0d3c4b5a";
    let live = "0b6f1d2e-3c4a-4e5f-8a9b-1c2d3e4f5a6b";
    for (id, started) in [(dead, 45.0), (live, 1.0)] {
        db.exec(&format!(
            "INSERT INTO pgboss.job (id, name, state, created_on, started_on) VALUES \
             ('{id}', 'email', 'active', {}, {})",
            db.ago(60.0),
            db.ago(started)
        ))
        .await;
    }
    // The builder's `jobs` table, renamed to pg-boss's columns and words.
    let config = TestConfig::new(db.jobwarden_url())
        .text()
        .replace(
            "table = \"jobs\"\nheartbeat_at = \"updated_at\"",
            "table = \"pgboss.job\"\nstatus = \"state\"\ncreated_at = \"created_on\"\n\
             status_since = \"started_on\"\nfinished_at = \"completed_on\"",
        )
        .replace(
            "running = [\"running\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]",
            "pending = [\"created\", \"retry\"]\nrunning = [\"active\"]\n\
             succeeded = [\"completed\"]\nfailed = [\"failed\"]\ncancelled = [\"cancelled\"]",
        )
        + "\n[[rules]]\nname = \"active-too-long\"\nstatuses = [\"active\"]\nsignal = \"created\"\n\
           after = \"15m\"\naction = \"fail\"\n\n[writes.fail]\n\
           output = { json = { message = \"{reason}\" } }\n";
    let path = db.dir().join("pg-boss.toml");
    std::fs::write(&path, config).expect("config");
    let (code, out, err) = run(&db, &path, &["validate", "--connect"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, report) = jobwarden_json(db.jobwarden_url(), &path, &["recover"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(common::applied(&report), [dead], "{report}");
    let rows = db
        .rows(&format!(
            "SELECT state::text, output::text, (completed_on IS NOT NULL)::text FROM pgboss.job \
             WHERE id = '{dead}'"
        ))
        .await;
    assert_eq!(rows[0][0].as_deref(), Some("failed"));
    let output: serde_json::Value =
        serde_json::from_str(rows[0][1].as_deref().expect("output")).expect("jsonb");
    assert!(
        output["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("jobwarden: active-too-long: ")),
        "{output}"
    );
    assert_eq!(rows[0][2].as_deref(), Some("true"));
    let live = db
        .rows(&format!(
            "SELECT state::text, output::text FROM pgboss.job WHERE id = '{live}'"
        ))
        .await;
    assert_eq!(live[0], [Some("active".to_string()), None]);
}
per_backend!(pg_boss, a_pg_boss_job_is_failed_in_its_shape, postgres => Postgres);
