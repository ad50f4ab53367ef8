//! What a scan costs the database (issue 23), and that the cheaper reads find exactly what the
//! reference read finds: parents by primary key and children through an index on the parent
//! column, with `validate --connect` printing the index to create, on real PostgreSQL,
//! MariaDB and SQLite.

mod common;

use std::path::{Path, PathBuf};

use common::{findings, jobwarden, jobwarden_json, Backend, TestConfig, TestDb};
use jobwarden::adapters::store::Store;
use jobwarden::app::scan::Scanner;

fn run(db: &TestDb, args: &[&str], config: &Path) -> (i32, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    let out = jobwarden(db.jobwarden_url(), &all);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The `CREATE INDEX` that `validate --connect` advises after "Create one: " on a line that
/// contains `about`, if any.
fn advice(out: &str, about: &str) -> Option<String> {
    out.lines()
        .filter(|l| l.contains(about))
        .find_map(|l| l.split("Create one: ").nth(1))
        .map(str::to_string)
}

/// A jobs table with a parent column and families in every state, all beating (nothing
/// stalls): only the parent/child checks find anything.
/// The parent is in `parent_id` and in `meta`'s `parent` key.
async fn families(db: &TestDb) {
    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {t}, created_at {ts}, updated_at {ts}, \
         parent_id INTEGER NULL, archived INTEGER NOT NULL DEFAULT 0, meta {json} NULL)",
        t = db.ty("text"),
        ts = db.ty("ts"),
        json = db.ty("json")
    ))
    .await;
    db.exec("CREATE INDEX jobs_status ON jobs (status)").await;
    // id, status, parent, archived
    let rows: &[(u32, &str, Option<u32>, u32)] = &[
        // A child still running under a failed parent.
        (1, "failed", None, 0),
        (10, "running", Some(1), 0),
        // A running parent whose children have all finished.
        (2, "running", None, 0),
        (20, "completed", Some(2), 0),
        (21, "failed", Some(2), 0),
        // A running parent with one child still running.
        (3, "running", None, 0),
        (30, "completed", Some(3), 0),
        (31, "running", Some(3), 0),
        // A child outside `where` but running still counts as unfinished.
        (4, "running", None, 0),
        (40, "running", Some(4), 1),
        (41, "completed", Some(4), 0),
        // A child outside `where` and finished: its parent's children are all finished.
        (5, "running", None, 0),
        (50, "completed", Some(5), 1),
        // A running child under a completed parent.
        (6, "completed", None, 0),
        (60, "running", Some(6), 0),
        // A running parent of a running child: nothing to say.
        (7, "running", None, 0),
        (70, "running", Some(7), 0),
    ];
    for (id, status, parent, archived) in rows {
        db.exec(&format!(
            "INSERT INTO jobs (id, status, created_at, updated_at, parent_id, archived, meta) \
             VALUES ({id}, '{status}', {}, {}, {}, {archived}, {})",
            db.ago(47.0),
            db.ago(1.3),
            parent.map_or("NULL".to_string(), |p| p.to_string()),
            parent.map_or("NULL".to_string(), |p| format!("'{{\"parent\": {p}}}'"))
        ))
        .await;
    }
}

fn family_config(db: &TestDb, extra_top: &str) -> PathBuf {
    family_config_with(db, extra_top, "parent_id")
}

fn family_config_with(db: &TestDb, extra_top: &str, parent: &str) -> PathBuf {
    let mut c = TestConfig::new(db.jobwarden_url())
        .jobs(&format!(
            "parent_id = \"{parent}\"\nwhere = \"archived = 0\""
        ))
        .heartbeat_rule("hb", "20m", "action = \"fail\"")
        .state(&db.dir().join("state"));
    if !extra_top.is_empty() {
        c = c.top(extra_top);
    }
    c.write(db.dir().join("jw.toml"))
}

fn family_findings() -> Vec<(String, String, String)> {
    common::expect(&[
        ("10", "orphaned_child", "hb"),
        ("2", "orphaned_child", "hb"),
        ("5", "orphaned_child", "hb"),
        ("60", "orphaned_child", "hb"),
    ])
}

/// Without an index on the parent column `validate --connect` prints the one to create, and
/// it runs as printed; the findings are the same with it and without it.
async fn parent_index_advice(backend: Backend) {
    let db = TestDb::new(backend).await;
    families(&db).await;
    let config = family_config(&db, "");
    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["check"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(findings(&report), family_findings(), "{report}");

    let (code, out) = run(&db, &["validate", "--connect"], &config);
    assert_eq!(code, 0, "a missing index is a warning: {out}");
    let create = advice(&out, "jobs(parent_id)")
        .unwrap_or_else(|| panic!("no advice for the parent column: {out}"));
    assert!(
        out.contains("read only every 5m"),
        "says what its absence costs: {out}"
    );
    db.exec(&create).await;
    let (code, out) = run(&db, &["validate", "--connect"], &config);
    assert_eq!(code, 0, "{out}");
    assert_eq!(advice(&out, "jobs(parent_id)"), None, "{out}");
    assert!(!out.contains("read only every"), "{out}");

    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["check"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(findings(&report), family_findings(), "{report}");
}

per_backend!(
    the_parent_index_is_advised_and_changes_no_finding,
    parent_index_advice
);

/// Finds the report's orphaned-child finding of one job.
fn has_family_finding(report: &jobwarden::app::scan::Report, id: &str) -> bool {
    report
        .findings
        .iter()
        .any(|f| f.job_id == id && f.kind.as_str() == "orphaned_child")
}

/// Without the index, a daemon's scans read the children only every
/// `terminal_counts_every`: a child that changed in between is seen at the next such read
/// (a one-shot `check` reads them at once); with the index, at the next scan.
async fn children_schedule(backend: Backend) {
    let db = TestDb::new(backend).await;
    families(&db).await;
    let path = family_config(&db, "terminal_counts_every = \"1h\"");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = jobwarden::config::parse(&text, &path, None, &|_| None).expect("config");

    let mut scanner = Scanner::new(Store::connect(&config).await.expect("connect"));
    let report = scanner.scan(&config, None).await.expect("scan");
    assert!(has_family_finding(&report, "2"), "{:?}", report.findings);
    // Child 20 of parent 2 is taken up again: parent 2's children are no longer all finished.
    db.exec("UPDATE jobs SET status = 'paused' WHERE id = 20")
        .await;
    let report = scanner.scan(&config, None).await.expect("scan");
    assert!(
        has_family_finding(&report, "2"),
        "without the index, the children are not read again within the hour: {:?}",
        report.findings
    );
    // The parents are still read every scan: a parent that failed since is seen at once.
    db.exec("UPDATE jobs SET status = 'failed' WHERE id = 7")
        .await;
    let report = scanner.scan(&config, None).await.expect("scan");
    assert!(has_family_finding(&report, "70"), "{:?}", report.findings);
    scanner.store().close().await;

    let mut fresh = Scanner::new(Store::connect(&config).await.expect("connect"));
    let report = fresh.scan(&config, None).await.expect("scan");
    assert!(!has_family_finding(&report, "2"), "{:?}", report.findings);
    fresh.store().close().await;

    db.exec("CREATE INDEX jobs_parent ON jobs (parent_id)")
        .await;
    let mut indexed = Scanner::new(Store::connect(&config).await.expect("connect"));
    assert!(indexed.store().info().parent_indexed);
    let report = indexed.scan(&config, None).await.expect("scan");
    assert!(!has_family_finding(&report, "2"), "{:?}", report.findings);
    db.exec("UPDATE jobs SET status = 'completed' WHERE id = 20")
        .await;
    let report = indexed.scan(&config, None).await.expect("scan");
    assert!(
        has_family_finding(&report, "2"),
        "with the index, every scan reads the children: {:?}",
        report.findings
    );
    indexed.store().close().await;
}

per_backend!(
    without_the_parent_index_children_follow_the_terminal_counts,
    children_schedule
);

/// A parent kept in a JSON document: PostgreSQL and SQLite index its expression, which
/// `validate --connect` prints ready to run; MariaDB cannot, and says so. The findings are
/// those of the plain column.
async fn json_parent(backend: Backend) {
    let db = TestDb::new(backend).await;
    families(&db).await;
    let config = family_config_with(&db, "", "meta.parent");
    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["check"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(findings(&report), family_findings(), "{report}");
    let (code, out) = run(&db, &["validate", "--connect"], &config);
    assert_eq!(code, 0, "{out}");
    if backend == Backend::MySql {
        assert!(
            out.contains("cannot index the JSON path `meta.parent`"),
            "{out}"
        );
        return;
    }
    let create = advice(&out, "jobs(meta.parent)")
        .unwrap_or_else(|| panic!("no advice for the JSON path: {out}"));
    db.exec(&create).await;
    let (code, out) = run(&db, &["validate", "--connect"], &config);
    assert_eq!(code, 0, "{out}");
    assert_eq!(advice(&out, "jobs(meta.parent)"), None, "{out}");
    let (code, report) = jobwarden_json(db.jobwarden_url(), &config, &["check"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(findings(&report), family_findings(), "{report}");
}

per_backend!(a_json_parent_is_indexed_by_its_expression, json_parent);

/// `validate --connect` prints the index the candidate read wants, `(status, <heartbeat>)`,
/// ready to run, for a plain column and (PostgreSQL, SQLite) a JSON path's expression; once
/// it exists, no advice. MariaDB indexes no JSON expression, and says so.
async fn candidate_index_advice(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {t}, created_at {ts}, updated_at {ts}, meta {json} NULL)",
        t = db.ty("text"),
        ts = db.ty("ts"),
        json = db.ty("json")
    ))
    .await;
    db.exec("CREATE INDEX jobs_status ON jobs (status)").await;
    db.exec(&format!(
        "INSERT INTO jobs (id, status, created_at, updated_at) VALUES (1, 'running', {}, {})",
        db.ago(47.0),
        db.ago(1.3)
    ))
    .await;
    let plain = TestConfig::new(db.jobwarden_url())
        .heartbeat_rule("hb", "20m", "action = \"fail\"")
        .write(db.dir().join("plain.toml"));
    let (code, out) = run(&db, &["validate", "--connect"], &plain);
    assert_eq!(code, 0, "a missing index is a warning: {out}");
    let create = advice(&out, "jobs(status, updated_at)")
        .unwrap_or_else(|| panic!("no advice for the candidate read: {out}"));
    assert!(
        create.ends_with(&format!(
            "ON {q}jobs{q} ({q}status{q}, {q}updated_at{q})",
            q = if backend == Backend::MySql { "`" } else { "\"" }
        )),
        "{create}"
    );
    db.exec(&create).await;
    let (code, out) = run(&db, &["validate", "--connect"], &plain);
    assert_eq!(code, 0, "{out}");
    assert_eq!(advice(&out, "jobs(status, updated_at)"), None, "{out}");

    let json = db.dir().join("json.toml");
    std::fs::write(
        &json,
        TestConfig::new(db.jobwarden_url())
            .heartbeat_rule("hb", "20m", "action = \"fail\"")
            .text()
            .replace(
                "heartbeat_at = \"updated_at\"",
                "heartbeat_at = \"meta.beat\"",
            ),
    )
    .unwrap();
    let (code, out) = run(&db, &["validate", "--connect"], &json);
    assert_eq!(code, 0, "{out}");
    if backend == Backend::MySql {
        assert!(
            out.contains("cannot index the JSON path `meta.beat`"),
            "{out}"
        );
        return;
    }
    let create = advice(&out, "jobs(status, meta.beat)")
        .unwrap_or_else(|| panic!("no advice for a JSON heartbeat: {out}"));
    db.exec(&create).await;
    let (code, out) = run(&db, &["validate", "--connect"], &json);
    assert_eq!(code, 0, "{out}");
    assert_eq!(advice(&out, "jobs(status, meta.beat)"), None, "{out}");
}

per_backend!(
    the_candidate_index_is_advised_ready_to_run,
    candidate_index_advice
);
