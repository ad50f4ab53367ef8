//! What one scan of a large PostgreSQL jobs table costs, next to the bare SQL it runs.
//!
//! The table is shaped like a Supabase `research_jobs` table: `JW_BENCH_ROWS` rows (default
//! 1,000,000), of which `JW_BENCH_ACTIVE` (default 10,000) are `running`/`pending`, spread
//! evenly over the id range (so over the heap pages: the index scan cannot read them as one
//! run), the rest `completed`/`failed`/`cancelled`; an index on `status`. It is built once by a
//! single `INSERT ... SELECT generate_series` and kept as `jw_bench_jobs_<rows>`; a later run
//! reuses it when its comment (layout version, row and active counts) and its row count match.
//!
//! Each iteration times, in this order so drift hits every variant alike:
//!   (a) the scan's exact `SELECT` through a plain `sqlx::PgPool`: no jobwarden code (baseline);
//!   (b) `Store::snapshot()`: the clock query, the same `SELECT`, and decoding into `JobRow`s;
//!   (c) `Scanner::scan()`: one full scan (snapshot, pid checks, detection, report);
//!   (d) `SELECT count(*)` of the whole table on the plain pool: what reading every row costs.
//!
//! Around the table it prints the first line of the scan query's `EXPLAIN` (the status index
//! at work) and, from one `EXPLAIN (ANALYZE, BUFFERS)` after the timed loop, the server's
//! execution time and how many pages the scan touched against the table's size.
//!
//! The result is one markdown table on stdout, with ratios against (a) measured in the same
//! run. Speed is reported here, never asserted. Progress notes go to stderr.
//!
//! The rows' timestamps are written relative to the moment the table was built. So that a
//! cached table yields the same findings on every run, the rules' `after` values are shifted by
//! the table's age: the same rows are stalled whenever the bench runs.
//!
//! Environment: `JW_BENCH_ROWS`, `JW_BENCH_ACTIVE`, `JW_BENCH_ITERS` (default 30),
//! `JW_BENCH_WARMUP` (default 3), `JW_BENCH_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`).
//!
//! Run it with `cargo bench --bench scan` or `scripts/bench`. Built by `cargo test --benches`
//! (or `--all-targets`) it is started without `--bench` and exits at once: it is not a test.

use std::path::Path;
use std::time::Duration;

use jobwarden::config;
use jobwarden::scan::Scanner;
use jobwarden::store::Store;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use tokio::time::Instant;

/// Bumped whenever the table's layout or contents change, so a stale cached table is rebuilt.
const LAYOUT: &str = "jobwarden-bench v1";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The rules' thresholds for a table built just now.
const HEARTBEAT_AFTER: Duration = Duration::from_secs(30 * 60);
const PROGRESS_AFTER: Duration = Duration::from_secs(60 * 60);

struct Settings {
    rows: u64,
    active: u64,
    iters: usize,
    warmup: usize,
    url: String,
    url_from_env: bool,
}

/// One variant's timings, in milliseconds.
struct Samples {
    label: &'static str,
    ms: Vec<f64>,
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
    let number = |name: &str, default: u64| -> u64 {
        match std::env::var(name) {
            Ok(v) => v
                .trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|e| panic!("{name}={v:?} is not a whole number: {e}")),
            Err(_) => default,
        }
    };
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
    let env_url = std::env::var("JW_BENCH_PG_URL").ok();
    Settings {
        rows,
        active,
        iters,
        warmup,
        url_from_env: env_url.is_some(),
        url: env_url.unwrap_or_else(|| DEFAULT_URL.to_string()),
    }
}

async fn run(s: Settings) {
    let table = format!("jw_bench_jobs_{}", s.rows);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&s.url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to {} (set JW_BENCH_PG_URL): {e}",
                config::redact_url(&s.url)
            )
        });
    let built_at = ensure_table(&pool, &table, s.rows, s.active).await;
    let age: f64 = sqlx::query_scalar("SELECT extract(epoch from now())::float8 - $1::float8")
        .bind(built_at as f64)
        .fetch_one(&pool)
        .await
        .expect("read the database clock");
    let age = Duration::from_secs(age.max(0.0).ceil() as u64);

    let cfg = bench_config(&s, &table, age);
    let store = Store::connect(&cfg)
        .await
        .expect("jobwarden connects to the bench table");
    let sql = store.queries().scan.clone();
    let plan: String = sqlx::query(&format!("EXPLAIN {sql}"))
        .fetch_one(&pool)
        .await
        .expect("EXPLAIN the scan query")
        .try_get(0)
        .expect("EXPLAIN returns text");
    let status_indexed = store.info().status_indexed;
    let mut scanner = Scanner::new(store.clone());
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .expect("read the server version");

    let mut a = Samples::new("(a) bare scan `SELECT`, `sqlx::PgPool` (baseline)");
    let mut b = Samples::new("(b) `store.snapshot()`: clock + same `SELECT` + decode");
    let mut c = Samples::new("(c) `scanner.scan(&config, None)`: full scan");
    let mut d = Samples::new("(d) `SELECT count(*)` whole table, `sqlx::PgPool`");
    let mut findings = 0;
    let mut jobs_by_class = String::new();
    eprintln!(
        "benches/scan: {} warm-up + {} timed iterations of (a) (b) (c) (d)",
        s.warmup, s.iters
    );
    for i in 0..s.warmup + s.iters {
        let timed = i >= s.warmup;

        let t = Instant::now();
        let rows = sqlx::query(&sql)
            .fetch_all(&pool)
            .await
            .expect("(a) the bare scan query");
        a.record(timed, t);
        assert_eq!(rows.len() as u64, s.active, "(a) returns every active row");
        drop(rows);

        let t = Instant::now();
        let snapshot = store.snapshot().await.expect("(b) store.snapshot()");
        b.record(timed, t);
        assert_eq!(
            snapshot.jobs.len() as u64,
            s.active,
            "(b) reads every active row"
        );
        drop(snapshot);

        let t = Instant::now();
        let report = scanner.scan(&cfg, None).await.expect("(c) scanner.scan()");
        c.record(timed, t);
        findings = report.findings.len();
        jobs_by_class = report
            .jobs
            .iter()
            .map(|(class, n)| format!("{n} {}", class.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        drop(report);

        let t = Instant::now();
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .expect("(d) count(*)");
        d.record(timed, t);
        assert_eq!(count as u64, s.rows, "(d) counts every row");
    }

    let server = server_side(&pool, &sql, &table).await;

    let base_median = median(&a.ms);
    let base_p90 = p90(&a.ms);
    let mut command = format!(
        "JW_BENCH_ROWS={} JW_BENCH_ACTIVE={} JW_BENCH_ITERS={} JW_BENCH_WARMUP={}",
        s.rows, s.active, s.iters, s.warmup
    );
    if s.url_from_env {
        command.push_str(&format!(
            " JW_BENCH_PG_URL='{}'",
            config::redact_url(&s.url)
        ));
    }
    command.push_str(" cargo bench --bench scan");

    println!("## jobwarden scan benchmark: PostgreSQL {version}");
    println!();
    println!("- command: `{command}` (or `scripts/bench` with the same environment)");
    println!(
        "- table: `{table}`, {} rows, {} active ({jobs_by_class}), spread evenly over the ids; index on `status`",
        s.rows, s.active
    );
    println!(
        "- scan plan (first line of `EXPLAIN`): `{}`; jobwarden sees a status index: {status_indexed}",
        plan.trim()
    );
    println!("- {server}");
    println!(
        "- per iteration, in this order: (a) (b) (c) (d); {} warm-up iterations, then {} timed",
        s.warmup, s.iters
    );
    println!(
        "- findings per full scan: {findings} (rules: heartbeat after {}, progress after {}; shifted by the table's age, {})",
        humantime::format_duration(HEARTBEAT_AFTER),
        humantime::format_duration(PROGRESS_AFTER),
        humantime::format_duration(age)
    );
    println!();
    println!("| variant | median ms | p90 ms | median / (a) | p90 / (a) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for v in [&a, &b, &c, &d] {
        let m = median(&v.ms);
        let p = p90(&v.ms);
        println!(
            "| {} | {m:.2} | {p:.2} | {:.2} | {:.2} |",
            v.label,
            m / base_median,
            p / base_p90
        );
    }
    println!();

    store.close().await;
    pool.close().await;
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
    fn new(label: &'static str) -> Samples {
        Samples {
            label,
            ms: Vec::new(),
        }
    }

    fn record(&mut self, timed: bool, start: Instant) {
        let elapsed = start.elapsed();
        if timed {
            self.ms.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
}

fn sorted(ms: &[f64]) -> Vec<f64> {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn median(ms: &[f64]) -> f64 {
    let v = sorted(ms);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank 90th percentile.
fn p90(ms: &[f64]) -> f64 {
    let v = sorted(ms);
    let rank = (v.len() * 9).div_ceil(10).max(1);
    v[rank - 1]
}

/// The config of a Supabase research_jobs watch, pointed at the bench table. `age` (how long
/// ago the table was built) is added to each rule's `after`, so the findings do not grow as a
/// cached table gets older.
fn bench_config(s: &Settings, table: &str, age: Duration) -> config::Config {
    let text = format!(
        r#"
[database]
url = "${{JW_BENCH_PG_URL}}"
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
        hb = (HEARTBEAT_AFTER + age).as_secs(),
        progress = (PROGRESS_AFTER + age).as_secs(),
    );
    let url = s.url.clone();
    let lookup = move |name: &str| (name == "JW_BENCH_PG_URL").then(|| url.clone());
    config::parse(&text, Path::new("benches/scan.rs"), None, &lookup)
        .unwrap_or_else(|e| panic!("the bench config does not load: {e}"))
}

/// Makes sure `table` holds the bench data for `rows`/`active`, building it if it is missing
/// or does not match. Returns when it was built, in Unix seconds (from its comment).
async fn ensure_table(pool: &PgPool, table: &str, rows: u64, active: u64) -> i64 {
    let stamp_prefix = format!("{LAYOUT} rows={rows} active={active} built_at=");
    let comment: Option<String> =
        sqlx::query_scalar("SELECT obj_description(to_regclass($1), 'pg_class')")
            .bind(table)
            .fetch_one(pool)
            .await
            .expect("read the bench table's comment");
    if let Some(built_at) = comment
        .as_deref()
        .and_then(|c| c.strip_prefix(&stamp_prefix))
        .and_then(|t| t.parse::<i64>().ok())
    {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(pool)
            .await
            .expect("count the cached bench table");
        if count as u64 == rows {
            eprintln!("benches/scan: reusing {table} ({rows} rows, {active} active)");
            return built_at;
        }
        eprintln!("benches/scan: {table} has {count} rows, not {rows}: rebuilding");
    }

    eprintln!("benches/scan: building {table} ({rows} rows, {active} active)...");
    let started = Instant::now();
    let built_at: i64 = sqlx::query_scalar("SELECT floor(extract(epoch from now()))::bigint")
        .fetch_one(pool)
        .await
        .expect("read the database clock");
    let statements = [
        format!("DROP TABLE IF EXISTS {table}"),
        format!(
            "CREATE TABLE {table} (
                id bigint PRIMARY KEY,
                status text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                completed_at timestamptz,
                error text,
                metadata jsonb NOT NULL
            )"
        ),
        fill_sql(table, rows, active, built_at),
        format!("CREATE INDEX {table}_status_idx ON {table} (status)"),
        // VACUUM as well as ANALYZE: sets hint bits and the visibility map, the steady state
        // autovacuum would reach, so the first timed reads do not pay for the bulk load.
        format!("VACUUM (ANALYZE) {table}"),
        format!("COMMENT ON TABLE {table} IS '{stamp_prefix}{built_at}'"),
    ];
    for sql in &statements {
        sqlx::raw_sql(sql)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("building {table} failed: {e}\n{sql}"));
    }
    eprintln!(
        "benches/scan: built {table} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    built_at
}

/// The one `INSERT ... SELECT generate_series` that fills the table.
///
/// Row `g` is active when `(g - 1) * active mod rows < active`: exactly `active` rows, evenly
/// spread. `h` is a multiplicative hash of `g` that picks the status and the ages. Active rows:
/// one third `pending`, the rest `running`; nine in ten heartbeats are under 20 minutes old,
/// one in ten between 30 minutes and 6 hours (stalled). Finished rows: one in ten `failed`,
/// one in twenty `cancelled`, the rest `completed`, created every 30 seconds going back in id
/// order. `metadata` holds `steps` (one to seven names), `phase`, and two keys of payload.
fn fill_sql(table: &str, rows: u64, active: u64, built_at: i64) -> String {
    format!(
        "INSERT INTO {table} (id, status, created_at, updated_at, completed_at, error, metadata)
        SELECT g, status, created_at, updated_at,
               CASE WHEN active THEN NULL ELSE updated_at END,
               CASE WHEN status = 'failed' THEN 'worker crashed: connection reset by peer' END,
               jsonb_build_object(
                   'steps', to_jsonb((ARRAY['plan', 'search', 'read', 'analyse', 'draft',
                                            'review', 'publish'])[1:1 + h % 7]),
                   'phase', CASE WHEN active
                                 THEN (ARRAY['designing', 'researching', 'writing'])[1 + (h / 7) % 3]
                                 ELSE 'done' END,
                   'query', 'research topic #' || g,
                   'model', 'gpt-4o-mini')
        FROM (
            SELECT g, h, active, status,
                   CASE WHEN status = 'pending' THEN t0 - hb_age ELSE t0 - hb_age - started END
                       AS created_at,
                   t0 - hb_age AS updated_at
            FROM (
                SELECT g, h, active, t0,
                       CASE WHEN active THEN
                           CASE WHEN h % 3 = 0 THEN 'pending' ELSE 'running' END
                       ELSE
                           CASE WHEN h % 10 = 0 THEN 'failed'
                                WHEN h % 20 = 1 THEN 'cancelled'
                                ELSE 'completed' END
                       END AS status,
                       CASE WHEN NOT active THEN
                                ({rows} - g) * interval '30 seconds'
                            WHEN (h / 10) % 10 = 0 THEN
                                (30 + (h / 100) % 330) * interval '1 minute'
                            ELSE
                                ((h / 100) % 20) * interval '1 minute'
                       END AS hb_age,
                       CASE WHEN active THEN ((h / 1000) % 60) * interval '1 minute'
                            ELSE ((h / 1000) % 600) * interval '1 second' END AS started
                FROM (
                    SELECT g,
                           (g * 2654435761) % 4294967296 AS h,
                           ((g - 1) * {active}) % {rows} < {active} AS active,
                           to_timestamp({built_at}) AS t0
                    FROM generate_series(1::bigint, {rows}::bigint) AS g
                ) AS x
            ) AS y
        ) AS z"
    )
}
