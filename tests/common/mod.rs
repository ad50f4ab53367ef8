//! Shared test harness: a fresh database per test on the real PostgreSQL, MariaDB and SQLite,
//! and a runner for the real `jobwarden` binary.
//!
//! The servers are the ones `scripts/test` makes sure are up. A server that cannot be reached
//! fails the test loudly: database behaviour is never skipped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

/// The three databases jobwarden supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    MySql,
    Sqlite,
}

/// A database made for one test, dropped after it.
pub struct TestDb {
    pub backend: Backend,
    /// The URL jobwarden is given.
    pub url: String,
    pub pool: AnyPool,
    name: String,
    _dir: tempfile::TempDir,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn admin_url(backend: Backend) -> String {
    match backend {
        Backend::Postgres => std::env::var("JOBWARDEN_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        Backend::MySql => std::env::var("JOBWARDEN_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        Backend::Sqlite => String::new(),
    }
}

/// Replaces the database name (the last path segment) of a server URL.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    format!("{base}/{db}{query}")
}

async fn connect(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the test database at {url}: {e}\n\
                 run the tests through scripts/test, which starts PostgreSQL and MariaDB"
            )
        })
}

impl TestDb {
    /// A fresh, empty database.
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = format!(
            "jwt_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("jobs.db").display()),
            _ => {
                let admin = connect(&admin_url(backend)).await;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                with_database(&admin_url(backend), &name)
            }
        };
        let pool = match backend {
            Backend::Sqlite => connect(&format!("{url}?mode=rwc")).await,
            _ => connect(&url).await,
        };
        TestDb {
            backend,
            url,
            pool,
            name,
            _dir: dir,
        }
    }

    /// The smallest jobs table, with text timestamps: `id`, `status`, `created_at`,
    /// `updated_at` (the heartbeat).
    pub async fn small_jobs_table(&self) {
        self.small_jobs_table_with_id("INTEGER").await;
    }

    /// [`TestDb::small_jobs_table`] with an `id` of another SQL type (`TEXT`).
    pub async fn small_jobs_table_with_id(&self, id_type: &str) {
        self.exec(&format!(
            "CREATE TABLE jobs (id {id_type} PRIMARY KEY, status TEXT, created_at TEXT, updated_at TEXT)"
        ))
        .await;
    }

    /// The jobs table in the database's own types: an integer `id`, a text `status`, and
    /// `created_at` and `updated_at` (the heartbeat) of its native time type.
    pub async fn native_jobs_table(&self) {
        self.exec(&format!(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status {t}, created_at {ts}, updated_at {ts})",
            t = self.ty("text"),
            ts = self.ty("ts")
        ))
        .await;
    }

    /// The workers table of `[workers]` tests, `jw_workers`: a bigint `id`, a native
    /// `last_heartbeat` and `extra` more columns (`", host TEXT"`).
    pub async fn workers_table(&self, extra: &str) {
        self.exec(&format!(
            "CREATE TABLE jw_workers (id {} PRIMARY KEY, last_heartbeat {}{extra})",
            self.ty("bigint"),
            self.ty("ts"),
        ))
        .await;
    }

    /// A `running` row of [`TestDb::small_jobs_table`], created `created` minutes ago, its
    /// last heartbeat `beat` minutes ago. The id is written as a literal, so a text id may
    /// hold anything but a quote.
    pub async fn running(&self, id: impl std::fmt::Display, created: f64, beat: f64) {
        self.exec(&format!(
            "INSERT INTO jobs VALUES ('{id}', 'running', {}, {})",
            self.ago(created),
            self.ago(beat)
        ))
        .await;
    }

    /// Inserts many rows into `table`, each a parenthesized list of SQL values (`db.ago()`
    /// and the like allowed), a few hundred per statement: thousands of jobs in a blink.
    pub async fn insert_rows(&self, table: &str, rows: &[String]) {
        for chunk in rows.chunks(400) {
            self.exec(&format!("INSERT INTO {table} VALUES {}", chunk.join(", ")))
                .await;
        }
    }

    /// A restart's aftermath, for the console at scale: a `jobs` table with a `phase`, and in
    /// it `stuck` running jobs `job-1`, `job-2`, ... whose heartbeats stopped 47 minutes
    /// ago and earlier (`job-N` N seconds earlier; phases `designing` and `assessing`
    /// alternate), `queued` jobs `queued-1`, ... waiting for 97 minutes, and 20 live ones.
    /// [`TestConfig::aftermath`] watches it.
    pub async fn restart_aftermath(&self, stuck: usize, queued: usize) {
        self.exec(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT, created_at TEXT, updated_at TEXT, phase TEXT)",
        )
        .await;
        let mut rows: Vec<String> = (1..=stuck)
            .map(|i| {
                let phase = if i % 2 == 0 { "designing" } else { "assessing" };
                format!(
                    "('job-{i}', 'running', {}, {}, '{phase}')",
                    self.ago(180.0),
                    self.ago(47.0 + i as f64 / 60.0)
                )
            })
            .collect();
        rows.extend((1..=queued).map(|i| {
            format!(
                "('queued-{i}', 'queued', {}, {}, 'designing')",
                self.ago(97.0),
                self.ago(97.0)
            )
        }));
        rows.extend((1..=20).map(|i| {
            format!(
                "('live-{i}', 'running', {}, {}, 'designing')",
                self.ago(60.0),
                self.ago(0.1)
            )
        }));
        self.insert_rows("jobs", &rows).await;
    }

    /// Runs statements, panicking with the SQL on failure.
    pub async fn exec(&self, sql: &str) {
        sqlx::query(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}\n=> {e}"));
    }

    /// Every row of a query, each column cast to text by the caller's SQL.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let rows = sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}\n=> {e}"));
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        // MySQL hands long text over as a BLOB.
                        r.try_get::<Option<String>, _>(i).unwrap_or_else(|_| {
                            r.try_get::<Option<Vec<u8>>, _>(i)
                                .expect("text column")
                                .map(|b| String::from_utf8_lossy(&b).into_owned())
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// A whole table as text, ordered by its first column: for before/after comparisons.
    pub async fn dump(&self, table: &str) -> Vec<Vec<Option<String>>> {
        let q = |c: &str| self.quote(c);
        let cols: Vec<String> = self
            .rows(&match self.backend {
                Backend::Postgres => format!(
                    "SELECT column_name::text FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position"
                ),
                Backend::MySql => format!(
                    "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
                ),
                Backend::Sqlite => format!("SELECT name FROM pragma_table_info('{table}')"),
            })
            .await
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect();
        assert!(!cols.is_empty(), "table {table} has no columns");
        let select = cols
            .iter()
            .map(|c| self.text(&q(c)))
            .collect::<Vec<_>>()
            .join(", ");
        self.rows(&format!("SELECT {select} FROM {} ORDER BY 1", q(table)))
            .await
    }

    /// Quotes an identifier.
    pub fn quote(&self, ident: &str) -> String {
        match self.backend {
            Backend::MySql => format!("`{ident}`"),
            _ => format!("\"{ident}\""),
        }
    }

    /// Casts an expression to text.
    pub fn text(&self, expr: &str) -> String {
        match self.backend {
            Backend::Postgres => format!("({expr})::text"),
            Backend::MySql => format!("CAST({expr} AS CHAR)"),
            Backend::Sqlite => format!("CAST({expr} AS TEXT)"),
        }
    }

    /// A native timestamp `minutes` before the database's now.
    pub fn ago(&self, minutes: f64) -> String {
        let s = (minutes * 60.0) as i64;
        match self.backend {
            Backend::Postgres => format!("now() - interval '{s} seconds'"),
            Backend::MySql => format!("NOW(6) - INTERVAL {s} SECOND"),
            // RFC 3339 with a Z: one of the text shapes jobwarden parses.
            Backend::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{s} seconds')"),
        }
    }

    /// Unix seconds `minutes` before the database's now.
    pub fn epoch_ago(&self, minutes: f64) -> String {
        let s = (minutes * 60.0) as i64;
        match self.backend {
            Backend::Postgres => format!("(extract(epoch from now())::bigint - {s})"),
            Backend::MySql => format!("(UNIX_TIMESTAMP() - {s})"),
            Backend::Sqlite => format!("(CAST(strftime('%s', 'now') AS INTEGER) - {s})"),
        }
    }

    /// The type to use for a kind of column in this dialect.
    pub fn ty(&self, kind: &str) -> &'static str {
        use Backend::*;
        match (kind, self.backend) {
            ("text", Postgres) => "text",
            ("text", MySql) => "VARCHAR(191)",
            ("longtext", MySql) => "TEXT",
            ("longtext", _) => "TEXT",
            ("text", Sqlite) => "TEXT",
            ("ts", Postgres) => "timestamptz",
            ("ts", MySql) => "DATETIME(6)",
            ("ts", Sqlite) => "TEXT",
            ("naive", Postgres) => "timestamp(3)",
            ("naive", MySql) => "DATETIME(3)",
            ("naive", Sqlite) => "DATETIME",
            ("json", Postgres) => "jsonb",
            ("json", MySql) => "JSON",
            ("json", Sqlite) => "TEXT",
            ("bigint", Sqlite) => "INTEGER",
            ("bigint", _) => "BIGINT",
            ("int", _) => "INTEGER",
            (k, _) => panic!("no type for {k}"),
        }
    }

    /// Copies an example config into this test's folder, applying text edits.
    pub fn config(&self, example_name: &str, edits: &[(&str, &str)]) -> PathBuf {
        self.edited_config(example_name, edits, "")
    }

    /// A ready config of `config/examples/` (`examples/<name>.toml`) as [`TestDb::config`]
    /// copies it, with a `[state]` directory of this test's own.
    pub fn ready_config(&self, example_name: &str, edits: &[(&str, &str)]) -> PathBuf {
        let state = format!(
            "\n[state]\ndir = \"{}\"\n",
            self.dir().join("state").display()
        );
        self.edited_config(example_name, edits, &state)
    }

    /// The example config `example_name` with `edits` applied (each must match) and `more`
    /// appended, written into this test's folder under its file name.
    fn edited_config(&self, example_name: &str, edits: &[(&str, &str)], more: &str) -> PathBuf {
        let mut text = std::fs::read_to_string(example(example_name)).expect("example config");
        for (from, to) in edits {
            assert!(text.contains(from), "{example_name} has no `{from}`");
            text = text.replace(from, to);
        }
        text.push_str(more);
        let name = Path::new(example_name).file_name().expect("a file name");
        let path = self._dir.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// This test's scratch folder.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The `DATABASE_URL` for a jobwarden config.
    pub fn jobwarden_url(&self) -> &str {
        &self.url
    }

    async fn drop_database(backend: Backend, name: String) {
        let admin = connect(&admin_url(backend)).await;
        let sql = match backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            _ => format!("DROP DATABASE IF EXISTS {name}"),
        };
        let _ = sqlx::query(&sql).execute(&admin).await;
        admin.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.backend == Backend::Sqlite || self.name.is_empty() {
            return;
        }
        let (backend, name) = (self.backend, self.name.clone());
        // The test's runtime may be gone; drop the database from a runtime of our own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(TestDb::drop_database(backend, name));
            }
        })
        .join();
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An example config from `config/`.
pub fn example(name: &str) -> PathBuf {
    root().join("config").join(name)
}

/// Runs the real binary with `DATABASE_URL` set.
pub fn jobwarden(db_url: &str, args: &[&str]) -> Output {
    jobwarden_with_env(db_url, args, &[])
}

/// [`jobwarden`] with more environment variables.
pub fn jobwarden_with_env(db_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .args(args)
        .envs(env.iter().copied())
        .env("DATABASE_URL", db_url)
        // The audit trail and alert state of tests without a [state] dir stay out of $HOME.
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("jobwarden-tests-state"),
        )
        .env_remove("STATE_DIRECTORY")
        .env_remove("JOBWARDEN_CONFIG")
        .env_remove("JOBWARDEN_ENV")
        .env_remove("JOBWARDEN_LOG")
        .output()
        .expect("run jobwarden")
}

/// Runs the real binary in `cwd` as an operator's shell would: no `DATABASE_URL`, no
/// `JOBWARDEN_*` variables, only `env`.
pub fn jobwarden_bare(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .current_dir(cwd)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("STATE_DIRECTORY")
        .env_remove("JOBWARDEN_CONFIG")
        .env_remove("JOBWARDEN_ENV")
        .env_remove("JOBWARDEN_LOG")
        .env_remove("JOBWARDEN_TOKEN")
        .env_remove("NO_COLOR")
        .env("XDG_STATE_HOME", cwd.join("xdg-state"))
        .envs(env.iter().copied())
        .output()
        .expect("run jobwarden")
}

/// Runs `jobwarden ARGS --json --config CONFIG` and parses stdout.
pub fn jobwarden_json(db_url: &str, config: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["--json", "--config", config.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let out = jobwarden(db_url, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

/// `(job_id, kind, rule)` of every finding, sorted.
pub fn findings(report: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| {
            (
                f["job_id"].as_str().unwrap_or_default().to_string(),
                f["kind"].as_str().unwrap_or_default().to_string(),
                f["rule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Builds the expected `findings` list from string triples.
pub fn expect(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = items
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    v.sort();
    v
}

/// A pid that existed and has exited.
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

/// Declares one async test per backend: `name::postgres`, `name::mysql`, `name::sqlite`; or,
/// with a list (`postgres => Postgres, sqlite => Sqlite`), only those.
#[macro_export]
macro_rules! per_backend {
    ($name:ident, $body:path, $($test:ident => $backend:ident),+) => {
        mod $name {
            use super::*;
            $(
                #[tokio::test]
                async fn $test() {
                    $body(common::Backend::$backend).await
                }
            )+
        }
    };
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn postgres() {
                $body(common::Backend::Postgres).await
            }
            #[tokio::test]
            async fn mysql() {
                $body(common::Backend::MySql).await
            }
            #[tokio::test]
            async fn sqlite() {
                $body(common::Backend::Sqlite).await
            }
        }
    };
}

/// The job ids a `check --json` / `recover --json` report says were written.
pub fn applied(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter(|f| f["outcome"] == "applied")
                .filter_map(|f| f["job_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The path of an external tool the tests need (promtool, prometheus, ...). `scripts/test`
/// installs them; a missing one fails the test with that hint.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed; run the tests through scripts/test, which installs it"
            )
        })
}

/// A PostgreSQL server of the test's own, in a temporary folder on a free port, so a test
/// can stop and start it without disturbing the shared server.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// Runs `initdb` (as the `postgres` user when we are root); the server is not started.
    pub fn init() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(|v| v.ok().map(|v| v.path().join("bin")))
                    .filter(|b| b.join("initdb").is_file())
                    .max()
            })
            .expect("PostgreSQL server binaries under /usr/lib/postgresql/*/bin (scripts/test installs them)");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let pg = PrivatePostgres { dir, bin, port };
        if is_root() {
            let status = Command::new("chown")
                .args([
                    "-R",
                    "postgres:postgres",
                    pg.dir.path().to_str().expect("utf-8"),
                ])
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let data = pg.data();
        pg.run("initdb", &["-A", "trust", "-U", "postgres", "-D", &data]);
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// A `TestDb`-like handle on the `postgres` database of this server.
    pub async fn connect(&self) -> TestDb {
        let pool = connect(&self.url()).await;
        TestDb {
            backend: Backend::Postgres,
            url: self.url(),
            pool,
            name: String::new(),
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let exe = self.bin.join("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        };
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A `jobwarden run` child, killed on drop.
pub struct Daemon {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

/// The port of a start line's `listen=127.0.0.1:PORT` (text) or `"listen":"127.0.0.1:PORT"`
/// (JSON).
fn listen_port(line: &str) -> Option<u16> {
    let rest = line
        .split_once("listen=")
        .or_else(|| line.split_once("\"listen\":\""))?
        .1;
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',')
        .collect();
    addr.rsplit_once(':')?.1.parse().ok()
}

/// A port nothing listens on (bound and released): only for a receiver that comes up later
/// or a program that cannot report the port it bound. A jobwarden daemon binds port 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Daemon {
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(config, env, |_| {})
    }

    /// [`Daemon::start`], with the command adjusted first (limits, say).
    pub fn start_with(
        config: &Path,
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Command),
    ) -> Daemon {
        let log = config.with_extension("log");
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobwarden"));
        cmd.args(["run", "--config", config.to_str().expect("utf-8")])
            .env("JOBWARDEN_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawn jobwarden run");
        let mut daemon = Daemon {
            child,
            port: 0,
            log,
        };
        daemon.port = daemon.bound_port();
        daemon
    }

    /// The port the daemon bound (the config says port 0: the system picks one, and the
    /// daemon's start line says which), read from its log; 0 if it exited before listening.
    fn bound_port(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if let Some(port) = log
                .lines()
                .filter(|l| l.contains("jobwarden started"))
                .find_map(listen_port)
            {
                return port;
            }
            if self.child.try_wait().ok().flatten().is_some() {
                return 0;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the daemon did not start listening:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// SIGTERM, then the exit code (within a few seconds).
    pub async fn stop(mut self) -> i32 {
        self.signal(libc::SIGTERM);
        let status = wait_for("exit after SIGTERM", Duration::from_secs(10), || {
            std::future::ready(self.child.try_wait().ok().flatten())
        })
        .await;
        status.code().unwrap_or(-1)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms until it yields a value, or panics after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// The value of an unlabelled metric line, or of the first line starting with `prefix`.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    /// The status it was answered with.
    pub status: u16,
}

/// An alert receiver on 127.0.0.1 that records every request and answers with scripted
/// statuses (then 200).
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    script: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u16>>>,
    /// A `Retry-After` header (seconds) on every answer that is not a success.
    retry_after: std::sync::Arc<std::sync::Mutex<Option<u64>>>,
}

impl Receiver {
    /// Starts one on `port` (0: any free port).
    pub async fn start(port: u16, script: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let receiver = Receiver {
            port,
            got: Default::default(),
            script: std::sync::Arc::new(std::sync::Mutex::new(script.iter().copied().collect())),
            retry_after: Default::default(),
        };
        let r = receiver.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let r = r.clone();
                async move {
                    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
                    r.got.lock().unwrap().push(Received {
                        path: uri.path().to_string(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                        status,
                    });
                    let mut headers = axum::http::HeaderMap::new();
                    if let Some(after) = *r.retry_after.lock().unwrap() {
                        if !(200..300).contains(&status) {
                            headers.insert("retry-after", after.into());
                        }
                    }
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        headers,
                        "answer body",
                    )
                }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends `Retry-After: seconds` with every answer that is not a success.
    pub fn retry_after(&self, seconds: u64) {
        *self.retry_after.lock().unwrap() = Some(seconds);
    }

    /// Every request so far.
    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Requests answered 2xx whose JSON `state` is `state`.
    pub fn accepted(&self, state: &str) -> Vec<Received> {
        self.got()
            .into_iter()
            .filter(|r| r.status < 300 && r.body["state"] == state)
            .collect()
    }
}

/// A jobwarden config for a test, written section by section. It starts as the shape most
/// tests share: a `jobs` table whose workers beat into `updated_at`, with the statuses
/// `running`, `completed` (succeeded) and `failed`; a test adds only what it is about.
#[derive(Debug, Clone)]
pub struct TestConfig {
    top: Vec<String>,
    database: Vec<String>,
    jobs: Vec<String>,
    statuses: Vec<String>,
    sections: Vec<String>,
}

impl TestConfig {
    pub fn new(url: &str) -> TestConfig {
        TestConfig {
            top: Vec::new(),
            database: vec![format!("url = \"{url}\"")],
            jobs: vec![
                "table = \"jobs\"".into(),
                "heartbeat_at = \"updated_at\"".into(),
            ],
            statuses: vec![
                "running = [\"running\"]".into(),
                "succeeded = [\"completed\"]".into(),
                "failed = [\"failed\"]".into(),
            ],
            sections: Vec::new(),
        }
    }

    /// Keys before any table (`interval`, `environment`, ...).
    pub fn top(mut self, toml: &str) -> TestConfig {
        self.top.push(toml.to_string());
        self
    }

    /// More keys of `[database]`.
    pub fn database(mut self, toml: &str) -> TestConfig {
        self.database.push(toml.to_string());
        self
    }

    /// More keys of `[jobs]`.
    pub fn jobs(mut self, toml: &str) -> TestConfig {
        self.jobs.push(toml.to_string());
        self
    }

    /// Replaces `[jobs.statuses]`.
    pub fn statuses(mut self, toml: &str) -> TestConfig {
        self.statuses = vec![toml.to_string()];
        self
    }

    /// A heartbeat rule on `running` jobs, named `name`, over after `after`, with `extra`
    /// keys (`action`, `severity`).
    pub fn heartbeat_rule(self, name: &str, after: &str, extra: &str) -> TestConfig {
        self.section(&format!(
            "[[rules]]\nname = \"{name}\"\nstatuses = [\"running\"]\nsignal = \"heartbeat\"\n\
             after = \"{after}\"\n{extra}"
        ))
    }

    /// The config for [`TestDb::restart_aftermath`]: rule `hb` fails running jobs silent
    /// for 30 minutes (critical), rule `queue` alerts on jobs queued for an hour (warning);
    /// no startup grace, one scan to confirm. Add `[http]` and `[state]`.
    pub fn aftermath(url: &str) -> TestConfig {
        TestConfig::new(url)
            .top("interval = \"500ms\"")
            .jobs("status_since = \"created_at\"\nphase = \"phase\"")
            .statuses(
                "pending = [\"queued\"]\nrunning = [\"running\"]\nsucceeded = [\"completed\"]\nfailed = [\"failed\"]",
            )
            .heartbeat_rule("hb", "30m", "action = \"fail\"\nseverity = \"critical\"")
            .section(
                "[[rules]]\nname = \"queue\"\nstatuses = [\"queued\"]\nsignal = \"created\"\nafter = \"1h\"\naction = \"alert\"\nseverity = \"warning\"",
            )
            .section("[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1")
    }

    /// Any further tables, as TOML text.
    pub fn section(mut self, toml: &str) -> TestConfig {
        self.sections.push(toml.to_string());
        self
    }

    /// `[state] dir`.
    pub fn state(self, dir: &Path) -> TestConfig {
        self.section(&format!("[state]\ndir = \"{}\"", dir.display()))
    }

    /// `[http] listen` on 127.0.0.1 (port 0: the daemon picks one, [`Daemon::port`] reads it).
    pub fn http(self, port: u16) -> TestConfig {
        self.section(&format!("[http]\nlisten = \"127.0.0.1:{port}\""))
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for line in &self.top {
            out.push_str(line);
            out.push('\n');
        }
        for (header, lines) in [
            ("[database]", &self.database),
            ("[jobs]", &self.jobs),
            ("[jobs.statuses]", &self.statuses),
        ] {
            out.push_str(&format!("\n{header}\n{}\n", lines.join("\n")));
        }
        for section in &self.sections {
            out.push_str(&format!("\n{section}\n"));
        }
        out
    }

    /// Writes the config to `path` and returns the path.
    pub fn write(&self, path: PathBuf) -> PathBuf {
        std::fs::write(&path, self.text())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

pub mod python;
pub mod worker;
