//! What a scan costs the database (issue 23), and that the cheaper reads find exactly what the
//! reference read finds: parents by primary key and children through an index on the parent
//! column, with `validate --connect` printing the index to create, on real PostgreSQL,
//! MariaDB and SQLite.

mod common;

use std::path::{Path, PathBuf};

use common::{findings, jobwarden, jobwarden_json, Backend, TestConfig, TestDb};
use jobwarden::adapters::store::Store;
use jobwarden::app::scan::{Read, Scanner};

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

/// Every cell of an `EXPLAIN`'s rows, as text.
async fn plan_text(db: &TestDb, sql: &str) -> String {
    use sqlx::Row;
    let rows = sqlx::query(sql)
        .fetch_all(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n=> {e}"));
    let mut out = String::new();
    for row in &rows {
        for i in 0..row.len() {
            let cell = row
                .try_get::<Option<String>, _>(i)
                .ok()
                .flatten()
                .or_else(|| {
                    row.try_get::<Option<i64>, _>(i)
                        .ok()
                        .flatten()
                        .map(|n| n.to_string())
                })
                .unwrap_or_default();
            out.push_str(&cell);
            out.push(' ');
        }
        out.push('\n');
    }
    out
}

/// The active rows by class and the findings of a scan by the light read alone.
async fn light_scan(
    scanner: &mut Scanner,
    config: &jobwarden::config::Config,
) -> (String, Vec<(String, String, String)>) {
    let report = scanner
        .scan_by(config, None, Read::Light)
        .await
        .expect("a light scan");
    let json = serde_json::to_value(&report).expect("the report as JSON");
    (json["jobs"].to_string(), findings(&json))
}

/// `validate --connect` prints the index the scan's light read wants, `(status,
/// <heartbeat>)` holding the id, ready to run, for a plain column and (PostgreSQL, SQLite) a
/// JSON path's expression; once it exists, no advice, and the light read is answered from
/// the index alone. MariaDB indexes no JSON expression, and says so.
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
    let expected = match backend {
        Backend::Postgres => r#"ON "jobs" ("status", "updated_at") INCLUDE ("id")"#,
        Backend::MySql => "ON `jobs` (`status`, `updated_at`)",
        Backend::Sqlite => r#"ON "jobs" ("status", "updated_at", "id")"#,
    };
    assert!(create.ends_with(expected), "{create}");
    db.exec(&create).await;
    let (code, out) = run(&db, &["validate", "--connect"], &plain);
    assert_eq!(code, 0, "{out}");
    assert_eq!(advice(&out, "jobs(status, updated_at)"), None, "{out}");
    // The scan's light read is answered from that index alone.
    let text = std::fs::read_to_string(&plain).unwrap();
    let config = jobwarden::config::parse(&text, &plain, None, &|_| None).expect("config");
    let store = Store::connect(&config).await.expect("connect");
    // MariaDB's light read names the index (its optimizer may take the one on `status` for a
    // prepared statement); the others need no hint.
    let light = match store.queries().light_forced.clone() {
        Some(forced) => {
            assert_eq!(backend, Backend::MySql, "{forced}");
            forced
        }
        None => {
            assert_ne!(
                backend,
                Backend::MySql,
                "MariaDB's light read names no index"
            );
            store.queries().light.clone()
        }
    };
    store.close().await;
    let name = create.split_whitespace().nth(2).expect("the index's name");
    if backend == Backend::MySql {
        assert!(
            light.contains(&format!(" FORCE INDEX ({name}) WHERE ")),
            "{light}"
        );
    }
    // Enough finished rows that the planner prefers an index to reading the table.
    let finished: Vec<String> = (2..3000)
        .map(|id| format!("({id}, 'completed', {}, {})", db.ago(47.0), db.ago(40.0)))
        .collect();
    db.exec(&format!(
        "INSERT INTO jobs (id, status, created_at, updated_at) VALUES {}",
        finished.join(", ")
    ))
    .await;
    let plan = match backend {
        Backend::Postgres => {
            db.exec("VACUUM ANALYZE jobs").await;
            plan_text(&db, &format!("EXPLAIN {light}")).await
        }
        Backend::MySql => {
            db.exec("ANALYZE TABLE jobs").await;
            plan_text(&db, &format!("EXPLAIN {light}")).await
        }
        Backend::Sqlite => {
            db.exec("ANALYZE").await;
            plan_text(&db, &format!("EXPLAIN QUERY PLAN {light}")).await
        }
    };
    let covered = match backend {
        Backend::Postgres => "Index Only Scan",
        Backend::MySql => "Using index",
        Backend::Sqlite => "COVERING INDEX",
    };
    assert!(plan.contains(covered), "{light}\n{plan}");
    if backend == Backend::MySql {
        // Dropped under a running store, the index is no longer named: the light read
        // reads on, with the same result.
        db.exec(&format!(
            "INSERT INTO jobs (id, status, created_at, updated_at) VALUES (5000, 'running', {}, {})",
            db.ago(47.0),
            db.ago(30.0)
        ))
        .await;
        let mut scanner = Scanner::new(Store::connect(&config).await.expect("connect"));
        let named = light_scan(&mut scanner, &config).await;
        assert_eq!(named.1.len(), 1, "{named:?}");
        db.exec(&format!("DROP INDEX {name} ON jobs")).await;
        for round in 0..2 {
            assert_eq!(
                light_scan(&mut scanner, &config).await,
                named,
                "round {round}"
            );
        }
        scanner.store().close().await;
        db.exec(&create).await;
        db.exec("DELETE FROM jobs WHERE id = 5000").await;
    }

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

/// How `updated_at` is stored in [`candidate_table`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Beat {
    /// A timestamp with a zone (PostgreSQL `timestamptz`, MariaDB `DATETIME` in UTC).
    Zoned,
    /// A naive timestamp written in another zone than UTC (`[database] timezone`).
    Naive,
    /// Unix seconds, and some rows in milliseconds.
    Epoch,
}

/// The configs of the two-tier fixtures: `[jobs]` lines `jobs`, queued and running jobs,
/// rule `hb` failing running jobs silent for 20 minutes and rule `training` alerting on
/// those of the training phase after 7.
fn phased_config(db: &TestDb, jobs: &str) -> TestConfig {
    TestConfig::new(db.jobwarden_url())
        .jobs(jobs)
        .statuses("pending = [\"queued\"]\nrunning = [\"running\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]")
        .heartbeat_rule("hb", "20m", "action = \"fail\"")
        .section(
            "[[rules]]\nname = \"training\"\nstatuses = [\"running\"]\nsignal = \"heartbeat\"\n\
             after = \"7m\"\nphases = [\"training\"]\naction = \"alert\"",
        )
}

/// A heartbeat `minutes` ago (negative: ahead of the clock), as [`candidate_table`] stores it.
fn stored_beat(db: &TestDb, beat: Beat, minutes: f64) -> String {
    let s = (minutes * 60.0) as i64;
    match (db.backend, beat) {
        (_, Beat::Epoch) => db.epoch_ago(minutes),
        (Backend::Postgres, Beat::Naive) => {
            format!("(now() AT TIME ZONE 'America/New_York') - interval '{s} seconds'")
        }
        (Backend::MySql, Beat::Naive) => {
            format!("UTC_TIMESTAMP(6) + INTERVAL 330 MINUTE - INTERVAL {s} SECOND")
        }
        _ => db.ago(minutes),
    }
}

/// The type of `updated_at` for `beat`, and the zone a naive one is written in.
fn beat_column(db: &TestDb, beat: Beat) -> (&'static str, Option<&'static str>) {
    match (db.backend, beat) {
        (Backend::Postgres, Beat::Naive) => ("timestamp(3)", Some("America/New_York")),
        (Backend::MySql, Beat::Naive) => ("DATETIME(6)", Some("+05:30")),
        (_, Beat::Epoch) => (db.ty("bigint"), None),
        _ => (db.ty("ts"), None),
    }
}

/// A jobs table whose heartbeats are minutes old on both sides of every bound (never a
/// whole or half hour), missing, and ahead of the clock; running and queued, two phases.
async fn candidate_table(db: &TestDb, beat: Beat) -> (PathBuf, usize) {
    let (ty, zone) = beat_column(db, beat);
    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {t}, phase {t} NULL, created_at {ts}, updated_at {ty} NULL)",
        t = db.ty("text"),
        ts = db.ty("ts"),
    ))
    .await;
    // The heartbeat `minutes` ago (negative: ahead of the clock), as stored.
    let beat_sql = |minutes: f64, millis: bool| -> String {
        match beat {
            Beat::Epoch if millis => format!("({} * 1000)", db.epoch_ago(minutes)),
            _ => stored_beat(db, beat, minutes),
        }
    };
    let ages: &[f64] = &[
        0.4, 5.3, 6.6, 7.4, 13.2, 19.4, 20.7, 23.1, 47.3, 95.2, 401.7, 1501.3, -4.1, -187.3,
    ];
    let mut id = 0;
    for status in ["running", "queued"] {
        for phase in ["training", "eval"] {
            for (i, age) in ages.iter().enumerate() {
                id += 1;
                let millis = beat == Beat::Epoch && i % 3 == 0;
                db.exec(&format!(
                    "INSERT INTO jobs VALUES ({id}, '{status}', '{phase}', {}, {})",
                    db.ago(2000.3),
                    beat_sql(*age, millis)
                ))
                .await;
            }
            // No heartbeat yet: judged by created_at.
            id += 1;
            db.exec(&format!(
                "INSERT INTO jobs VALUES ({id}, '{status}', '{phase}', {}, NULL)",
                db.ago(33.3)
            ))
            .await;
            // Beating, but created ahead of the clock: warned about, not judged.
            id += 1;
            db.exec(&format!(
                "INSERT INTO jobs VALUES ({id}, '{status}', '{phase}', {}, {})",
                db.ago(-93.7),
                beat_sql(0.9, false)
            ))
            .await;
        }
    }
    let mut config = phased_config(db, "phase = \"phase\"");
    if let Some(zone) = zone {
        config = config.database(&format!("timezone = \"{zone}\""));
    }
    (config.write(db.dir().join("jw.toml")), id)
}

/// What the reference and the two-tier reads must agree on. The two scans read the database
/// clock a few milliseconds apart, so digits (ages, times) are left out of the messages;
/// ages are compared within two seconds.
fn gist(r: &jobwarden::app::scan::Report) -> String {
    // A duration ("1h 5m 3s", or "1h 5m" a second later) is one `#`, with what follows it.
    let shape = |m: &str| {
        let mut out: Vec<String> = Vec::new();
        for token in m.split(' ') {
            let t = if token.starts_with(|c: char| c.is_ascii_digit()) {
                let tail = token.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
                format!("#{tail}")
            } else {
                token.replace(|c: char| c.is_ascii_digit(), "#")
            };
            if t == "#" && out.last().is_some_and(|l| l == "#") {
                continue;
            }
            if t.len() > 1 && t.starts_with('#') && out.last().is_some_and(|l| l == "#") {
                out.pop();
            }
            out.push(t);
        }
        out.join(" ")
    };
    let mut findings: Vec<String> = r
        .findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {} {} {:?} {:?} {:?} {} evidence={} progress={:?} guard={:?} worker={:?}",
                f.job_id,
                f.kind.as_str(),
                f.rule,
                f.status,
                f.phase,
                f.action,
                f.severity,
                shape(&f.message),
                f.evidence.is_some(),
                f.progress,
                f.guard,
                f.worker.as_ref().map(|w| (&w.id, w.gone))
            )
        })
        .collect();
    findings.sort();
    let mut warnings: Vec<String> = r
        .warnings
        .iter()
        .map(|w| format!("{:?} {}", w.job_id, shape(&w.message)))
        .collect();
    warnings.sort();
    let mut late = r.late.clone();
    late.sort();
    format!(
        "findings {findings:#?}\nwarnings {warnings:#?}\nlate {late:?}\nsuspicion {:?} holds {}\njobs {:?} {:?}\nsignal {} heartbeat {}",
        r.suspicion.as_deref().map(shape),
        r.suspicion_holds,
        r.jobs,
        r.by_status,
        r.newest_signal_age.is_some(),
        r.oldest_heartbeat_age.is_some(),
    )
}

/// Scans the table by the reference read and by the two-tier read, each scanner with its
/// own memory, after each step's statements, and asserts that every scan's reports agree.
/// Returns, per step, how many rows the two-tier read read in full and how many are active.
async fn agree(
    db: &TestDb,
    path: &Path,
    older_than: Option<u64>,
    steps: &[Vec<String>],
) -> Vec<(usize, usize)> {
    use jobwarden::app::scan::Read;
    use jobwarden::core::detect::OlderThan;
    let text = std::fs::read_to_string(path).unwrap();
    let config = jobwarden::config::parse(&text, path, None, &|_| None).expect("config");
    let mut store = Store::connect(&config).await.expect("connect");
    // MariaDB summarises only with the advised index: made here (once per table), so that
    // every config that can be summarised is, on each database.
    if let (Backend::MySql, false, Some(create)) = (
        db.backend,
        store.info().candidate_indexed,
        store.queries().candidate_index_advice(),
    ) {
        db.exec(&create).await;
        store.close().await;
        store = Store::connect(&config).await.expect("connect");
        assert!(store.info().candidate_indexed, "{create}");
    }
    let older_than = older_than.map(|m| OlderThan {
        after: std::time::Duration::from_secs(m * 60),
        force: false,
    });
    let mut reference = Scanner::new(store.clone());
    let mut two_tier = Scanner::new(store.clone());
    let mut out = Vec::new();
    // Each step is scanned twice: the second scan sees the set the first one read, so on
    // PostgreSQL and MariaDB it is a summary scan where the config allows one.
    let scans = steps
        .iter()
        .enumerate()
        .flat_map(|(n, s)| [(n, s, true), (n, s, false)]);
    for (n, step, first) in scans {
        if first {
            for sql in step {
                db.exec(sql).await;
            }
        }
        let a = reference
            .scan_by(&config, older_than, Read::Reference)
            .await
            .expect("reference scan");
        let b = two_tier
            .scan_by(&config, older_than, Read::TwoTier)
            .await
            .expect("two-tier scan");
        assert_eq!(
            gist(&a),
            gist(&b),
            "{:?} --older-than {older_than:?}, scan {n} ({}): the two-tier read differs from the reference",
            db.backend,
            if b.summarised { "a summary scan" } else { "a light read" }
        );
        if !first || step.iter().all(|sql| sql.contains("SET updated_at")) && n > 0 {
            assert_eq!(
                b.summarised,
                store.summarises(),
                "{:?}, scan {n}: the set did not change, so a summary scan stands for the light read where one can",
                db.backend
            );
        }
        let mut ages_a: Vec<(String, u64)> = a
            .findings
            .iter()
            .map(|f| (f.job_id.clone(), f.age_seconds))
            .collect();
        let mut ages_b: Vec<(String, u64)> = b
            .findings
            .iter()
            .map(|f| (f.job_id.clone(), f.age_seconds))
            .collect();
        ages_a.sort();
        ages_b.sort();
        // The scan-wide figures: the newest signal's age and the oldest running heartbeat's.
        for (what, x, y) in [
            ("newest signal", a.newest_signal_age, b.newest_signal_age),
            (
                "oldest heartbeat",
                a.oldest_heartbeat_age,
                b.oldest_heartbeat_age,
            ),
        ] {
            if let (Some(x), Some(y)) = (x, y) {
                assert!(
                    (x - y).abs() <= 2.0,
                    "{:?}, scan {n}: {what} {x} s old by the reference, {y} s by the two-tier read",
                    db.backend
                );
            }
        }
        for ((id, x), (_, y)) in ages_a.iter().zip(&ages_b) {
            assert!(
                x.abs_diff(*y) <= 2,
                "job {id}: age {x} s by the reference, {y} s by the two-tier read"
            );
        }
        assert!(!a.findings.is_empty(), "the fixture finds something");
        assert_eq!(a.read_in_full, a.jobs.values().sum::<u64>() as usize);
        if first {
            out.push((b.read_in_full, a.read_in_full));
        }
    }
    store.close().await;
    out
}

/// What happens to the table between scans: a re-queue, a queued job that starts, one
/// that leaves, one that beats again, a job new to the memory with an old heartbeat, one
/// that fails. `beat(minutes)` is a heartbeat that old, as the table stores it.
fn table_life(db: &TestDb, beat: &dyn Fn(f64) -> String) -> Vec<Vec<String>> {
    vec![
        vec![],
        vec![
            "UPDATE jobs SET status = 'queued' WHERE id = 3".into(),
            "UPDATE jobs SET status = 'running' WHERE id = 40".into(),
            "DELETE FROM jobs WHERE id = 7".into(),
            format!("UPDATE jobs SET updated_at = {} WHERE id = 9", beat(0.2)),
            format!(
                "INSERT INTO jobs (id, status, phase, created_at, updated_at) VALUES \
                 (500, 'running', 'eval', {}, {})",
                db.ago(300.7),
                beat(45.3)
            ),
        ],
        vec![
            "UPDATE jobs SET status = 'running' WHERE id = 3".into(),
            "UPDATE jobs SET status = 'failed' WHERE id = 2".into(),
            "DELETE FROM jobs WHERE id = 500".into(),
        ],
        // Only heartbeats move, the set stays: a young row goes silent, two go just past a
        // limit (seconds past 7m in training, 20m in eval), an old one and a row without a
        // heartbeat beat again, one jumps ahead of the clock.
        vec![
            format!("UPDATE jobs SET updated_at = {} WHERE id = 17", beat(47.6)),
            format!("UPDATE jobs SET updated_at = {} WHERE id = 1", beat(7.3)),
            format!("UPDATE jobs SET updated_at = {} WHERE id = 22", beat(20.3)),
            format!("UPDATE jobs SET updated_at = {} WHERE id = 4", beat(0.3)),
            format!("UPDATE jobs SET updated_at = {} WHERE id = 15", beat(0.6)),
            format!("UPDATE jobs SET updated_at = {} WHERE id = 5", beat(-33.1)),
        ],
    ]
}

/// The two-tier read finds what the reference read finds on heartbeats in every shape
/// (with a zone, naive in another zone, Unix seconds and milliseconds), with phases and
/// `--older-than`, across scans whose memory dates re-queued and newly seen jobs; and the
/// rows it reads in full are fewer than the active rows.
async fn two_tier_heartbeats(backend: Backend, beat: Beat) {
    let db = TestDb::new(backend).await;
    let (path, _) = candidate_table(&db, beat).await;
    let stored = |minutes: f64| stored_beat(&db, beat, minutes);
    for older_than in [None, Some(11), Some(90)] {
        let reads = agree(&db, &path, older_than, &table_life(&db, &stored)).await;
        // Most of the fixture's rows are old; the young ones are never read in full.
        let (full, active) = reads[reads.len() - 1];
        assert!(
            full > 0 && full < active,
            "{backend:?} {beat:?}: read {full} of {active} rows in full: {reads:?}"
        );
    }
    // With an index on (status, heartbeat) the summary takes the heartbeat's extremes from
    // its ends, and its read of the rows due by heartbeat is served by it.
    db.exec("CREATE INDEX jobs_status_beat ON jobs (status, updated_at)")
        .await;
    let text = std::fs::read_to_string(&path).unwrap();
    let config = jobwarden::config::parse(&text, &path, None, &|_| None).expect("config");
    let store = Store::connect(&config).await.expect("connect");
    assert!(
        store.info().candidate_indexed,
        "{backend:?}: the index is seen"
    );
    store.close().await;
    for older_than in [None, Some(11)] {
        agree(&db, &path, older_than, &table_life(&db, &stored)).await;
    }
}

async fn two_tier_zoned(backend: Backend) {
    two_tier_heartbeats(backend, Beat::Zoned).await
}
async fn two_tier_naive(backend: Backend) {
    two_tier_heartbeats(backend, Beat::Naive).await
}
async fn two_tier_epoch(backend: Backend) {
    two_tier_heartbeats(backend, Beat::Epoch).await
}

per_backend!(two_tier_read_agrees_on_zoned_heartbeats, two_tier_zoned);
per_backend!(
    two_tier_read_agrees_on_naive_heartbeats,
    two_tier_naive,
    postgres => Postgres,
    mysql => MySql
);
per_backend!(two_tier_read_agrees_on_epoch_heartbeats, two_tier_epoch);

/// The summary read names every active row whose heartbeat is at or past its status word's
/// limit (less the second `pick` allows), NULL or more than a minute ahead, with at most
/// two seconds to spare, in every shape of heartbeat and with the index or without: a
/// bound seconds too tight or too loose fails here.
async fn due_by_heartbeat(backend: Backend, beat: Beat) {
    let db = TestDb::new(backend).await;
    let (ty, zone) = beat_column(&db, beat);
    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {t}, created_at {ts}, updated_at {ty} NULL)",
        t = db.ty("text"),
        ts = db.ty("ts"),
    ))
    .await;
    // (id, status, heartbeat seconds ago or None, whether the read must name it). The limit
    // of `running` is 20m: due from 1199 s (`pick` allows a second), named from 1198 s.
    let rows: &[(u32, &str, Option<i64>, bool)] = &[
        (1, "running", Some(1190), false),
        (2, "running", Some(1196), false),
        (3, "running", Some(1199), true),
        (4, "running", Some(1201), true),
        (5, "running", Some(1260), true),
        (6, "running", Some(30), false),
        (7, "running", None, true),
        (8, "running", Some(-180), true),
        (9, "running", Some(-30), false),
        (10, "queued", Some(5000), false),
        (11, "queued", None, true),
        (12, "queued", Some(-180), true),
    ];
    for (id, status, ago, _) in rows {
        let value = match ago {
            None => "NULL".to_string(),
            // Milliseconds for the rows past the limit.
            Some(s) if beat == Beat::Epoch && *s > 1000 && id % 2 == 0 => {
                format!("({} * 1000)", db.epoch_ago(*s as f64 / 60.0))
            }
            Some(s) => stored_beat(&db, beat, *s as f64 / 60.0),
        };
        db.exec(&format!(
            "INSERT INTO jobs VALUES ({id}, '{status}', {}, {value})",
            db.ago(60.0)
        ))
        .await;
    }
    let mut config = TestConfig::new(db.jobwarden_url())
        .statuses("pending = [\"queued\"]\nrunning = [\"running\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]")
        .heartbeat_rule("hb", "20m", "action = \"alert\"");
    if let Some(zone) = zone {
        config = config.database(&format!("timezone = \"{zone}\""));
    }
    let path = config.write(db.dir().join("jw.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let config = jobwarden::config::parse(&text, &path, None, &|_| None).expect("config");
    let limits: std::collections::BTreeMap<String, std::time::Duration> =
        [("running".to_string(), std::time::Duration::from_secs(1200))].into();
    let expected: Vec<String> = rows
        .iter()
        .filter(|r| r.3)
        .map(|r| r.0.to_string())
        .collect();
    for index in [false, true] {
        if index {
            db.exec("CREATE INDEX jobs_status_beat ON jobs (status, updated_at)")
                .await;
        }
        let store = Store::connect(&config).await.expect("connect");
        assert_eq!(store.info().candidate_indexed, index);
        // MariaDB summarises only with the index (without it the summary fetches every
        // active row again per part); PostgreSQL's summary costs less CPU either way.
        assert_eq!(
            store.summarises(),
            index || backend == Backend::Postgres,
            "{backend:?}, index {index}"
        );
        let estimate = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let read = store
            .summary_read(Some(&limits), estimate)
            .await
            .expect("the summary read")
            .expect("a summary stands for the light read here");
        let mut named: Vec<String> = read
            .suspects
            .expect("the rows due by heartbeat are read")
            .into_iter()
            .map(|j| j.id)
            .collect();
        named.sort_by_key(|id| id.parse::<u32>().unwrap_or(0));
        assert_eq!(
            named, expected,
            "{backend:?} {beat:?}, index {index}: the rows named by heartbeat"
        );
        assert_eq!(
            read.summary.groups.iter().map(|g| g.1).sum::<u64>(),
            rows.len() as u64,
            "{backend:?} {beat:?}: the groups count every active row"
        );
        store.close().await;
    }
}

async fn due_zoned(backend: Backend) {
    due_by_heartbeat(backend, Beat::Zoned).await
}
async fn due_naive(backend: Backend) {
    due_by_heartbeat(backend, Beat::Naive).await
}
async fn due_epoch(backend: Backend) {
    due_by_heartbeat(backend, Beat::Epoch).await
}

per_backend!(summary_read_names_rows_due_on_zoned_heartbeats, due_zoned, postgres => Postgres, mysql => MySql);
per_backend!(summary_read_names_rows_due_on_naive_heartbeats, due_naive, postgres => Postgres, mysql => MySql);
per_backend!(summary_read_names_rows_due_on_epoch_heartbeats, due_epoch, postgres => Postgres, mysql => MySql);

/// A table with every other signal: `status_since`, progress in a JSON array, the heartbeat
/// also as text inside JSON, time-in-status rules, local pids (one dead), families, a row
/// with no heartbeat and, on SQLite, text timestamps in several shapes and one that is not a
/// time. Returns the config reading the heartbeat column, the one reading it from JSON, and
/// one without progress or parents.
async fn signals_table(db: &TestDb) -> (PathBuf, PathBuf, PathBuf) {
    db.exec(&format!(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {t}, phase {t} NULL, created_at {ts}, \
         updated_at {ts} NULL, started_at {ts} NULL, meta {json} NULL, pid INTEGER NULL, \
         host {t} NULL, parent_id INTEGER NULL)",
        t = db.ty("text"),
        ts = db.ty("ts"),
        json = db.ty("json"),
    ))
    .await;
    // `meta`: the heartbeat as RFC 3339 text `minutes` ago, and `steps` progress entries.
    let meta = |minutes: f64, steps: usize| -> String {
        let s = (minutes * 60.0) as i64;
        let list = (0..steps)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match db.backend {
            Backend::Postgres => format!(
                "jsonb_build_object('beat', to_char((now() - interval '{s} seconds') AT TIME ZONE 'UTC', \
                 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'steps', jsonb_build_array({list}))"
            ),
            Backend::MySql => format!(
                "JSON_OBJECT('beat', DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL {s} SECOND, \
                 '%Y-%m-%dT%H:%i:%sZ'), 'steps', JSON_ARRAY({list}))"
            ),
            Backend::Sqlite => format!(
                "json_object('beat', strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-{s} seconds'), \
                 'steps', json_array({list}))"
            ),
        }
    };
    let host = jobwarden::adapters::process::hostname();
    let mut id = 0;
    let ages: &[f64] = &[0.4, 6.6, 8.3, 11.2, 16.4, 23.1, 95.2, 401.7];
    let mut rows: Vec<String> = Vec::new();
    for status in ["running", "queued"] {
        for phase in ["training", "eval"] {
            for (i, age) in ages.iter().enumerate() {
                id += 1;
                rows.push(format!(
                    "({id}, '{status}', '{phase}', {}, {}, {}, {}, NULL, NULL, NULL)",
                    db.ago(2000.3 - *age),
                    db.ago(*age),
                    db.ago(age * 0.7 + 1.3),
                    meta(age + 0.7, i % 3)
                ));
            }
        }
    }
    let dead = common::dead_pid();
    let live = std::process::id();
    rows.extend([
        // No heartbeat yet, created 33 minutes ago.
        format!(
            "(101, 'running', 'eval', {}, NULL, NULL, NULL, NULL, NULL, NULL)",
            db.ago(33.3)
        ),
        // Created ahead of the clock.
        format!(
            "(102, 'running', 'eval', {}, {}, NULL, {}, NULL, NULL, NULL)",
            db.ago(-93.7),
            db.ago(0.9),
            meta(0.9, 1)
        ),
        // Processes on this host: one gone, one alive; one gone on another host.
        format!(
            "(103, 'running', 'eval', {}, {}, NULL, {}, {dead}, '{host}', NULL)",
            db.ago(50.1),
            db.ago(0.3),
            meta(0.3, 1)
        ),
        format!(
            "(104, 'running', 'eval', {}, {}, NULL, {}, {live}, '{host}', NULL)",
            db.ago(50.1),
            db.ago(0.3),
            meta(0.3, 1)
        ),
        format!(
            "(105, 'running', 'eval', {}, {}, NULL, {}, {dead}, 'elsewhere-9', NULL)",
            db.ago(50.1),
            db.ago(0.3),
            meta(0.3, 1)
        ),
        // A running child of a completed parent; a running parent whose children finished.
        format!(
            "(106, 'completed', NULL, {}, {}, NULL, NULL, NULL, NULL, NULL)",
            db.ago(90.0),
            db.ago(40.0)
        ),
        format!(
            "(107, 'running', 'eval', {}, {}, NULL, {}, NULL, NULL, 106)",
            db.ago(50.1),
            db.ago(0.3),
            meta(0.3, 1)
        ),
        format!(
            "(108, 'running', 'eval', {}, {}, NULL, {}, NULL, NULL, NULL)",
            db.ago(50.1),
            db.ago(0.3),
            meta(0.3, 1)
        ),
        format!(
            "(109, 'failed', NULL, {}, {}, NULL, NULL, NULL, NULL, 108)",
            db.ago(50.1),
            db.ago(20.0)
        ),
        format!(
            "(110, 'completed', NULL, {}, {}, NULL, NULL, NULL, NULL, 108)",
            db.ago(50.1),
            db.ago(20.0)
        ),
    ]);
    if db.backend == Backend::Sqlite {
        rows.extend([
            // Text in other shapes: Unix seconds, a space and no zone, and not a time.
            "(111, 'running', 'eval', '2026-01-01 00:00:00', CAST(strftime('%s', 'now', '-3 minutes') AS TEXT), NULL, NULL, NULL, NULL, NULL)".into(),
            "(112, 'running', 'eval', '2026-01-01 00:00:00', datetime('now', '-29 minutes'), NULL, NULL, NULL, NULL, NULL)".into(),
            "(113, 'running', 'eval', '2026-01-01 00:00:00', 'not a time', NULL, NULL, NULL, NULL, NULL)".into(),
        ]);
    }
    for row in rows {
        db.exec(&format!("INSERT INTO jobs VALUES {row}")).await;
    }
    let queue = "[[rules]]\nname = \"queue\"\nstatuses = [\"queued\"]\nsignal = \"created\"\n\
                 after = \"15m\"\naction = \"alert\"";
    // Without progress or parents: the one PostgreSQL and MariaDB scan by a summary.
    let summary = phased_config(
        db,
        "phase = \"phase\"\npid = \"pid\"\nhost = \"host\"\nstatus_since = \"started_at\"",
    )
    .section(queue)
    .write(db.dir().join("summary.toml"));
    let config = phased_config(
        db,
        "phase = \"phase\"\nprogress = \"meta.steps\"\nparent_id = \"parent_id\"\npid = \"pid\"\nhost = \"host\"",
    )
    .section(
            "[[rules]]\nname = \"steps\"\nstatuses = [\"running\"]\nsignal = \"progress\"\n\
             after = \"10m\"\naction = \"alert\"",
        )
        .section(queue);
    let column = config
        .clone()
        .jobs("status_since = \"started_at\"")
        .write(db.dir().join("column.toml"));
    let json = config.text().replace(
        "heartbeat_at = \"updated_at\"",
        "heartbeat_at = \"meta.beat\"",
    );
    let json_path = db.dir().join("json.toml");
    std::fs::write(&json_path, json).unwrap();
    (column, json_path, summary)
}

/// The two-tier read agrees with the reference on `status_since`, progress in JSON, a
/// heartbeat in JSON text, time in status, dead processes, families and (SQLite) text
/// timestamps, across scans; and it reads fewer rows in full than there are.
async fn two_tier_signals(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (column, json, summary) = signals_table(&db).await;
    for path in [&column, &json, &summary] {
        for older_than in [None, Some(12)] {
            let reads = agree(&db, path, older_than, &table_life(&db, &|m| db.ago(m))).await;
            let (full, active) = reads[reads.len() - 1];
            assert!(
                full > 0 && full < active,
                "{backend:?} {}: read {full} of {active} rows in full: {reads:?}",
                path.display()
            );
        }
    }
}

per_backend!(two_tier_read_agrees_on_every_signal, two_tier_signals);

/// Worker liveness (`[workers]`): the two-tier read picks and judges the jobs of silent and
/// gone workers (and of none) as the reference does, while their workers go quiet, come back
/// and leave across scans; the live workers' jobs, whatever their own heartbeat, are never
/// read in full.
async fn two_tier_workers(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.workers_table("").await;
    db.exec(&format!(
        "CREATE TABLE jobs (id {big} PRIMARY KEY, status {t}, created_at {ts}, updated_at {ts}, \
         worker_id {big})",
        big = db.ty("bigint"),
        t = db.ty("text"),
        ts = db.ty("ts"),
    ))
    .await;
    let workers: Vec<String> = [(1, 0.1), (2, 45.0), (3, 0.2), (4, 50.0)]
        .iter()
        .map(|(id, beat)| format!("({id}, {})", db.ago(*beat)))
        .collect();
    db.insert_rows("jw_workers", &workers).await;
    // Worker 0 is NULL, worker 5 has no row; every third job has no heartbeat of its own.
    let jobs: Vec<String> = (1..=60)
        .map(|i| {
            let beat = match i % 3 {
                0 => "NULL".to_string(),
                1 => db.ago(50.0),
                _ => db.ago(1.0),
            };
            let worker = match i % 6 {
                0 => "NULL".to_string(),
                w => w.to_string(),
            };
            format!("({i}, 'running', {}, {beat}, {worker})", db.ago(120.0))
        })
        .collect();
    db.insert_rows("jobs", &jobs).await;
    let path = TestConfig::new(db.jobwarden_url())
        .jobs("worker = \"worker_id\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section("[workers]\ntable = \"jw_workers\"\nheartbeat_at = \"last_heartbeat\"")
        .write(db.dir().join("workers.toml"));
    let steps = vec![
        vec![],
        vec![
            format!(
                "UPDATE jw_workers SET last_heartbeat = {} WHERE id = 2",
                db.ago(0.1)
            ),
            "DELETE FROM jw_workers WHERE id = 3".into(),
        ],
        vec!["UPDATE jobs SET worker_id = NULL WHERE worker_id = 4".into()],
    ];
    for older_than in [None, Some(40)] {
        let reads = agree(&db, &path, older_than, &steps).await;
        let (full, active) = reads[reads.len() - 1];
        assert!(
            full > 0 && full < active,
            "{backend:?}: read {full} of {active} rows in full: {reads:?}"
        );
    }
}

per_backend!(two_tier_read_agrees_on_worker_liveness, two_tier_workers);
