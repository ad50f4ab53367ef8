//! What one scan of a large jobs table costs, next to the bare SQL it runs, on PostgreSQL,
//! MySQL/MariaDB or SQLite.
//!
//! The table is shaped like a Supabase `research_jobs` table: `JW_BENCH_ROWS` rows (default
//! 1,000,000), of which `JW_BENCH_ACTIVE` (default 10,000) are `running`/`pending`, spread
//! evenly over the id range (so over the table's pages: an index scan cannot read them as one
//! run), the rest `completed`/`failed`/`cancelled`; an index on `status`. One active row in five
//! is the child (`main_job_id`) of the active row before it, one finished row in four of the
//! finished row before it; with `JW_BENCH_PARENTS=1` the config names that column as its
//! `parent_id`, as the Supabase config does. The rows come from one
//! generator (`bench_row`), written as multi-row `INSERT`s in one transaction, so the three
//! databases hold the same data. A table is built once as `jw_bench_jobs_<rows>` and reused
//! while its line in `jw_bench_meta` (layout version, row and active counts, when it was built)
//! and its row count match.
//!
//! Each iteration times, in this order so drift hits every variant alike:
//!   (a) the scan's exact `SELECT` through the database's own sqlx driver (`PgPool`,
//!       `MySqlPool`, `SqlitePool`): no jobwarden code (the baseline);
//!   (b) `Store::snapshot()`: the clock query, the same `SELECT`, and decoding into `JobRow`s;
//!   (c) `Scanner::scan()`: one full scan (snapshot, pid checks, detection, report);
//!   (d) `SELECT count(*)` of the whole table through the bare driver: what reading every row
//!       costs;
//!   (e) (a) again, then every value of every row read into a `String` or an `f64`: what any
//!       client that looks at the values pays, with no jobwarden code.
//!
//! Around the table it prints the scan query's plan (the status index at work) and, on
//! PostgreSQL, the server's execution time and how many pages the scan touched against the
//! table's size, from one `EXPLAIN (ANALYZE, BUFFERS)` after the timed loop.
//!
//! The result is one markdown table on stdout, with ratios against (a) measured in the same
//! run. With `JW_BENCH_SUMMARY=<file>` it also appends its headline rows to that file, one
//! tab-separated line each, for `scripts/bench-all`. Speed is reported here, never asserted.
//! Progress notes go to stderr.
//!
//! The rows' timestamps are written relative to the moment the table was built. So that a
//! cached table yields the same findings on every run, the rules' `after` values are shifted by
//! the table's age: the same rows are stalled whenever the bench runs.
//!
//! Environment: `JW_BENCH_DB` (`postgres`, the default, `mariadb` or `sqlite`), `JW_BENCH_ROWS`,
//! `JW_BENCH_ACTIVE`, `JW_BENCH_ITERS` (default 30), `JW_BENCH_WARMUP` (default 3),
//! `JW_BENCH_INDEX` (`status`, the default, or `advised`: the indexes `validate --connect`
//! advises exist too), `JW_BENCH_HB_AFTER` (the heartbeat rule's minutes, default 30: 360
//! finds nothing stalled, 310 finds 117), `JW_BENCH_PROGRESS` (1, the default: the progress
//! rule is on), `JW_BENCH_FULL_READS` (1, the default: (a) to (e) run), `JW_BENCH_PARENTS`
//! (0, the default),
//! `JW_BENCH_URL` (default `postgres://postgres@127.0.0.1:5432/test`,
//! `mysql://root@127.0.0.1:3306/test`, or `sqlite://<target>/bench-data/jw_bench.sqlite`).
//!
//! Run it with `cargo bench --bench scan` or `scripts/bench`. Built by `cargo test --benches`
//! (or `--all-targets`) it is started without `--bench` and exits at once: it is not a test.

use std::path::Path;
use std::time::Duration;

mod common;

use common::{
    append_summary, env_number as number, median, p90, process_cpu_ns, summary_line, thousands,
    ServerCpu,
};
use jobwarden::adapters::store::{Children, Store};
use jobwarden::app::scan::{Read, Scanner};
use jobwarden::config;
use jobwarden::core::sql::Dialect;
use sqlx::mysql::MySqlRow;
use sqlx::{MySqlPool, PgPool, Row, SqlitePool};
use tokio::time::Instant;

/// Bumped whenever the table's layout or contents change, so a stale cached table is rebuilt.
const LAYOUT: &str = "jobwarden-bench v3";
/// Rows per `INSERT` while building a table.
const BATCH: u64 = 1000;
/// The rules' thresholds for a table built just now.
const PROGRESS_AFTER: Duration = Duration::from_secs(60 * 60);

struct Settings {
    /// The heartbeat rule's `after` (before the table's age is added).
    heartbeat_after: Duration,
    /// Whether the progress rule is on.
    progress: bool,
    /// Whether the variants that read every active row in full ((a) to (e)) run: without
    /// them, nothing evicts the light read's index pages between two-tier scans.
    full_reads: bool,
    /// The advised index (`validate --connect`'s) exists, or only the one on `status`.
    advised_index: bool,
    /// The config names the parent column (`parent_id = "main_job_id"`, as the Supabase
    /// config does); with `advised_index`, the parent column's advised index exists too.
    parents: bool,
    dialect: Dialect,
    rows: u64,
    active: u64,
    iters: usize,
    warmup: usize,
    url: String,
    url_from_env: bool,
}

/// One variant's timings, in milliseconds, and the CPU it cost, in nanoseconds: this
/// process's (jobwarden or the bare driver) and the database server's.
struct Samples {
    label: String,
    ms: Vec<f64>,
    client_ns: Vec<u64>,
    server_ns: Vec<u64>,
}

/// Where a measurement of one variant started.
struct Start {
    server: std::collections::HashMap<u64, u64>,
    client: u64,
    at: Instant,
}

/// Takes the clock and the two CPU counters around each variant. The server's threads are
/// read outside the process's own CPU window, so reading them costs the variant nothing.
struct Meter {
    server: Option<ServerCpu>,
}

impl Meter {
    fn new(dialect: Dialect, url: &str) -> Meter {
        let names: &'static [&'static str] = match dialect {
            Dialect::Postgres => &["postgres"],
            Dialect::MySql => &["mariadbd", "mysqld"],
            Dialect::Sqlite => &[],
        };
        let local = url.contains("@127.0.0.1") || url.contains("@localhost");
        let server = ServerCpu::new(names);
        Meter {
            server: (local && server.visible()).then_some(server),
        }
    }

    fn start(&self) -> Start {
        let server = self
            .server
            .as_ref()
            .map(ServerCpu::read)
            .unwrap_or_default();
        Start {
            server,
            client: process_cpu_ns(),
            at: Instant::now(),
        }
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/scan: not started by `cargo bench`; skipping (run `scripts/bench`)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("start the Tokio runtime");
    runtime.block_on(run(settings()));
}

fn settings() -> Settings {
    let rows = number("JW_BENCH_ROWS", 1_000_000);
    let active = number("JW_BENCH_ACTIVE", 10_000);
    assert!(rows > 0, "JW_BENCH_ROWS must be at least 1");
    assert!(
        active <= rows,
        "JW_BENCH_ACTIVE ({active}) must not exceed JW_BENCH_ROWS ({rows})"
    );
    let iters = usize::try_from(number("JW_BENCH_ITERS", 30)).expect("JW_BENCH_ITERS fits usize");
    assert!(iters > 0, "JW_BENCH_ITERS must be at least 1");
    let warmup = usize::try_from(number("JW_BENCH_WARMUP", 3)).expect("JW_BENCH_WARMUP fits usize");
    let db = std::env::var("JW_BENCH_DB").unwrap_or_else(|_| "postgres".to_string());
    let dialect = match db.as_str() {
        "postgres" | "postgresql" => Dialect::Postgres,
        "mariadb" | "mysql" => Dialect::MySql,
        "sqlite" => Dialect::Sqlite,
        other => panic!("JW_BENCH_DB={other:?}: write postgres, mariadb or sqlite"),
    };
    let env_url = std::env::var("JW_BENCH_URL").ok();
    if let Some(url) = &env_url {
        assert_eq!(
            Dialect::from_url(url),
            Some(dialect),
            "JW_BENCH_URL is not a {db} URL"
        );
    }
    let index = std::env::var("JW_BENCH_INDEX").unwrap_or_else(|_| "status".to_string());
    assert!(
        index == "status" || index == "advised",
        "JW_BENCH_INDEX={index:?}: write status or advised"
    );
    Settings {
        heartbeat_after: Duration::from_secs(number("JW_BENCH_HB_AFTER", 30) * 60),
        progress: number("JW_BENCH_PROGRESS", 1) != 0,
        full_reads: number("JW_BENCH_FULL_READS", 1) != 0,
        advised_index: index == "advised",
        parents: number("JW_BENCH_PARENTS", 0) != 0,
        dialect,
        rows,
        active,
        iters,
        warmup,
        url_from_env: env_url.is_some(),
        url: env_url.unwrap_or_else(|| default_url(dialect)),
    }
}

fn default_url(dialect: Dialect) -> String {
    match dialect {
        Dialect::Postgres => "postgres://postgres@127.0.0.1:5432/test".to_string(),
        Dialect::MySql => "mysql://root@127.0.0.1:3306/test".to_string(),
        Dialect::Sqlite => {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            let dir = Path::new(&target).join("bench-data");
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            format!("sqlite://{}/jw_bench.sqlite?mode=rwc", dir.display())
        }
    }
}

/// A plain sqlx pool of the database's own driver: the baseline, and the table's builder.
enum Bare {
    Pg(PgPool),
    My(MySqlPool),
    Lite(SqlitePool),
}

/// Runs the same expression on whichever pool `bare` holds.
macro_rules! on_pool {
    ($bare:expr, $p:ident => $body:expr) => {
        match $bare {
            Bare::Pg($p) => $body,
            Bare::My($p) => $body,
            Bare::Lite($p) => $body,
        }
    };
}

impl Bare {
    async fn connect(dialect: Dialect, url: &str) -> Result<Bare, sqlx::Error> {
        /// One connection of one driver: the bare query never shares it.
        async fn one<DB: sqlx::Database>(url: &str) -> Result<sqlx::Pool<DB>, sqlx::Error> {
            sqlx::pool::PoolOptions::<DB>::new()
                .max_connections(1)
                .connect(url)
                .await
        }
        Ok(match dialect {
            Dialect::Postgres => Bare::Pg(one(url).await?),
            Dialect::MySql => Bare::My(one(url).await?),
            Dialect::Sqlite => Bare::Lite(one(url).await?),
        })
    }

    /// Runs a query and returns how many rows it gave.
    async fn fetch_len(&self, sql: &str) -> Result<usize, sqlx::Error> {
        on_pool!(self, p => sqlx::query(sql).fetch_all(p).await.map(|r| r.len()))
    }

    /// Runs a query and reads every value of every row into a `String` or an `f64` (the
    /// scan query has only those two kinds of column), as any client that looks at the
    /// values must. Returns how many values were not NULL.
    async fn fetch_values(&self, sql: &str) -> Result<usize, sqlx::Error> {
        on_pool!(self, p => {
            let rows = sqlx::query(sql).fetch_all(p).await?;
            let mut values = 0;
            for row in &rows {
                for i in 0..row.len() {
                    let present = match row.try_get::<Option<String>, _>(i) {
                        Ok(text) => text.is_some(),
                        Err(_) => row.try_get::<Option<f64>, _>(i)?.is_some(),
                    };
                    values += usize::from(present);
                }
            }
            Ok(values)
        })
    }

    async fn int(&self, sql: &str) -> Result<i64, sqlx::Error> {
        on_pool!(self, p => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await)
    }

    async fn float(&self, sql: &str) -> Result<f64, sqlx::Error> {
        on_pool!(self, p => sqlx::query_scalar::<_, f64>(sql).fetch_one(p).await)
    }

    async fn text(&self, sql: &str) -> Result<Option<String>, sqlx::Error> {
        on_pool!(self, p => sqlx::query_scalar::<_, String>(sql).fetch_optional(p).await)
    }

    async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        on_pool!(self, p => sqlx::raw_sql(sql).execute(p).await.map(|_| ()))
    }

    /// Runs every statement in one transaction.
    async fn execute_all(
        &self,
        statements: impl Iterator<Item = String>,
    ) -> Result<(), sqlx::Error> {
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for sql in statements {
                sqlx::raw_sql(&sql).execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }

    async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }

    fn driver(&self) -> &'static str {
        match self {
            Bare::Pg(_) => "`sqlx::PgPool`",
            Bare::My(_) => "`sqlx::MySqlPool`",
            Bare::Lite(_) => "`sqlx::SqlitePool`",
        }
    }

    async fn version(&self) -> String {
        let sql = match self {
            Bare::Pg(_) => "SELECT 'PostgreSQL ' || split_part(current_setting('server_version'), ' ', 1)",
            Bare::My(_) => "SELECT CONCAT(IF(VERSION() LIKE '%MariaDB%', 'MariaDB ', 'MySQL '), SUBSTRING_INDEX(VERSION(), '-', 1))",
            Bare::Lite(_) => "SELECT 'SQLite ' || sqlite_version()",
        };
        self.text(sql)
            .await
            .expect("read the server version")
            .unwrap_or_default()
    }

    /// The scan query's plan, in one line.
    async fn plan(&self, sql: &str) -> String {
        match self {
            Bare::Pg(p) => sqlx::query(&format!("EXPLAIN {sql}"))
                .fetch_one(p)
                .await
                .and_then(|row| row.try_get::<String, _>(0))
                .expect("EXPLAIN the scan query"),
            Bare::My(p) => sqlx::query(&format!("EXPLAIN {sql}"))
                .fetch_all(p)
                .await
                .expect("EXPLAIN the scan query")
                .iter()
                .map(|row| {
                    format!(
                        "type {}, key {}, rows {}, {}",
                        my_text(row, "type"),
                        my_text(row, "key"),
                        my_text(row, "rows"),
                        my_text(row, "Extra")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            Bare::Lite(p) => sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(p)
                .await
                .expect("EXPLAIN QUERY PLAN the scan query")
                .iter()
                .map(|row| row.try_get::<String, _>("detail").unwrap_or_default())
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

/// One column of MySQL's `EXPLAIN`, whatever type the server gave it.
fn my_text(row: &MySqlRow, name: &str) -> String {
    if let Ok(v) = row.try_get::<Option<String>, _>(name) {
        return v.unwrap_or_else(|| "NULL".into());
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(name) {
        return v.map_or_else(
            || "NULL".into(),
            |b| String::from_utf8_lossy(&b).into_owned(),
        );
    }
    if let Ok(v) = row.try_get::<Option<u64>, _>(name) {
        return v.map_or_else(|| "NULL".into(), |n| n.to_string());
    }
    row.try_get::<Option<i64>, _>(name)
        .ok()
        .flatten()
        .map_or_else(|| "?".into(), |n| n.to_string())
}

async fn run(s: Settings) {
    let table = format!("jw_bench_jobs_{}", s.rows);
    let bare = Bare::connect(s.dialect, &s.url).await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to {} (set JW_BENCH_URL): {e}",
            config::redact_url(&s.url)
        )
    });
    let built_at = ensure_table(&bare, s.dialect, &table, s.rows, s.active).await;
    let now = bare
        .float(s.dialect.now_epoch())
        .await
        .expect("read the database clock");
    let age = Duration::from_secs((now - built_at as f64).max(0.0).ceil() as u64);

    let cfg = bench_config(&s, &table, age);
    set_advised_index(&bare, &cfg, s.advised_index).await;
    let store = Store::connect(&cfg)
        .await
        .expect("jobwarden connects to the bench table");
    // As the store runs it: naming the advised index where it does (MariaDB).
    let light_sql = store
        .queries()
        .light_forced
        .clone()
        .unwrap_or_else(|| store.queries().light.clone());
    let counts_sql = counting_queries(s.dialect, &table, s.heartbeat_after + age);
    let sql = store.queries().scan.clone();
    let plan = bare.plan(&sql).await;
    let light_plan = bare.plan(&light_sql).await;
    let status_indexed = store.info().status_indexed;
    let mut scanner = Scanner::new(store.clone());
    let mut two_tier = Scanner::new(store.clone());
    let mut light_only = Scanner::new(store.clone());
    let summarises = store.summarises();
    let version = bare.version().await;
    let driver = bare.driver();

    let mut a = Samples::new(format!("(a) bare scan `SELECT`, {driver} (baseline)"));
    let mut b = Samples::new("(b) `store.snapshot()`: clock + same `SELECT` + decode".into());
    let mut c = Samples::new("(c) reference scan: every active row read in full and judged".into());
    let mut f = Samples::new(
        "(f) the scan as run: a summary scan while the set stays (else the light read), then the candidates in full"
            .into(),
    );
    let mut i_light = Samples::new(
        "(i) two-tier scan without the summary: light read, then the candidates in full".into(),
    );
    let mut j = Samples::new(
        "(j) the summary read alone (clock, summary, rows due by heartbeat: one statement), through the store"
            .into(),
    );
    let mut summarised = 0;
    let mut g = Samples::new(format!(
        "(g) a generic exporter's two counts (active by status; running and stale), {driver}"
    ));
    let mut h = Samples::new(format!("(h) the light read alone, {driver}"));
    let mut read_in_full = 0;
    let mut d = Samples::new(format!("(d) `SELECT count(*)` whole table, {driver}"));
    let mut e = Samples::new(format!(
        "(e) same `SELECT`, {driver}, every value read into a `String` or `f64`"
    ));
    let count_sql = format!("SELECT count(*) FROM {}", s.dialect.quote(&table));
    let mut findings = 0;
    let meter = Meter::new(s.dialect, &s.url);
    let mut jobs_by_class = String::new();
    eprintln!(
        "benches/scan: {version}: {} warm-up + {} timed iterations",
        s.warmup, s.iters
    );
    for i in 0..s.warmup + s.iters {
        let timed = i >= s.warmup;

        if s.full_reads {
            let t = meter.start();
            let n = bare.fetch_len(&sql).await.expect("(a) the bare scan query");
            a.record(timed, &meter, t);
            assert_eq!(n as u64, s.active, "(a) returns every active row");

            let t = meter.start();
            let snapshot = store
                .snapshot(Children::Read)
                .await
                .expect("(b) store.snapshot()");
            b.record(timed, &meter, t);
            assert_eq!(
                snapshot.jobs.len() as u64,
                s.active,
                "(b) reads every active row"
            );
            drop(snapshot);

            let t = meter.start();
            let report = scanner
                .scan_by(&cfg, None, Read::Reference)
                .await
                .expect("(c) the reference scan");
            c.record(timed, &meter, t);
            findings = report.findings.len();
            jobs_by_class = report
                .jobs
                .iter()
                .map(|(class, n)| format!("{n} {}", class.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            drop(report);
        }

        let t = meter.start();
        let light = two_tier
            .scan_by(&cfg, None, Read::TwoTier)
            .await
            .expect("(f) two-tier scan");
        f.record(timed, &meter, t);
        if s.full_reads {
            assert_eq!(light.findings.len(), findings, "(f) finds what (c) finds");
        } else {
            findings = light.findings.len();
        }
        read_in_full = light.read_in_full;
        summarised += usize::from(timed && light.summarised);
        let found: std::collections::BTreeSet<String> =
            light.findings.iter().map(|f| f.job_id.clone()).collect();
        let found_at = light.checked_at;
        drop(light);

        let t = meter.start();
        let light = light_only
            .scan_by(&cfg, None, Read::Light)
            .await
            .expect("(i) two-tier scan without the summary");
        i_light.record(timed, &meter, t);
        // (i) scans after (f): a row may cross its threshold in between, no other may differ.
        let later = (light.checked_at - found_at).max(0.0).ceil() as u64 + 1;
        let crossed = |f: &jobwarden::core::detect::Finding| {
            f.age_seconds.saturating_sub(f.threshold_seconds) <= later
        };
        for f in &light.findings {
            assert!(
                found.contains(&f.job_id) || crossed(f),
                "(i) finds job {} that (f) does not, {later} s earlier: {}",
                f.job_id,
                f.message
            );
        }
        let found_light: std::collections::BTreeSet<&str> =
            light.findings.iter().map(|f| f.job_id.as_str()).collect();
        let missing: Vec<&String> = found
            .iter()
            .filter(|id| !found_light.contains(id.as_str()))
            .collect();
        assert!(missing.is_empty(), "(i) misses what (f) finds: {missing:?}");
        drop(light);

        if summarises {
            let t = meter.start();
            // The scanner of (f), which keeps the last light read: its summary read takes
            // the rows due by heartbeat too.
            two_tier
                .summary(&cfg, None)
                .await
                .expect("(j) the summary read");
            j.record(timed, &meter, t);
        }

        let t = meter.start();
        for sql in &counts_sql {
            bare.fetch_len(sql).await.expect("(g) the counting queries");
        }
        g.record(timed, &meter, t);

        let t = meter.start();
        let n = bare
            .fetch_len(&light_sql)
            .await
            .expect("(h) the light read");
        h.record(timed, &meter, t);
        assert_eq!(n as u64, s.active, "(h) returns every active row");

        if !s.full_reads {
            continue;
        }
        let t = meter.start();
        let count = bare.int(&count_sql).await.expect("(d) count(*)");
        d.record(timed, &meter, t);
        assert_eq!(count as u64, s.rows, "(d) counts every row");

        let t = meter.start();
        let values = bare
            .fetch_values(&sql)
            .await
            .expect("(e) the scan query, read");
        e.record(timed, &meter, t);
        assert!(
            values as u64 >= 2 * s.active,
            "(e) reads at least ids and statuses"
        );
    }

    let server = match &bare {
        Bare::Pg(pool) => Some(server_side(pool, &sql, &table).await),
        _ => None,
    };

    let (base_median, base_p90) = if a.ms.is_empty() {
        (f64::NAN, f64::NAN)
    } else {
        (median(&a.ms), p90(&a.ms))
    };
    let db = match s.dialect {
        Dialect::Postgres => "postgres",
        Dialect::MySql => "mariadb",
        Dialect::Sqlite => "sqlite",
    };
    let mut command = format!(
        "JW_BENCH_DB={db} JW_BENCH_ROWS={} JW_BENCH_ACTIVE={} JW_BENCH_ITERS={} JW_BENCH_WARMUP={} JW_BENCH_INDEX={} JW_BENCH_HB_AFTER={} JW_BENCH_PROGRESS={} JW_BENCH_FULL_READS={} JW_BENCH_PARENTS={}",
        s.rows,
        s.active,
        s.iters,
        s.warmup,
        if s.advised_index { "advised" } else { "status" },
        s.heartbeat_after.as_secs() / 60,
        u8::from(s.progress),
        u8::from(s.full_reads),
        u8::from(s.parents)
    );
    if s.url_from_env {
        command.push_str(&format!(" JW_BENCH_URL='{}'", config::redact_url(&s.url)));
    }
    command.push_str(" cargo bench --bench scan");

    println!(
        "## jobwarden scan benchmark: {version}, {} rows",
        thousands(s.rows)
    );
    println!();
    println!("- command: `{command}` (or `scripts/bench` with the same environment)");
    println!(
        "- table: `{table}`, {} rows, {} active{}, spread evenly over the ids; index on `status`; one active row in five a child of the active row before it (`main_job_id`), which the config {} (`JW_BENCH_PARENTS`)",
        s.rows,
        s.active,
        if jobs_by_class.is_empty() {
            String::new()
        } else {
            format!(" ({jobs_by_class})")
        },
        if s.parents { "reads as `parent_id`" } else { "does not name" }
    );
    println!(
        "- scan plan: `{}`; jobwarden sees a status index: {status_indexed}",
        plan.trim()
    );
    if let Some(server) = server {
        println!("- {server}");
    }
    println!(
        "- per iteration, in this order: (a) (b) (c) (f) (i) (j) (g) (h) (d) (e); {} warm-up iterations, then {} timed",
        s.warmup, s.iters
    );
    println!(
        "- index: {}; the two-tier scan read {read_in_full} of {} active rows in full (last iteration)",
        if s.advised_index {
            "the one `validate --connect` advises, and the one on `status`"
        } else {
            "on `status` only"
        },
        s.active
    );
    println!(
        "- (f) was a summary scan in {summarised} of {} timed iterations",
        s.iters
    );
    println!("- (g): `{}`", counts_sql.join("`; `"));
    println!("- (h): `{light_sql}`; plan: `{}`", light_plan.trim());
    println!(
        "- findings per full scan: {findings} (rules: heartbeat after {}, progress after {}; shifted by the table's age, {})",
        humantime::format_duration(s.heartbeat_after),
        if s.progress {
            humantime::format_duration(PROGRESS_AFTER).to_string()
        } else {
            "off".to_string()
        },
        humantime::format_duration(age)
    );
    println!();
    println!(
        "- CPU per iteration (means): this process's (clock_gettime), and with the database server's threads ({})",
        if meter.server.is_some() {
            "/proc/<pid>/task/<tid>/schedstat of every server process, read around each variant; a server helper's work in that window counts too"
        } else {
            "not read: the server is not local, or is SQLite in this process"
        }
    );
    println!();
    println!("| variant | median ms | p90 ms | median / (a) | p90 / (a) | median / (g) | CPU ms, process | CPU ms, process + server | CPU / (g)'s |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let ratio = |x: f64, base: f64| {
        if base.is_finite() && base > 0.0 {
            format!("{:.2}", x / base)
        } else {
            "-".to_string()
        }
    };
    let counts_median = median(&g.ms);
    let (_, counts_cpu) = g.cpu_ms();
    for v in [&a, &b, &c, &d, &e, &f, &i_light, &j, &g, &h] {
        if v.ms.is_empty() {
            continue;
        }
        let m = median(&v.ms);
        let p = p90(&v.ms);
        let (client, both) = v.cpu_ms();
        println!(
            "| {} | {m:.2} | {p:.2} | {} | {} | {} | {client:.2} | {both:.2} | {} |",
            v.label,
            ratio(m, base_median),
            ratio(p, base_p90),
            ratio(m, counts_median),
            ratio(both, counts_cpu)
        );
    }
    println!();

    if s.full_reads {
        let what = format!(
            "scan, {version}, {} rows, {} active",
            thousands(s.rows),
            thousands(s.active)
        );
        let baseline = format!("bare scan `SELECT`, {driver}, median ms");
        let read = format!("same `SELECT`, {driver}, every value read, median ms");
        append_summary(&[
            summary_line(
                &format!("{what}: `store.snapshot()`, median ms"),
                median(&b.ms),
                &baseline,
                base_median,
                "near 1, flat",
            ),
            summary_line(
                &format!("{what}: `store.snapshot()`, median ms"),
                median(&b.ms),
                &read,
                median(&e.ms),
                "near 1",
            ),
            summary_line(
                &format!("{what}: reference scan (every row in full), median ms"),
                median(&c.ms),
                &baseline,
                base_median,
                "",
            ),
            summary_line(
                &format!("{what}: two-tier scan, median ms"),
                median(&f.ms),
                &format!("{what}: reference scan, median ms"),
                median(&c.ms),
                "below 1",
            ),
        ]);
    }

    // The scan as the daemon runs it against the counts, the light read and the summary
    // read, with or without the full reads: the rows of `scripts/bench-matrix`.
    let what = format!(
        "scan as run, {version}, {} rows, {} index, {findings} findings{}",
        thousands(s.rows),
        if s.advised_index { "advised" } else { "status" },
        if s.parents { ", parent_id" } else { "" }
    );
    let mut lines = vec![
        summary_line(
            &format!("{what}: CPU per scan, process + server, ms"),
            f.cpu_ms().1,
            "(g) the two counts, same",
            counts_cpu,
            "at most 1 with the index",
        ),
        summary_line(
            &format!("{what}: median ms"),
            median(&f.ms),
            "(g) the two counts, median ms",
            counts_median,
            "at most 1 with the index",
        ),
        summary_line(
            &format!("{what}: median ms"),
            median(&f.ms),
            "(h) the light read (every active row), median ms",
            median(&h.ms),
            "below 1",
        ),
    ];
    if !j.ms.is_empty() {
        lines.push(summary_line(
            &format!("{what}: median ms"),
            median(&f.ms),
            "(j) the summary read alone, median ms",
            median(&j.ms),
            "near 1",
        ));
    }
    append_summary(&lines);

    store.close().await;
    bare.close().await;
}

/// Creates the index `validate --connect` advises for the light read (`want`), or drops it.
async fn set_advised_index(bare: &Bare, cfg: &config::Config, want: bool) {
    let store = Store::connect(cfg)
        .await
        .expect("jobwarden connects to the bench table");
    let mut advised = vec![store
        .queries()
        .candidate_index_advice()
        .expect("an index is advised for the bench table")];
    if cfg.jobs.parent_id.is_some() {
        advised.push(
            store
                .queries()
                .parent_index_advice()
                .expect("an index is advised for the parent column"),
        );
    }
    store.close().await;
    for advice in advised {
        set_index(bare, &advice, want).await;
    }
}

/// Runs `advice` (`CREATE INDEX "<name>" ON <table> (...)`) if it is not done yet (`want`),
/// or drops that index.
async fn set_index(bare: &Bare, advice: &str, want: bool) {
    // `CREATE INDEX "<name>" ON <table> (...)`
    let name = advice
        .split_whitespace()
        .nth(2)
        .expect("an index name")
        .to_string();
    let table = advice
        .split(" ON ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("a table");
    let drop = match bare {
        Bare::My(_) => format!("DROP INDEX {name} ON {table}"),
        _ => format!("DROP INDEX IF EXISTS {name}"),
    };
    // Dropped even when wanted: an index of that name made for another config (the parent
    // column's runs hold one more column) is not the advised one. MariaDB has no IF EXISTS
    // for a dropped index: a missing one is not an error here.
    let _ = bare.execute(&drop).await;
    if want {
        eprintln!("benches/scan: {advice}");
        bare.execute(advice)
            .await
            .expect("create the advised index");
        if let Bare::Pg(_) = bare {
            bare.execute(&format!("VACUUM ANALYZE {table}"))
                .await
                .expect("vacuum the bench table");
        } else if let Bare::My(_) = bare {
            bare.execute(&format!("ANALYZE TABLE {table}"))
                .await
                .expect("analyze the bench table");
        }
    }
}

/// What a generic SQL exporter runs for the same question: the active rows counted by
/// status, and the running rows whose heartbeat is older than `after`.
fn counting_queries(d: Dialect, table: &str, after: Duration) -> Vec<String> {
    let t = d.quote(table);
    let secs = after.as_secs();
    let stale = match d {
        Dialect::Postgres => format!("now() - interval '{secs} seconds'"),
        Dialect::MySql => format!("NOW(6) - INTERVAL {secs} SECOND"),
        Dialect::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-{secs} seconds')"),
    };
    vec![
        format!(
            "SELECT status, count(*) FROM {t} WHERE status IN ('pending', 'running') GROUP BY status"
        ),
        format!("SELECT count(*) FROM {t} WHERE status = 'running' AND updated_at < {stale}"),
    ]
}

/// One `EXPLAIN (ANALYZE, BUFFERS)` of the scan query, after the timed loop: the server's
/// share of (a), and how many of the table's pages the scan touches.
async fn server_side(pool: &PgPool, sql: &str, table: &str) -> String {
    let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"))
        .fetch_all(pool)
        .await
        .expect("EXPLAIN ANALYZE the scan query");
    let execution = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("Execution Time:"))
        .map_or("?".to_string(), |t| t.trim().to_string());
    // The first `Buffers:` line is the top plan node's: every page the scan touched.
    let pages: u64 = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("Buffers:"))
        .map_or(0, |b| {
            b.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| matches!(*k, "hit" | "read"))
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum()
        });
    let table_pages: i64 = sqlx::query_scalar(
        "SELECT (pg_relation_size(to_regclass($1)) / current_setting('block_size')::bigint)::bigint",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .expect("read the table's size");
    format!(
        "server side, one `EXPLAIN (ANALYZE, BUFFERS)` of the scan query after the timed loop: \
         execution {execution}, {pages} buffers touched (index and heap) of the table's {table_pages} heap pages"
    )
}

impl Samples {
    fn new(label: String) -> Samples {
        Samples {
            label,
            ms: Vec::new(),
            client_ns: Vec::new(),
            server_ns: Vec::new(),
        }
    }

    fn record(&mut self, timed: bool, meter: &Meter, start: Start) {
        let elapsed = start.at.elapsed();
        let client = process_cpu_ns().saturating_sub(start.client);
        if !timed {
            return;
        }
        self.ms.push(elapsed.as_secs_f64() * 1000.0);
        self.client_ns.push(client);
        if let Some(server) = &meter.server {
            self.server_ns
                .push(ServerCpu::since(&start.server, &server.read()));
        }
    }

    /// Mean CPU per iteration, in milliseconds: this process's, and this process's plus the
    /// server's (NaN when the server's threads cannot be read).
    fn cpu_ms(&self) -> (f64, f64) {
        let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64 / 1e6;
        let client = mean(&self.client_ns);
        let both = if self.server_ns.is_empty() {
            f64::NAN
        } else {
            client + mean(&self.server_ns)
        };
        (client, both)
    }
}

/// The config of a Supabase research_jobs watch, pointed at the bench table. `age` (how long
/// ago the table was built) is added to each rule's `after`, so the findings do not grow as a
/// cached table gets older.
fn bench_config(s: &Settings, table: &str, age: Duration) -> config::Config {
    let text = format!(
        r#"
[database]
url = "${{JW_BENCH_URL}}"
max_connections = 2
query_timeout = "60s"

[jobs]
table = "{table}"
id = "id"
status = "status"
created_at = "created_at"
heartbeat_at = "updated_at"
progress = "metadata.steps"
finished_at = "completed_at"
error = "error"
phase = "metadata.phase"
{parent}
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
after = "{hb}s"
action = "fail"
severity = "critical"

[[rules]]
name = "stalled-progress"
statuses = ["running"]
signal = "progress"
after = "{progress}s"
action = "alert"
severity = "warning"
"#,
        hb = (s.heartbeat_after + age).as_secs(),
        progress = (PROGRESS_AFTER + age).as_secs(),
        parent = if s.parents {
            "parent_id = \"main_job_id\"\n"
        } else {
            ""
        },
    );
    let text = if s.progress {
        text
    } else {
        text.replace("progress = \"metadata.steps\"\n", "")
            .split("[[rules]]\nname = \"stalled-progress\"")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let url = s.url.clone();
    let lookup = move |name: &str| (name == "JW_BENCH_URL").then(|| url.clone());
    config::parse(&text, Path::new("benches/scan.rs"), None, &lookup)
        .unwrap_or_else(|e| panic!("the bench config does not load: {e}"))
}

/// Makes sure `table` holds the bench data for `rows`/`active`, building it if it is missing
/// or does not match. Returns when it was built, in Unix seconds (from `jw_bench_meta`).
async fn ensure_table(bare: &Bare, dialect: Dialect, table: &str, rows: u64, active: u64) -> i64 {
    let stamp_prefix = format!("{LAYOUT} rows={rows} active={active} built_at=");
    let q = |ident: &str| dialect.quote(ident);
    bare.execute(&format!(
        "CREATE TABLE IF NOT EXISTS {} ({} VARCHAR(191) PRIMARY KEY, {} VARCHAR(255) NOT NULL)",
        q("jw_bench_meta"),
        q("name"),
        q("stamp")
    ))
    .await
    .expect("create jw_bench_meta");
    let stamp = bare
        .text(&format!(
            "SELECT {} FROM {} WHERE {} = {}",
            q("stamp"),
            q("jw_bench_meta"),
            q("name"),
            dialect.literal(table)
        ))
        .await
        .expect("read jw_bench_meta");
    if let Some(built_at) = stamp
        .as_deref()
        .and_then(|c| c.strip_prefix(&stamp_prefix))
        .and_then(|t| t.parse::<i64>().ok())
    {
        match bare
            .int(&format!("SELECT count(*) FROM {}", q(table)))
            .await
        {
            Ok(count) if count as u64 == rows => {
                eprintln!("benches/scan: reusing {table} ({rows} rows, {active} active)");
                return built_at;
            }
            Ok(count) => {
                eprintln!("benches/scan: {table} has {count} rows, not {rows}: rebuilding")
            }
            Err(e) => eprintln!("benches/scan: cannot count {table} ({e}): rebuilding"),
        }
    }

    eprintln!("benches/scan: building {table} ({rows} rows, {active} active)...");
    let started = Instant::now();
    let built_at = bare
        .float(dialect.now_epoch())
        .await
        .expect("read the database clock")
        .floor() as i64;
    for sql in [
        format!("DROP TABLE IF EXISTS {}", q(table)),
        create_sql(dialect, table),
    ] {
        bare.execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("building {table} failed: {e}\n{sql}"));
    }
    let batches = rows.div_ceil(BATCH);
    let inserts = (0..batches).map(|i| {
        if batches >= 10 && i % (batches / 10) == 0 && i > 0 {
            eprintln!("benches/scan: {}% of the rows sent", 100 * i / batches);
        }
        let first = i * BATCH + 1;
        let last = ((i + 1) * BATCH).min(rows);
        let values = (first..=last)
            .map(|g| bench_row(g, rows, active, built_at).values(dialect))
            .collect::<Vec<_>>()
            .join(",\n");
        format!(
            "INSERT INTO {} (id, status, created_at, updated_at, completed_at, error, metadata, main_job_id) VALUES\n{values}",
            q(table)
        )
    });
    bare.execute_all(inserts)
        .await
        .unwrap_or_else(|e| panic!("filling {table} failed: {e}"));
    let stamp = format!("{stamp_prefix}{built_at}");
    for sql in [
        format!(
            "CREATE INDEX {} ON {} (status)",
            q(&format!("{table}_status_idx")),
            q(table)
        ),
        match dialect {
            // VACUUM as well as ANALYZE: sets hint bits and the visibility map, the steady
            // state autovacuum would reach, so the first timed reads do not pay for the load.
            Dialect::Postgres => format!("VACUUM (ANALYZE) {}", q(table)),
            Dialect::MySql => format!("ANALYZE TABLE {}", q(table)),
            Dialect::Sqlite => "ANALYZE".to_string(),
        },
        format!(
            "DELETE FROM {} WHERE {} = {}",
            q("jw_bench_meta"),
            q("name"),
            dialect.literal(table)
        ),
        format!(
            "INSERT INTO {} ({}, {}) VALUES ({}, {})",
            q("jw_bench_meta"),
            q("name"),
            q("stamp"),
            dialect.literal(table),
            dialect.literal(&stamp)
        ),
    ] {
        bare.execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("building {table} failed: {e}\n{sql}"));
    }
    eprintln!(
        "benches/scan: built {table} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    built_at
}

fn create_sql(dialect: Dialect, table: &str) -> String {
    let (id, text, ts, json) = match dialect {
        Dialect::Postgres => ("bigint", "text", "timestamptz", "jsonb"),
        Dialect::MySql => ("BIGINT", "VARCHAR(32)", "DATETIME(6)", "JSON"),
        Dialect::Sqlite => ("INTEGER", "TEXT", "TEXT", "TEXT"),
    };
    format!(
        "CREATE TABLE {} (
            id {id} PRIMARY KEY,
            status {text} NOT NULL,
            created_at {ts} NOT NULL,
            updated_at {ts} NOT NULL,
            completed_at {ts},
            error TEXT,
            metadata {json} NOT NULL,
            main_job_id {id}
        )",
        dialect.quote(table)
    )
}

/// One row of the bench table, before it is written as SQL.
struct BenchRow {
    id: u64,
    status: &'static str,
    created: i64,
    updated: i64,
    finished: bool,
    metadata: String,
    parent: Option<u64>,
}

/// Row `g` (1-based) of a table of `rows` rows with `active` active, built at `t0` (Unix s).
///
/// Row `g` is active when `(g - 1) * active mod rows < active`: exactly `active` rows, evenly
/// spread. `h` is a multiplicative hash of `g` that picks the status and the ages. Active rows:
/// one third `pending`, the rest `running`; nine in ten heartbeats are under 20 minutes old,
/// one in ten between 30 minutes and 6 hours (stalled). Finished rows: one in ten `failed`,
/// one in twenty `cancelled`, the rest `completed`, created every 30 seconds going back in id
/// order. `metadata` holds `steps` (one to seven names), `phase`, and two keys of payload.
fn bench_row(g: u64, rows: u64, active: u64, t0: i64) -> BenchRow {
    const STEPS: [&str; 7] = [
        "plan", "search", "read", "analyse", "draft", "review", "publish",
    ];
    const PHASES: [&str; 3] = ["designing", "researching", "writing"];
    let h = (g * 2_654_435_761) % 4_294_967_296;
    let is_active = active_row(g, rows, active);
    let status = match (is_active, h) {
        (true, h) if h % 3 == 0 => "pending",
        (true, _) => "running",
        (false, h) if h % 10 == 0 => "failed",
        (false, h) if h % 20 == 1 => "cancelled",
        (false, _) => "completed",
    };
    let minute = 60;
    let heartbeat_age = if !is_active {
        (rows - g) * 30
    } else if (h / 10) % 10 == 0 {
        (30 + (h / 100) % 330) * minute
    } else {
        ((h / 100) % 20) * minute
    } as i64;
    let started = if is_active {
        ((h / 1000) % 60) * minute
    } else {
        (h / 1000) % 600
    } as i64;
    let updated = t0 - heartbeat_age;
    let created = if status == "pending" {
        updated
    } else {
        updated - started
    };
    let steps = STEPS[..1 + (h % 7) as usize]
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let phase = if is_active {
        PHASES[((h / 7) % 3) as usize]
    } else {
        "done"
    };
    BenchRow {
        id: g,
        status,
        created,
        updated,
        finished: !is_active,
        parent: parent_of(g, h, rows, active),
        metadata: format!(
            r#"{{"steps": [{steps}], "phase": "{phase}", "query": "research topic #{g}", "model": "gpt-4o-mini"}}"#
        ),
    }
}

/// Whether row `g` is one of the `active` of `rows`: exactly `active` rows, evenly spread.
fn active_row(g: u64, rows: u64, active: u64) -> bool {
    ((g - 1) * active) % rows < active
}

/// The parent of row `g` (its hash `h`): one active row in five is the child of the active
/// row before it, one finished row in four the child of the row before it when that one is
/// finished too. A healthy family tree: no running child under a finished parent, no running
/// parent whose children have all finished.
fn parent_of(g: u64, h: u64, rows: u64, active: u64) -> Option<u64> {
    let pick = (h / 100_000) % 20;
    if active_row(g, rows, active) {
        (pick % 5 == 0)
            .then(|| (1..g).rev().find(|&p| active_row(p, rows, active)))
            .flatten()
    } else {
        (pick % 4 == 0 && g > 1 && !active_row(g - 1, rows, active)).then(|| g - 1)
    }
}

impl BenchRow {
    /// The row as one `(...)` of a multi-row `INSERT`, in the dialect's own time functions.
    fn values(&self, dialect: Dialect) -> String {
        let ts = |secs: i64| match dialect {
            Dialect::Postgres => format!("to_timestamp({secs})"),
            Dialect::MySql => format!("FROM_UNIXTIME({secs})"),
            Dialect::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%SZ', {secs}, 'unixepoch')"),
        };
        let error = if self.status == "failed" {
            "'worker crashed: connection reset by peer'"
        } else {
            "NULL"
        };
        format!(
            "({}, '{}', {}, {}, {}, {error}, {}, {})",
            self.id,
            self.status,
            ts(self.created),
            ts(self.updated),
            if self.finished {
                ts(self.updated)
            } else {
                "NULL".into()
            },
            dialect.literal(&self.metadata),
            self.parent.map_or_else(|| "NULL".into(), |p| p.to_string())
        )
    }
}
