//! A view as `[jobs] table` in `validate --connect`, through the real binary on real
//! PostgreSQL, MariaDB and SQLite: it says the table is a view, never advises the
//! `CREATE INDEX ... ON <view>` the database refuses (PostgreSQL: the index on the table
//! behind it, found from the plan; MariaDB and SQLite: the columns to index by hand), and
//! refuses `fail`/`requeue` rules on a view the database cannot write, while alert-only
//! rules on it are fine.

mod common;

use std::path::{Path, PathBuf};

use common::{jobwarden, Backend, TestConfig, TestDb};

fn run(db: &TestDb, config: &Path) -> (i32, String) {
    let out = jobwarden(
        db.jobwarden_url(),
        &[
            "validate",
            "--connect",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `jobs_base` with a `state` column and a worker, one running job silent for 45 minutes,
/// and `workers` (for the join).
async fn base(db: &TestDb) {
    db.exec(&format!(
        "CREATE TABLE jobs_base (id INTEGER PRIMARY KEY, state {t}, created_at {ts}, \
         updated_at {ts}, archived INTEGER NOT NULL DEFAULT 0, worker INTEGER)",
        t = db.ty("text"),
        ts = db.ty("ts")
    ))
    .await;
    db.exec(&format!(
        "CREATE TABLE workers (id INTEGER PRIMARY KEY, host {})",
        db.ty("text")
    ))
    .await;
    db.exec("INSERT INTO workers VALUES (7, 'box-7')").await;
    db.exec(&format!(
        "INSERT INTO jobs_base (id, state, created_at, updated_at, worker) VALUES (1, 'running', {}, {}, 7)",
        db.ago(90.0),
        db.ago(45.0)
    ))
    .await;
}

/// A config on the view `jobs`; `action` is the heartbeat rule's.
fn config(db: &TestDb, action: &str) -> PathBuf {
    TestConfig::new(db.jobwarden_url())
        .heartbeat_rule("hb", "30m", &format!("action = \"{action}\""))
        .state(&db.dir().join("state"))
        .write(db.dir().join("jw.toml"))
}

/// The line of `table = ` in the config.
fn table_line(config: &Path) -> usize {
    std::fs::read_to_string(config)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("table = "))
        .unwrap()
        + 1
}

/// No advice the database would refuse: an index on the view itself.
fn no_index_on_the_view(db: &TestDb, out: &str) {
    let on_view = format!("ON {} (", db.quote("jobs"));
    assert!(
        !out.contains(&on_view),
        "advises an index on the view: {out}"
    );
}

// 1. A simple view over one table, its status column renamed.
async fn simple_view(backend: Backend) {
    let db = TestDb::new(backend).await;
    base(&db).await;
    db.exec(
        "CREATE VIEW jobs AS SELECT id, state AS status, created_at, updated_at \
         FROM jobs_base WHERE archived = 0",
    )
    .await;
    let alerting = config(&db, "alert");
    let line = table_line(&alerting);
    let (code, out) = run(&db, &alerting);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("`jobs.table` (line {line}): jobs is a view")),
        "says it is a view: {out}"
    );
    no_index_on_the_view(&db, &out);
    match backend {
        Backend::Postgres => {
            assert!(
                out.contains(r#"`status` is its `state`, `updated_at` is its `updated_at`"#),
                "{out}"
            );
            assert!(
                out.contains(r#"No index can be made on a view; create it on the table: CREATE INDEX "jobs_base_state_idx" ON "public"."jobs_base" ("state")"#),
                "{out}"
            );
            assert!(
                out.contains(r#"CREATE INDEX "jobs_base_state_updated_at_idx" ON "public"."jobs_base" ("state", "updated_at")"#),
                "{out}"
            );
            // Made as advised, the advice is gone.
            db.exec("CREATE INDEX jobs_base_state_updated_at_idx ON jobs_base (state, updated_at)")
                .await;
            let (code, out) = run(&db, &alerting);
            assert_eq!(code, 0, "{out}");
            assert!(!out.contains("CREATE INDEX"), "{out}");
        }
        _ => assert!(
            out.contains("jobwarden cannot tell which table's columns are behind it")
                && out.contains("the columns behind `status` (`jobs.status`), then `updated_at` (`jobs.heartbeat_at` (line 7))"),
            "names the columns to index by hand: {out}"
        ),
    }
    // PostgreSQL and MariaDB write a simple view; SQLite writes none without a trigger.
    let failing = config(&db, "fail");
    let (code, out) = run(&db, &failing);
    if backend == Backend::Sqlite {
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains(&format!("error: `jobs.table` (line {line}): fail/requeue need an updatable view: jobs is a view the database cannot write (SQLite writes a view only through an INSTEAD OF UPDATE trigger)")),
            "{out}"
        );
        // With the trigger, it can.
        db.exec(
            "CREATE TRIGGER jobs_update INSTEAD OF UPDATE ON jobs BEGIN \
             UPDATE jobs_base SET state = NEW.status, updated_at = NEW.updated_at WHERE id = OLD.id; END",
        )
        .await;
        let (code, out) = run(&db, &failing);
        assert_eq!(code, 0, "{out}");
    } else {
        assert_eq!(code, 0, "{out}");
        assert!(!out.contains("updatable view"), "{out}");
    }
}

per_backend!(a_simple_view, simple_view);

// 2. A join view: the job's columns from one table, the host from the workers.
async fn join_view(backend: Backend) {
    let db = TestDb::new(backend).await;
    base(&db).await;
    db.exec(
        "CREATE VIEW jobs AS SELECT j.id, j.state AS status, j.created_at, j.updated_at, w.host \
         FROM jobs_base j JOIN workers w ON w.id = j.worker",
    )
    .await;
    let alerting = config(&db, "alert");
    let line = table_line(&alerting);
    let (code, out) = run(&db, &alerting);
    assert_eq!(code, 0, "{out}");
    no_index_on_the_view(&db, &out);
    if backend == Backend::Postgres {
        // The plan shows both columns are `jobs_base`'s, aliased `j`.
        assert!(
            out.contains(r#"jobs is a view over "public"."jobs_base" (`status` is its `state`"#),
            "{out}"
        );
        assert!(
            out.contains(r#"ON "public"."jobs_base" ("state")"#),
            "{out}"
        );
        // PostgreSQL writes no join view.
        assert!(
            out.contains("jobs is a view the database cannot write")
                && out.contains("fine while no rule fails or re-queues jobs"),
            "a note, not an error, without a writing rule: {out}"
        );
    } else {
        assert!(
            out.contains(&format!("`jobs.table` (line {line}): jobs is a view")),
            "{out}"
        );
    }
    let failing = config(&db, "fail");
    let (code, out) = run(&db, &failing);
    match backend {
        // MariaDB merges the join and writes the one table the UPDATE sets.
        Backend::MySql => assert_eq!(code, 0, "{out}"),
        _ => {
            assert_eq!(code, 2, "{out}");
            assert!(
                out.contains(&format!(
                    "error: `jobs.table` (line {line}): fail/requeue need an updatable view: jobs is a view the database cannot write"
                )),
                "{out}"
            );
            // One error, not the database's own refusal of the UPDATE besides.
            assert!(out.contains("(1 problem)"), "{out}");
        }
    }
}

per_backend!(a_join_view, join_view);

// 3. A view no database can write (DISTINCT), with and without a writing rule.
async fn distinct_view(backend: Backend) {
    let db = TestDb::new(backend).await;
    base(&db).await;
    db.exec(
        "CREATE VIEW jobs AS SELECT DISTINCT id, state AS status, created_at, updated_at FROM jobs_base",
    )
    .await;
    let alerting = config(&db, "alert");
    let line = table_line(&alerting);
    let (code, out) = run(&db, &alerting);
    assert_eq!(code, 0, "alert-only rules need no updatable view: {out}");
    assert!(
        out.contains("jobs is a view the database cannot write")
            && out.contains("fine while no rule fails or re-queues jobs"),
        "{out}"
    );
    assert!(!out.contains("error:"), "{out}");
    no_index_on_the_view(&db, &out);
    let failing = config(&db, "requeue");
    std::fs::write(
        &failing,
        std::fs::read_to_string(&failing).unwrap().replace(
            "running = [\"running\"]",
            "pending = [\"queued\"]\nrunning = [\"running\"]",
        ),
    )
    .unwrap();
    let (code, out) = run(&db, &failing);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "error: `jobs.table` (line {line}): fail/requeue need an updatable view: jobs is a view the database cannot write ("
        )) && out.contains("use only `alert` rules"),
        "{out}"
    );
    assert!(out.contains("(1 problem)"), "{out}");
}

per_backend!(a_view_no_database_writes, distinct_view);

// 4. PostgreSQL: a view that can be written, but whose status is computed (graphile-worker's
// shape): the columns a rule would write are named.
#[tokio::test]
async fn a_computed_status_column_cannot_be_failed() {
    let db = TestDb::new(Backend::Postgres).await;
    base(&db).await;
    db.exec(
        "CREATE VIEW jobs AS SELECT id, CASE WHEN archived = 0 THEN state ELSE 'archived' END AS status, \
         created_at, updated_at FROM jobs_base",
    )
    .await;
    let (code, out) = run(&db, &config(&db, "alert"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("jobwarden cannot tell which table's columns are behind it")
            && out.contains("the column `status` of the view jobs is computed"),
        "{out}"
    );
    let failing = config(&db, "fail");
    let line = table_line(&failing);
    let (code, out) = run(&db, &failing);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "error: `jobs.table` (line {line}): fail/requeue need an updatable view: the column `status` of the view jobs is computed, not a table's column"
        )),
        "{out}"
    );
}
