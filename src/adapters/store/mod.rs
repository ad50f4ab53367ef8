//! The database adapter: one sqlx pool of the database's own driver (PostgreSQL,
//! MySQL/MariaDB or SQLite).
//!
//! Design:
//! - Every value is converted in SQL to text, a double or an integer before it reaches Rust,
//!   so one code path reads any table shape: each row is decoded straight from the driver's
//!   own row type through [`Cells`], with no intermediate copy. (sqlx's `Any` driver, used
//!   before, copied every row and its column list once more; in a profile of the scan bench
//!   that copy was about a fifth of the samples.) The SQL text comes from [`Queries`], a pure
//!   builder that is unit tested per dialect.
//! - The column types are learned once from the catalogue at connect time. They decide how a
//!   timestamp becomes Unix seconds (a native type is converted by the database, which cannot
//!   fail; text is parsed by jobwarden, so a malformed value is a warning, not a failed scan)
//!   and how "now" is written into `finished_at`.
//! - A scan is two queries whatever the table size: the database clock, then the active rows
//!   (`WHERE status IN (...)`, served by an index on the status column). With `parent_id`,
//!   the parents are read by primary key, and the children through the parent column
//!   (`parent IN (SELECT id ... active)`), which an index on it serves; never one statement
//!   `id IN (...) OR parent IN (...)`, which no index serves (the planner reads the table).
//! - Ages are measured on the database clock (`now()`), read *before* the rows, so a skewed
//!   host clock cannot fail a live job and a slow read can only make jobs look younger.
//! - The only write is the guarded UPDATE: one row, and only while its status, heartbeat and
//!   progress are exactly as read. A row that moved in between is not touched (`raced`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::{MySqlPool, PgPool, Row, SqlitePool};

use crate::config::scrub;
use crate::config::{Action, Config, Jobs, Places, StatusClass};
use crate::core::job::{Guard, JobRow, Reading, Relative, Stamp, WorkerBeat};
use crate::core::plan::Write;
use crate::core::sql::{Dialect, Field, TimeKind};
use crate::core::zone::{Setting, Zone};

mod catalogue;
mod decode;
mod list;
mod queries;
mod reach;

pub use list::Detail;

use catalogue::fixed_zone;
pub use catalogue::{
    check_values, time_info, worker_time, Base, DatabaseZone, Readings, Relation, TableInfo,
    TimeColumn, TimeInfo, ViewInfo, Writable,
};
use decode::{job_from_row, Cells};
pub use queries::{configured_columns, create_index, Queries};
use queries::{json_valid_column, IdKind};

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("table {table} does not exist (or this user cannot see it) in {url}")]
    NoTable { table: String, url: String },
    #[error("table {table} has no column {}", .missing.iter().map(|(k, c)| format!("`{c}` (set by `{k}`)")).collect::<Vec<_>>().join(", "))]
    MissingColumns {
        table: String,
        missing: Vec<(String, String)>,
    },
    #[error("{what} took longer than the query timeout of {}", humantime::format_duration(*.timeout))]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    /// The database could not be reached or read (down, timed out, connection lost, the
    /// table not readable).
    #[error("{what} failed: {message}")]
    Query { what: &'static str, message: String },
    /// The database answered with an error that jobwarden could not pin on one config key.
    #[error("{what} was rejected by the database: {message}")]
    Rejected { what: &'static str, message: String },
    /// A write waited [`LOCK_WAIT`] for another writer's lock on its row or table, and gave
    /// up: nothing was written.
    #[error("{what} gave up waiting for another writer's lock: {message}")]
    Locked { what: &'static str, message: String },
    /// The read was ended by [`Halt`] (SIGTERM): its session was dropped, not waited for.
    #[error("{what} was stopped by a signal")]
    Stopped { what: &'static str },
    /// The database rejected SQL that a config key put into the query: a config error.
    #[error("{place}: {message}")]
    Config {
        /// The key and its line (`` `jobs.where` (line 14) ``).
        place: String,
        message: String,
    },
}

impl StoreError {
    /// Whether the database answered (so it is up), whatever it said.
    pub fn database_answered(&self) -> bool {
        matches!(
            self,
            StoreError::Rejected { .. }
                | StoreError::Config { .. }
                | StoreError::MissingColumns { .. }
                | StoreError::Locked { .. }
        )
    }

    /// Whether the error is the config's: exit 2 rather than 3.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            StoreError::Config { .. } | StoreError::MissingColumns { .. }
        )
    }
}

/// Whether a database error's SQLSTATE says the session itself was ended or refused
/// (connection exceptions `08`, authorization `28`, an operator's termination or a server
/// shutting down `57P0x`, too many connections `53300`, MySQL's killed connection `70100`),
/// rather than that a statement was rejected.
fn session_lost(code: Option<&str>) -> bool {
    code.is_some_and(|c| {
        c.starts_with("08")
            || c.starts_with("28")
            || c.starts_with("57P")
            || c == "53300"
            || c == "70100"
    })
}

/// Whether a statement failed because its session was gone (the socket closed or broken, or
/// the server ending it, see [`session_lost`]) rather than for anything about the statement:
/// a read may run again on another session.
fn session_ended(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(d) => session_lost(d.code().as_deref()),
        _ => false,
    }
}

/// Ends the reads in flight, and refuses new ones, once set (SIGTERM): a scan whose query
/// runs long must not hold a stopping daemon. The read's session is detached from its pool
/// and dropped (its socket closed; PostgreSQL is also asked to cancel the statement), never
/// returned to the pool, which would wait for the statement to end. Writes do not look at it:
/// the write in flight finishes and is recorded. Clones share the signal.
#[derive(Debug, Clone)]
pub struct Halt(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Halt {
    fn default() -> Halt {
        Halt(std::sync::Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Halt {
    pub fn set(&self) {
        self.0.send_replace(true);
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once set (at once if it is).
    pub async fn halted(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|set| *set).await;
    }
}

/// One scan's worth of rows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The database clock, Unix seconds.
    pub now: f64,
    pub jobs: Vec<JobRow>,
    /// The parents of active rows that are not active themselves.
    pub relatives: Vec<Relative>,
    /// The children of active rows that are not active themselves, when they were read.
    pub children: Option<Vec<Relative>>,
    /// `[workers]` by id, read once after the rows (so a worker that took a job since is
    /// in it); `None` when not configured.
    pub workers: Option<HashMap<String, WorkerBeat>>,
}

/// The active set summed up per status word (see `Queries::summary_read`): what tells a summary
/// scan that the set is the one it read row by row, and the heartbeat's extremes for the
/// scan-wide figures.
#[derive(Debug, Clone, PartialEq)]
pub struct SetSummary {
    /// Per status word, by word: how many active rows, and a sum of hashes of each one's id
    /// (and `status_since`, pid, host and worker where configured).
    pub groups: Vec<(String, u64, String)>,
    /// The newest heartbeat of any active row, Unix seconds.
    pub newest_heartbeat: Option<f64>,
    /// The oldest heartbeat of a running row.
    pub oldest_running_heartbeat: Option<f64>,
}

/// What one summary read returns (see [`Store::summary_read`]).
#[derive(Debug, Clone)]
pub struct SummaryRead {
    /// The database clock when the statement ran, Unix seconds.
    pub now: f64,
    pub summary: SetSummary,
    /// The active rows that could be candidates by their heartbeat, read lightly (each
    /// once), when limits were given.
    pub suspects: Option<Vec<JobRow>>,
}

/// One row of the summary read, by its part (`queries::part`).
enum SummaryRow {
    Clock(Option<f64>),
    /// One configured word's rows.
    Group {
        status: String,
        count: u64,
        hash: String,
        newest: Option<f64>,
        oldest: Option<f64>,
    },
    Suspect(Box<JobRow>),
}

/// Whether a snapshot reads the active rows' children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Children {
    Read,
    /// Not this scan: without an index on the parent column the read costs a pass over the
    /// table, so it runs on the terminal-counts schedule (see `app::scan`).
    Skip,
}

/// A pool of the database's own sqlx driver.
#[derive(Debug, Clone)]
enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// Runs the same code on whichever pool `pool` holds: the code is written once and compiled
/// for each driver.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Postgres($p) => $body,
            Pool::MySql($p) => $body,
            Pool::Sqlite($p) => $body,
        }
    };
}

/// The options of a pool of one driver: the configured size and timeout.
fn pool_options<DB: sqlx::Database>(max: u32, timeout: Duration) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(max)
        .acquire_timeout(timeout)
}

/// A read session idle at least this long is pinged before it is used.
const PING_AFTER_IDLE: Duration = Duration::from_secs(60);

/// The read pool's options: [`pool_options`], but a session is pinged before use only after
/// [`PING_AFTER_IDLE`], not every time (a round trip per scan, at a daemon's interval). A
/// session the server ended in between is found by the statement instead, and
/// [`Store::fetch`] runs the statement again on another.
fn reader_options<DB: sqlx::Database>(max: u32, timeout: Duration) -> sqlx::pool::PoolOptions<DB> {
    pool_options(max, timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// The read session the store keeps between reads, one per driver (see [`Store::fetch`]),
/// with when it was last used.
#[derive(Default)]
struct Held {
    postgres: HeldSlot<sqlx::Postgres>,
    mysql: HeldSlot<sqlx::MySql>,
    sqlite: HeldSlot<sqlx::Sqlite>,
    /// Set by [`Held::release`]: a read that ends after it (the terminal counts, a page's
    /// read, running beside the close of a reload) hands its session back to the pool
    /// rather than keep it, or the closing pool would wait for it for ever.
    released: std::sync::atomic::AtomicBool,
}

type HeldSlot<DB> =
    std::sync::Mutex<Option<(sqlx::pool::PoolConnection<DB>, tokio::time::Instant)>>;

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

/// The slot of one driver's kept session.
trait Slot<DB: sqlx::Database> {
    fn slot(&self) -> &HeldSlot<DB>;
}

impl Slot<sqlx::Postgres> for Held {
    fn slot(&self) -> &HeldSlot<sqlx::Postgres> {
        &self.postgres
    }
}

impl Slot<sqlx::MySql> for Held {
    fn slot(&self) -> &HeldSlot<sqlx::MySql> {
        &self.mysql
    }
}

impl Slot<sqlx::Sqlite> for Held {
    fn slot(&self) -> &HeldSlot<sqlx::Sqlite> {
        &self.sqlite
    }
}

impl Held {
    /// Takes the kept session, if there is one and no other read has it.
    fn take<DB: sqlx::Database>(
        &self,
    ) -> Option<(sqlx::pool::PoolConnection<DB>, tokio::time::Instant)>
    where
        Held: Slot<DB>,
    {
        self.slot().try_lock().ok()?.take()
    }

    /// Keeps `session` for the next read, unless one is kept already (it then goes back to
    /// its pool).
    fn keep<DB: sqlx::Database>(&self, session: sqlx::pool::PoolConnection<DB>)
    where
        Held: Slot<DB>,
    {
        if let Ok(mut slot) = self.slot().try_lock() {
            // Read under the slot's lock, which `release` takes after setting it.
            let released = self.released.load(std::sync::atomic::Ordering::SeqCst);
            if slot.is_none() && !released {
                *slot = Some((session, tokio::time::Instant::now()));
            }
        }
    }

    /// Lets go of every kept session (back to its pool, which a closing pool waits for),
    /// and keeps none from now on.
    fn release(&self) {
        self.released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        fn clear<T>(slot: &std::sync::Mutex<Option<T>>) {
            if let Ok(mut slot) = slot.lock() {
                slot.take();
            }
        }
        clear(&self.postgres);
        clear(&self.mysql);
        clear(&self.sqlite);
    }
}

/// Opens the pool every read goes through. Its sessions cannot write: PostgreSQL sessions
/// start with `default_transaction_read_only`, MySQL ones run `SET SESSION TRANSACTION READ
/// ONLY`, SQLite connections open the file read-only. So nothing a scan runs (a `where` that
/// calls a writing function, a second statement smuggled into it) can change the database:
/// `check` and `--dry-run` cannot write, and a scan cannot either.
async fn open_reader(db: &crate::config::Database, timeout: Duration) -> Result<Pool, sqlx::Error> {
    use std::str::FromStr;
    let max = db.max_connections;
    Ok(match db.dialect {
        Dialect::Postgres => {
            let options = sqlx::postgres::PgConnectOptions::from_str(&db.url)?
                .options([("default_transaction_read_only", "on")])
                .application_name(&reader_name());
            Pool::Postgres(reader_options(max, timeout).connect_with(options).await?)
        }
        Dialect::MySql => Pool::MySql(
            reader_options(max, timeout)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::Executor::execute(conn, "SET SESSION TRANSACTION READ ONLY")
                            .await
                            .map(|_| ())
                    })
                })
                .connect(&db.url)
                .await?,
        ),
        Dialect::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)?
                .read_only(true)
                .busy_timeout(timeout);
            Pool::Sqlite(reader_options(max, timeout).connect_with(options).await?)
        }
    })
}

/// The `application_name` of this process's PostgreSQL read sessions, by which a stop
/// cancels their statements (and an operator can tell them in `pg_stat_activity`).
fn reader_name() -> String {
    format!("jobwarden {} reader", crate::adapters::audit::replica())
}

/// How long one write waits for another writer's lock on its row or table before it gives
/// up (`StoreError::Locked`; the write is tried again at the next scan). 1 s, or the query
/// timeout if shorter. An application's transaction that holds a row for 30 s must not hold
/// the scan loop as long: the scan's writes also share a budget (`actions::LOCK_BUDGET`).
pub const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Opens the one-connection pool the guarded write uses, on the first write. Its session
/// waits at most [`LOCK_WAIT`] for a lock: PostgreSQL `lock_timeout`, MySQL
/// `innodb_lock_wait_timeout` (rows) and `lock_wait_timeout` (tables), SQLite's busy timeout.
async fn open_writer(db: &crate::config::Database, timeout: Duration) -> Result<Pool, sqlx::Error> {
    use std::str::FromStr;
    let wait = LOCK_WAIT.min(timeout);
    Ok(match db.dialect {
        Dialect::Postgres => {
            let options = sqlx::postgres::PgConnectOptions::from_str(&db.url)?
                .options([("lock_timeout", format!("{}ms", wait.as_millis().max(1)))]);
            Pool::Postgres(pool_options(1, timeout).connect_with(options).await?)
        }
        Dialect::MySql => {
            // Whole seconds, at least 1: the smallest both variables take.
            let seconds = wait.as_secs().max(1);
            Pool::MySql(
                pool_options(1, timeout)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            let sql = format!(
                                "SET SESSION innodb_lock_wait_timeout = {seconds}, \
                                 SESSION lock_wait_timeout = {seconds}"
                            );
                            sqlx::Executor::execute(conn, sql.as_str())
                                .await
                                .map(|_| ())
                        })
                    })
                    .connect(&db.url)
                    .await?,
            )
        }
        Dialect::Sqlite => {
            // SQLite waits for a lock in its own thread: it gives up on its own, before
            // jobwarden's query timeout, so a write that timed out cannot happen later.
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)?.busy_timeout(wait);
            Pool::Sqlite(pool_options(1, timeout).connect_with(options).await?)
        }
    })
}

/// Whether a database error says a lock wait ran out: PostgreSQL `lock_not_available`
/// (55P03), MySQL/MariaDB `ER_LOCK_WAIT_TIMEOUT` (1205), SQLite `SQLITE_BUSY` / `SQLITE_LOCKED`
/// (5, 6, and their extended codes).
fn lock_wait_ran_out(e: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(my) = e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return my.number() == 1205;
    }
    if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        let code: Option<i64> = e.code().and_then(|c| c.parse().ok());
        return code.is_some_and(|c| matches!(c & 0xff, 5 | 6));
    }
    e.code().as_deref() == Some("55P03")
}

/// The open database.
#[derive(Debug, Clone)]
pub struct Store {
    /// Every read: sessions that cannot write.
    pool: Pool,
    /// The guarded writes: opened on the first one (`check` and dry runs never open it).
    writer: std::sync::Arc<tokio::sync::OnceCell<Pool>>,
    database: crate::config::Database,
    queries: Queries,
    timeout: Duration,
    secrets: Vec<String>,
    url: String,
    info: TableInfo,
    audit_table: Option<crate::core::sql::TableName>,
    /// The config's key lines, to name the key a rejected query comes from.
    places: Places,
    /// Ends the reads in flight (SIGTERM); never set unless given by [`Store::with_halt`].
    halt: Halt,
    /// The read session kept from one read to the next (shared by clones), with a pool of
    /// two or more: a session handed back to sqlx's pool is pinged on the way, a round trip
    /// per scan.
    held: std::sync::Arc<Held>,
    /// The light read names no index any more: the one it named was refused.
    unhinted: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The column order of the scan query.
mod col {
    pub const ID: usize = 0;
    pub const STATUS: usize = 1;
    pub const CREATED_NUM: usize = 2;
    pub const CREATED_TXT: usize = 3;
    pub const HEARTBEAT_NUM: usize = 4;
    pub const HEARTBEAT_TXT: usize = 5;
    pub const PROGRESS: usize = 6;
    pub const PHASE: usize = 7;
    pub const PARENT: usize = 8;
    pub const PID: usize = 9;
    pub const HOST: usize = 10;
    pub const ATTEMPTS: usize = 11;
    pub const STATUS_SINCE_NUM: usize = 12;
    pub const STATUS_SINCE_TXT: usize = 13;
    pub const WORKER: usize = 14;
    /// How many columns the scan's `SELECT` has.
    pub const COUNT: usize = 15;
}

impl Store {
    /// Connects, reads the table's columns, and checks that every configured one exists.
    pub async fn connect(config: &Config) -> Result<Store, StoreError> {
        let secrets = config.secrets();
        let url = config.redacted_url();
        let timeout = config.database.query_timeout;
        let db = &config.database;
        let address = reach::tcp_address(db);
        if let Some((host, port)) = &address {
            if let Err(why) = reach::probe(host, *port, timeout).await {
                return Err(StoreError::Connect {
                    url,
                    message: reach::describe(&why, host, *port, timeout),
                });
            }
        }
        let pool = open_reader(db, timeout)
            .await
            .map_err(|e| StoreError::Connect {
                url: url.clone(),
                message: match (&e, &address) {
                    (sqlx::Error::PoolTimedOut, Some((host, port))) => {
                        reach::no_greeting(host, *port, timeout)
                    }
                    _ => scrub(&e.to_string(), &secrets),
                },
            })?;
        let mut store = Store {
            pool,
            writer: Default::default(),
            database: db.clone(),
            queries: Queries::new(config.database.dialect, &config.jobs, &HashMap::new()),
            timeout,
            secrets,
            url,
            info: TableInfo::default(),
            audit_table: config.audit_table.clone(),
            places: config.places.clone(),
            halt: Halt::default(),
            held: Default::default(),
            unhinted: Default::default(),
        };
        store.info = store.table_info().await?;
        let mut missing: Vec<(String, String)> = configured_columns(&config.jobs)
            .into_iter()
            .filter(|(_, f)| !store.info.columns.contains_key(&f.column))
            .map(|(k, f)| (k.to_string(), f.column.clone()))
            .collect();
        let writes = &config.jobs.writes;
        missing.extend(
            (writes.fail.iter().chain(&writes.requeue))
                .filter(|c| !store.info.columns.contains_key(&c.column))
                .map(|c| (c.key.clone(), c.column.clone())),
        );
        if !missing.is_empty() {
            return Err(StoreError::MissingColumns {
                table: config.jobs.table.to_string(),
                missing,
            });
        }
        let worker_types = store.check_workers(config).await?;
        let zone = store.database_zone().await;
        store.info.time = time_info(config, &store.info.columns, zone);
        if let Some(w) = &config.jobs.workers {
            worker_time(config, &mut store.info.time, &w.heartbeat_at, &worker_types);
        }
        store.queries = Queries::new(config.database.dialect, &config.jobs, &store.info.columns)
            .with_finished(store.info.time.readings.finished)
            .with_naive_zone(store.info.time.read_zone)
            .with_workers(&worker_types)
            .with_light_index(store.info.light_index.as_deref());
        Ok(store)
    }

    /// The store, its reads ended by `halt` once it is set.
    pub fn with_halt(mut self, halt: Halt) -> Store {
        self.halt = halt;
        self
    }

    /// Why writes must not be made (naive timestamps in an unknown convention), if so.
    pub fn refusal(&self) -> Option<&str> {
        self.info.time.refusal.as_deref()
    }

    /// The zone an application's session gets. PostgreSQL: the role-in-database, role and
    /// database defaults (`pg_db_role_setting`), then the server's own setting
    /// (`pg_file_settings`); sqlx starts every session of its own with `TimeZone=UTC`, so
    /// `current_setting` cannot tell. MySQL: the global `time_zone`, with `SYSTEM` resolved
    /// through `system_time_zone`. SQLite has no zone: its `CURRENT_TIMESTAMP` is UTC.
    async fn database_zone(&self) -> DatabaseZone {
        let result = match self.queries.dialect {
            Dialect::Sqlite => return DatabaseZone::default(),
            Dialect::Postgres => self.postgres_zone().await,
            Dialect::MySql => self.mysql_zone().await,
        };
        result.unwrap_or_else(|e| DatabaseZone {
            described: format!("unknown ({e})"),
            zone: None,
        })
    }

    async fn postgres_zone(&self) -> Result<DatabaseZone, StoreError> {
        let setting = |db: &str, role: &str| {
            format!(
                "(SELECT substr(c, 10) FROM pg_db_role_setting s, unnest(s.setconfig) c \
                 WHERE s.setdatabase = {db} AND s.setrole = {role} AND lower(c) LIKE 'timezone=%' LIMIT 1)"
            )
        };
        let db = "(SELECT oid FROM pg_database WHERE datname = current_database())";
        let role = "(SELECT oid FROM pg_roles WHERE rolname = current_user)";
        let sql = format!(
            "SELECT {}, {}, {}",
            setting(db, role),
            setting("0", role),
            setting(db, "0")
        );
        let rows = self
            .fetch("reading the database's time zone", &sql, |row| {
                Ok([
                    row.text(0, "zone")?,
                    row.text(1, "zone")?,
                    row.text(2, "zone")?,
                ])
            })
            .await?;
        let defaults = rows.into_iter().next().unwrap_or_default();
        let sources = [
            "role default in this database",
            "role default",
            "database default",
        ];
        let found = defaults
            .into_iter()
            .zip(sources)
            .find_map(|(v, source)| Some((v?, source)));
        let (name, source) = match found {
            Some((name, source)) => (name, source.to_string()),
            None => {
                let server = self
                    .fetch(
                        "reading the server's time zone",
                        "SELECT setting FROM pg_file_settings WHERE lower(name) = 'timezone' \
                         AND applied ORDER BY seqno DESC LIMIT 1",
                        |row| row.text(0, "zone"),
                    )
                    .await
                    .map_err(|_| StoreError::Query {
                        what: "reading the server's time zone",
                        message: "pg_file_settings is not readable by this role (grant it \
                                  pg_read_all_settings, or set [database] timezone)"
                            .into(),
                    })?;
                match server.into_iter().flatten().next() {
                    Some(name) => (name, "server setting".to_string()),
                    // Not in the configuration files: the built-in default.
                    None => ("GMT".to_string(), "built-in default".to_string()),
                }
            }
        };
        let described = format!("{name} ({source})");
        if let Some(zone) = Zone::named(&name) {
            return Ok(DatabaseZone {
                described,
                zone: Some(zone),
            });
        }
        // Not an IANA name (a POSIX rule such as `UTC+5`): ask the server for its offset now.
        let offsets = on_pool!(&self.pool, pool => {
            let sql = "SELECT (extract(epoch from (now() AT TIME ZONE $1) - (now() AT TIME ZONE 'UTC')))::float8";
            self.timed("reading the database's time zone", sqlx::query_scalar::<_, f64>(sql).bind(name.clone()).fetch_optional(pool)).await
        });
        Ok(fixed_zone(described, offsets.ok().flatten()))
    }

    async fn mysql_zone(&self) -> Result<DatabaseZone, StoreError> {
        let sql = "SELECT CAST(@@global.time_zone AS CHAR), CAST(@@system_time_zone AS CHAR), \
                   CAST(TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), \
                   CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', @@global.time_zone)) AS SIGNED), \
                   CAST(UNIX_TIMESTAMP() AS DOUBLE)";
        let rows = self
            .fetch("reading the database's time zone", sql, |row| {
                Ok((
                    row.text(0, "zone")?,
                    row.text(1, "zone")?,
                    row.int(2, "offset")?,
                    row.float(3, "now")?,
                ))
            })
            .await?;
        let (global, system, offset, now) = rows.into_iter().next().unwrap_or_default();
        let global = global.unwrap_or_default();
        let (name, described) = if global.eq_ignore_ascii_case("SYSTEM") {
            let system = system.unwrap_or_default();
            (
                system.clone(),
                format!("SYSTEM, the server's {system} (global time_zone)"),
            )
        } else {
            (global.clone(), format!("{global} (global time_zone)"))
        };
        let offset = offset.map(|o| o as f64);
        // A name is followed with its daylight-saving rules only when it is an IANA name that
        // agrees with the server's offset now (`CET` in summer, say, would not).
        if let Some(zone) = Zone::named(&name).or_else(|| Zone::parse(&name).ok()) {
            let agrees = offset.is_none_or(|o| o as i32 == zone.offset_at(now.unwrap_or_default()));
            if agrees {
                return Ok(DatabaseZone {
                    described,
                    zone: Some(zone),
                });
            }
        }
        Ok(fixed_zone(described, offset))
    }

    /// The values the status column can hold, with what says so (`enum run_status`, `CHECK
    /// constraint jobs_status_check`), when the catalogue restricts them.
    pub async fn status_domain(&self) -> Result<Option<(String, Vec<String>)>, StoreError> {
        let column = &self.queries.jobs.status.column;
        for sql in self.queries.status_domain() {
            let rows = match self
                .fetch("reading the status column's values", &sql, |row| {
                    Ok((row.text(0, "what")?, row.text(1, "values")?))
                })
                .await
            {
                Ok(rows) => rows,
                // An old server without the catalogue view: nothing to say.
                Err(StoreError::Rejected { .. }) => continue,
                Err(e) => return Err(e),
            };
            for (what, text) in rows {
                let (Some(what), Some(text)) = (what, text) else {
                    continue;
                };
                if let Some(values) = check_values(&what, &text, column) {
                    return Ok(Some((what, values)));
                }
            }
        }
        Ok(None)
    }

    /// Runs `EXPLAIN` of a write on the connection writes use: its syntax, types and (on
    /// PostgreSQL and MySQL) the privileges it needs are checked, and nothing is written.
    pub async fn explain(&self, what: &'static str, sql: &str) -> Result<(), StoreError> {
        let writer = self.writer().await?;
        let sql = format!("EXPLAIN {sql}");
        on_pool!(writer, pool => {
            self.timed(what, sqlx::query(&sql).fetch_all(pool)).await.map(|_| ())
        })
    }

    /// The connection pool writes use, opened on first use.
    async fn writer(&self) -> Result<&Pool, StoreError> {
        self.writer
            .get_or_try_init(|| open_writer(&self.database, self.timeout))
            .await
            .map_err(|e| StoreError::Query {
                what: "connecting for a write",
                message: scrub(&e.to_string(), &self.secrets),
            })
    }

    /// An id the id column can hold, for statements that must match no row.
    pub fn placeholder_id(&self) -> &'static str {
        match self.id_kind() {
            IdKind::Uuid => "00000000-0000-0000-0000-000000000000",
            IdKind::Number => "-1",
            IdKind::Text => "jobwarden-validate",
        }
    }

    /// What values the id column holds, from its catalogue type.
    fn id_kind(&self) -> IdKind {
        let ty = self
            .info
            .columns
            .get(&self.queries.jobs.id.column)
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_default();
        if ty.contains("uuid") {
            IdKind::Uuid
        } else if TimeKind::from_sql_type(&ty) == TimeKind::Number {
            IdKind::Number
        } else {
            IdKind::Text
        }
    }

    /// The integers a numeric id column holds, from its catalogue type: an id beyond them
    /// is no row of the table (asking would only make the database refuse the statement).
    /// SQLite's integers are all 64-bit; a `numeric` or `decimal` id is taken as 64-bit too.
    fn id_range(&self) -> (i128, i128) {
        let ty = self
            .info
            .columns
            .get(&self.queries.jobs.id.column)
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_default();
        let has = |words: &[&str]| words.iter().any(|w| ty.contains(w));
        let bits: u32 = if self.database.dialect == crate::core::sql::Dialect::Sqlite
            || has(&[
                "bigint",
                "int8",
                "bigserial",
                "serial8",
                "numeric",
                "decimal",
            ]) {
            64
        } else if has(&["smallint", "int2", "smallserial"]) {
            16
        } else if has(&["mediumint"]) {
            24
        } else if has(&["tinyint"]) {
            8
        } else if has(&["int", "serial"]) {
            32
        } else {
            64
        };
        if has(&["unsigned"]) {
            (0, (1i128 << bits) - 1)
        } else {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        }
    }

    /// What the catalogue said at connect time.
    pub fn info(&self) -> &TableInfo {
        &self.info
    }

    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    async fn table_info(&self) -> Result<TableInfo, StoreError> {
        let rows = self
            .fetch(
                "reading the table's columns",
                &self.queries.columns(),
                |row| Ok((row.text(0, "column name")?, row.text(1, "column type")?)),
            )
            .await?;
        let mut columns = HashMap::new();
        for (name, ty) in rows {
            if let Some(name) = name {
                columns.insert(name, ty.unwrap_or_default());
            }
        }
        if let Some(sql) = self.queries.json_checks() {
            // Not every server has this view: the type stays the catalogue's then.
            let checks = self
                .fetch("reading the table's JSON checks", &sql, |row| {
                    row.text(0, "check clause")
                })
                .await
                .unwrap_or_default();
            for column in checks.iter().flatten().filter_map(|c| json_valid_column(c)) {
                if let Some(t) = columns.get_mut(&column) {
                    *t = "json".into();
                }
            }
        }
        if columns.is_empty() {
            return Err(StoreError::NoTable {
                table: self.queries.jobs.table.to_string(),
                url: self.url.clone(),
            });
        }
        let index_rows = self
            .fetch(
                "reading the table's indexes",
                &self.queries.status_index(),
                |row| row.int(0, "index count"),
            )
            .await?;
        let indexed = index_rows.first().copied().flatten().unwrap_or(0);
        let parent_indexed = self.has_index(self.queries.parent_index()).await?;
        let (candidate_indexed, light_index) = self.candidate_index().await?;
        Ok(TableInfo {
            columns,
            status_indexed: indexed > 0,
            parent_indexed,
            candidate_indexed,
            light_index,
            time: TimeInfo::default(),
        })
    }

    /// Whether the advised index exists and, on MySQL/MariaDB, its name (the light read's
    /// hint, `Queries::with_light_index`).
    async fn candidate_index(&self) -> Result<(bool, Option<String>), StoreError> {
        let Some(sql) = self.queries.candidate_index() else {
            return Ok((false, None));
        };
        let named = self.database.dialect == Dialect::MySql;
        let rows = self
            .fetch("reading the table's indexes", &sql, |row| {
                let name = if named {
                    row.text(1, "index name")?
                } else {
                    None
                };
                Ok((row.int(0, "index count")?.unwrap_or(0), name))
            })
            .await?;
        let (count, name) = rows.into_iter().next().unwrap_or((0, None));
        Ok((count > 0, name.filter(|_| count > 0)))
    }

    /// Whether a catalogue query counting indexes finds one (`None`: no index can serve).
    async fn has_index(&self, sql: Option<String>) -> Result<bool, StoreError> {
        let Some(sql) = sql else {
            return Ok(false);
        };
        let rows = self
            .fetch("reading the table's indexes", &sql, |row| {
                row.int(0, "index count")
            })
            .await?;
        Ok(rows.first().copied().flatten().unwrap_or(0) > 0)
    }

    /// Reads the database clock, then every active row, then (with `parent_id`) their
    /// parents by primary key and, when `children` says so, their children.
    pub async fn snapshot(&self, children: Children) -> Result<Snapshot, StoreError> {
        self.snapshot_with(&self.queries.scan, children).await
    }

    /// The first read of a two-tier scan: [`Store::snapshot`] with the light read of the
    /// active rows (see `Queries::light`), to be followed by [`Store::active_in_full`].
    pub async fn light_snapshot(&self, children: Children) -> Result<Snapshot, StoreError> {
        let now = self.clock().await?;
        let readings = self.info.time.readings;
        let at = &self.queries.light_at;
        let read = |sql| {
            self.fetch("reading the active jobs", sql, |row| {
                job_from_row(&decode::Placed { row, at }, &readings)
            })
        };
        let forced = self
            .queries
            .light_forced
            .as_ref()
            .filter(|_| !self.unhinted.load(std::sync::atomic::Ordering::Relaxed));
        let read = match forced {
            Some(sql) => match read(sql).await {
                // The index is gone since the store read the catalogue (an operator dropped
                // or renamed it): read without naming it, now and from now on.
                Err(StoreError::Rejected { message, .. }) => {
                    tracing::warn!(
                        "the light read could not name the advised index ({message}); reading without it"
                    );
                    self.unhinted
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    read(&self.queries.light).await
                }
                other => other,
            },
            None => read(&self.queries.light).await,
        };
        let jobs = match read {
            Err(StoreError::Rejected { message, .. }) => return Err(self.diagnose(message).await),
            other => other?,
        };
        self.with_relatives(now, jobs, children).await
    }

    /// The second read of a two-tier scan: the active rows among `ids`, read in full; a
    /// thousand ids a statement, each by primary key.
    pub async fn active_in_full(&self, ids: &[&str]) -> Result<Vec<JobRow>, StoreError> {
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            if let Some(sql) = self.queries.active_by_ids(chunk) {
                rows.extend(self.active_rows(&sql).await?);
            }
        }
        Ok(rows)
    }

    /// Every active row, read in full: the reference read.
    pub async fn active_all_in_full(&self) -> Result<Vec<JobRow>, StoreError> {
        self.active_rows(&self.queries.scan).await
    }

    /// Whether [`Store::summary_read`] stands for the light read of this table and config.
    /// On MySQL/MariaDB only with the advised index (or no time column to index): without
    /// it each part of the summary fetches every active row from the table again, and a
    /// summary scan cost 1.7 to 3.3 times the light read's CPU (BENCHMARKS.md, "Issue 23's
    /// matrix"). PostgreSQL's summary stays the cheaper in CPU without the index too (0.56 to
    /// 0.66 times), if a little slower.
    pub fn summarises(&self) -> bool {
        self.queries.summary.is_some()
            && (self.database.dialect != Dialect::MySql
                || self.info.candidate_indexed
                || self.queries.candidate_column().is_none())
    }

    /// The summary read (`Queries::summary_read`), in one statement: the database clock, the
    /// summary of the active set (a row per status word where the light read reads every
    /// active row) and, with `limits` (`core::candidates::heartbeat_limits`), the light
    /// read of the active rows that could be candidates by their heartbeat: a NULL or
    /// unreadable heartbeat, one ahead of the clock, or one at or past the limit of its
    /// status word. `estimate`: about the database's clock (Unix seconds), to find a naive
    /// column's zone offsets near the bounds. `None` where no summary stands for the light
    /// read.
    ///
    /// The bounds are put into the column's own numbers with room to spare (a naive column's
    /// zone may change its offset near them), relative to the statement's own clock; the
    /// caller judges the rows exactly.
    pub async fn summary_read(
        &self,
        limits: Option<&std::collections::BTreeMap<String, Duration>>,
        estimate: f64,
    ) -> Result<Option<SummaryRead>, StoreError> {
        let reading = self.info.time.readings.heartbeat;
        // The offsets a wall clock could read with around `utc`: no row whose reading is
        // at or before `utc` has a number above `utc + max`, none after it one below
        // `utc + min`.
        let offsets = |utc: f64| -> (f64, f64) {
            match reading.native_zone {
                None => (0.0, 0.0),
                Some(zone) => (-4..=4)
                    .map(|k| f64::from(zone.offset_at(utc + f64::from(k) * 6.0 * 3600.0)))
                    .fold((f64::MAX, f64::MIN), |(lo, hi), o| (lo.min(o), hi.max(o))),
            }
        };
        let mut by_after: std::collections::BTreeMap<Duration, Vec<&str>> = Default::default();
        for (word, after) in limits.into_iter().flatten() {
            by_after.entry(*after).or_default().push(word);
        }
        // Seconds after the clock: a row ahead of `ahead` is named (`pick` names one more
        // than FUTURE_TOLERANCE ahead), and one at or before a group's bound (`pick` names a
        // row when `now - heartbeat >= after - 1`), each with a second to spare.
        let tolerance = crate::core::detect::FUTURE_TOLERANCE;
        let ahead = tolerance - 1.0 + offsets(estimate + tolerance).0;
        let due: Vec<(Vec<&str>, f64)> = by_after
            .into_iter()
            .map(|(after, words)| {
                let after = after.as_secs_f64();
                (words, 2.0 + 1e-3 - after + offsets(estimate - after).1)
            })
            .collect();
        let endpoints = self.info.candidate_indexed;
        let Some(sql) = self.queries.summary_read(
            limits.map(|_| queries::Due {
                ahead,
                groups: &due,
            }),
            endpoints,
        ) else {
            return Ok(None);
        };
        let readings = self.info.time.readings;
        let at = &self.queries.light_at;
        let suspect_at = at.map(|p| p.map(|p| p + queries::SUMMARY_PREFIX));
        // Seconds (or a wall clock) below 1e11, milliseconds above: each read as a row's is.
        let instant = |lo: Option<f64>, hi: Option<f64>, pick: fn(f64, f64) -> f64| {
            [lo, hi]
                .into_iter()
                .flatten()
                .filter_map(|raw| Stamp::read(Some(raw), None, reading).at())
                .reduce(pick)
        };
        let status_at = suspect_at[col::STATUS].unwrap_or(queries::SUMMARY_PREFIX);
        let rows = self
            .fetch("reading the summary of the active jobs", &sql, |row| {
                let part = row.int(0, "part")?.unwrap_or(-1);
                Ok(match part {
                    queries::part::SUSPECT => SummaryRow::Suspect(Box::new(job_from_row(
                        &decode::Placed {
                            row,
                            at: &suspect_at,
                        },
                        &readings,
                    )?)),
                    queries::part::CLOCK => SummaryRow::Clock(row.float(1, "now")?),
                    _ => SummaryRow::Group {
                        status: row.text(status_at, "status")?.unwrap_or_default(),
                        count: row.int(2, "count")?.unwrap_or(0).max(0) as u64,
                        hash: row.text(3, "hash")?.unwrap_or_default(),
                        newest: instant(
                            row.float(4, "heartbeat")?,
                            row.float(5, "heartbeat")?,
                            f64::max,
                        ),
                        oldest: instant(
                            row.float(6, "heartbeat")?,
                            row.float(7, "heartbeat")?,
                            f64::min,
                        ),
                    },
                })
            })
            .await?;
        let statuses = &self.queries.jobs.statuses;
        let mut now = None;
        let mut summary = SetSummary {
            groups: Vec::new(),
            newest_heartbeat: None,
            oldest_running_heartbeat: None,
        };
        let mut suspects: Vec<JobRow> = Vec::new();
        let mut seen = HashSet::new();
        for row in rows {
            match row {
                SummaryRow::Clock(at) => now = at,
                SummaryRow::Suspect(job) => {
                    // A row can come in two branches.
                    if seen.insert(job.id.clone()) {
                        suspects.push(*job);
                    }
                }
                SummaryRow::Group {
                    status,
                    count,
                    hash,
                    newest,
                    oldest,
                } => {
                    summary.newest_heartbeat = [summary.newest_heartbeat, newest]
                        .into_iter()
                        .flatten()
                        .reduce(f64::max);
                    if statuses.class_of(&status) == Some(StatusClass::Running) {
                        summary.oldest_running_heartbeat =
                            [summary.oldest_running_heartbeat, oldest]
                                .into_iter()
                                .flatten()
                                .reduce(f64::min);
                    }
                    // A word without rows is no group of the set.
                    if count > 0 {
                        summary.groups.push((status, count, hash));
                    }
                }
            }
        }
        summary.groups.sort();
        let now = now.ok_or(StoreError::Query {
            what: "reading the database clock",
            message: "no value".into(),
        })?;
        Ok(Some(SummaryRead {
            now,
            summary,
            suspects: limits.map(|_| suspects),
        }))
    }

    async fn snapshot_with(&self, scan: &str, children: Children) -> Result<Snapshot, StoreError> {
        let now = self.clock().await?;
        let jobs = match self.active_rows(scan).await {
            Err(StoreError::Rejected { message, .. }) => return Err(self.diagnose(message).await),
            other => other?,
        };
        self.with_relatives(now, jobs, children).await
    }

    /// A snapshot of these active rows: their parents by primary key and, when `children`
    /// says so, their children.
    async fn with_relatives(
        &self,
        now: f64,
        jobs: Vec<JobRow>,
        children: Children,
    ) -> Result<Snapshot, StoreError> {
        let relatives = self.parents(&jobs).await?;
        let children = match children {
            Children::Read => Some(self.children(&jobs).await?),
            Children::Skip => None,
        };
        let workers = self.workers().await?;
        Ok(Snapshot {
            now,
            jobs,
            relatives,
            children,
            workers,
        })
    }

    /// Every row of `[workers]` (id, heartbeat, host, pid), in one query; `None` when not
    /// configured. A worker registry is small: one row per process.
    pub async fn workers(&self) -> Result<Option<HashMap<String, WorkerBeat>>, StoreError> {
        let Some(sql) = &self.queries.workers else {
            return Ok(None);
        };
        let reading = self.info.time.readings.worker;
        let rows = self
            .fetch("reading the workers", sql, |row| {
                let id = row.text(0, "worker id")?;
                let heartbeat_text = row.text(2, "worker heartbeat")?;
                let beat = WorkerBeat {
                    heartbeat_at: Stamp::read(
                        row.float(1, "worker heartbeat")?,
                        heartbeat_text.as_deref(),
                        reading,
                    ),
                    heartbeat_text,
                    host: row.text(3, "worker host")?,
                    pid: row.text(4, "worker pid")?,
                };
                Ok(id.map(|id| (id, beat)))
            })
            .await;
        let rows = match rows {
            Err(StoreError::Rejected { message, .. }) => {
                return Err(StoreError::Config {
                    place: self.places.name("workers.heartbeat_at"),
                    message: format!("reading the workers was rejected: {message}"),
                })
            }
            other => other?,
        };
        Ok(Some(rows.into_iter().flatten().collect()))
    }

    /// The columns of `[workers]`' table, checked against the config: a missing table or
    /// column is the config's error, naming its key and line.
    async fn check_workers(&self, config: &Config) -> Result<HashMap<String, String>, StoreError> {
        let Some(w) = &config.jobs.workers else {
            return Ok(HashMap::new());
        };
        let rows = self
            .fetch(
                "reading the workers table's columns",
                &self.queries.columns_of(&w.table),
                |row| Ok((row.text(0, "column name")?, row.text(1, "column type")?)),
            )
            .await?;
        let columns: HashMap<String, String> = rows
            .into_iter()
            .filter_map(|(n, t)| Some((n?, t.unwrap_or_default())))
            .collect();
        if columns.is_empty() {
            return Err(StoreError::Config {
                place: config.places.name("workers.table"),
                message: format!(
                    "table {} does not exist (or this user cannot see it) in {}",
                    w.table, self.url
                ),
            });
        }
        let mut wanted = vec![
            ("workers.id", &w.id),
            ("workers.heartbeat_at", &w.heartbeat_at),
        ];
        wanted.extend(w.host.as_ref().map(|f| ("workers.host", f)));
        wanted.extend(w.pid.as_ref().map(|f| ("workers.pid", f)));
        if let Some((key, field)) = wanted
            .into_iter()
            .find(|(_, f)| !columns.contains_key(&f.column))
        {
            return Err(StoreError::Config {
                place: config.places.name(key),
                message: format!("table {} has no column `{}`", w.table, field.column),
            });
        }
        Ok(columns)
    }

    /// The database clock, as Unix time.
    pub async fn clock(&self) -> Result<f64, StoreError> {
        let now_rows = self
            .fetch(
                "reading the database clock",
                self.queries.dialect.now_epoch(),
                |row| row.float(0, "now"),
            )
            .await?;
        now_rows
            .first()
            .copied()
            .flatten()
            .ok_or(StoreError::Query {
                what: "reading the database clock",
                message: "no value".into(),
            })
    }

    /// One row by id, whatever its status (within `[jobs] where`), read now; `None` when the
    /// table has no such row (or the id cannot be one of its ids).
    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        if !self.valid_id(id) {
            return Ok(None);
        }
        let readings = self.info.time.readings;
        let rows = self
            .fetch("reading one job", &self.queries.one(id), |row| {
                job_from_row(row, &readings)
            })
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The active rows a scan statement returns.
    async fn active_rows(&self, sql: &str) -> Result<Vec<JobRow>, StoreError> {
        let readings = self.info.time.readings;
        self.fetch("reading the active jobs", sql, |row| {
            job_from_row(row, &readings)
        })
        .await
    }

    /// Finds which part of a scan the database rejected, by running each part alone: the
    /// table (not readable: exit 3), a status word, `where`, or a column expression (the
    /// config's fault: exit 2, naming the key and its line).
    async fn diagnose(&self, message: String) -> StoreError {
        for (key, sql) in self.queries.probes() {
            let Err(e) = self.fetch("diagnosing the scan", &sql, |_| Ok(())).await else {
                continue;
            };
            let reason = match e {
                StoreError::Rejected { message, .. } => message,
                other => return other,
            };
            return match key {
                None => StoreError::Query {
                    what: "reading the table",
                    message: reason,
                },
                Some(key) => StoreError::Config {
                    place: self.places.name(&key),
                    message: reason,
                },
            };
        }
        StoreError::Rejected {
            what: "reading the active jobs",
            message,
        }
    }

    /// What a scan reads (the clock, the scan's own `SELECT` limited to `limit` rows, the
    /// relatives), for `validate --connect`.
    /// The children are read only where an index on the parent column serves the read: a
    /// probe (a reload's, say) never reads the whole table; `probe_children` proves the
    /// statement.
    pub async fn probe(&self, limit: usize) -> Result<Snapshot, StoreError> {
        let children = if self.info.parent_indexed {
            Children::Read
        } else {
            Children::Skip
        };
        self.snapshot_with(&self.queries.scan_limited(limit), children)
            .await
    }

    /// Runs the children read once, for at most one row (`validate --connect`): the database
    /// accepts the statement (types, casts, the JSON path). Nothing without `parent_id`.
    pub async fn probe_children(&self) -> Result<(), StoreError> {
        let Some(sql) = self.queries.children(self.info.parent_indexed) else {
            return Ok(());
        };
        self.fetch("reading child jobs", &format!("{sql} LIMIT 1"), |_| Ok(()))
            .await
            .map(|_| ())
    }

    /// The parents of the active rows that are not active themselves, by primary key.
    async fn parents(&self, jobs: &[JobRow]) -> Result<Vec<Relative>, StoreError> {
        let active: std::collections::HashSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        let mut parent_ids: Vec<&str> = jobs
            .iter()
            .filter_map(|j| j.parent_id.as_deref())
            .filter(|p| !active.contains(p) && self.valid_id(p))
            .collect();
        parent_ids.sort_unstable();
        parent_ids.dedup();
        let Some(sql) = self.queries.parents(&parent_ids) else {
            return Ok(Vec::new());
        };
        self.relatives("reading parent jobs", &sql, &active).await
    }

    /// The children of the active rows that are not active themselves, through the parent
    /// column (its index, when it has one). Empty without `parent_id` or active rows.
    async fn children(&self, jobs: &[JobRow]) -> Result<Vec<Relative>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let Some(sql) = self.queries.children(self.info.parent_indexed) else {
            return Ok(Vec::new());
        };
        let active: std::collections::HashSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        self.relatives("reading child jobs", &sql, &active).await
    }

    /// The (id, status, parent id) rows of a relatives statement, but the active rows.
    async fn relatives(
        &self,
        what: &'static str,
        sql: &str,
        active: &std::collections::HashSet<&str>,
    ) -> Result<Vec<Relative>, StoreError> {
        let rows = self
            .fetch(what, sql, |row| {
                Ok((
                    row.text(0, "id")?,
                    row.text(1, "status")?,
                    row.text(2, "parent id")?,
                ))
            })
            .await?;
        let mut out = Vec::new();
        for (id, status, parent_id) in rows {
            if let (Some(id), Some(status)) = (id, status) {
                if !active.contains(id.as_str()) {
                    out.push(Relative {
                        id,
                        status,
                        parent_id,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The statuses of these ids, for those the table has; one query.
    pub async fn lookup(&self, ids: &[&str]) -> Result<Vec<(String, String)>, StoreError> {
        let Some(sql) = self.queries.lookup(ids) else {
            return Ok(Vec::new());
        };
        let rows = self
            .fetch("looking up artifact job ids", &sql, |row| {
                Ok((row.text(0, "id")?, row.text(1, "status")?))
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for pair in rows {
            if let (Some(id), Some(status)) = pair {
                out.push((id, status));
            }
        }
        Ok(out)
    }

    /// Succeeded jobs within `within`: (id, status, finished at on the database clock).
    pub async fn recent_succeeded(
        &self,
        within: Duration,
        now: f64,
    ) -> Result<Vec<(String, String, f64)>, StoreError> {
        let Some(sql) = self.queries.recent_succeeded(within) else {
            return Ok(Vec::new());
        };
        let reading = if self.queries.jobs.finished_at.is_some() {
            self.info.time.readings.finished
        } else {
            self.info.time.readings.created
        };
        let rows = self
            .fetch("reading recently succeeded jobs", &sql, |row| {
                let stamp = Stamp::read(
                    row.float(2, "finished")?,
                    row.text(3, "finished")?.as_deref(),
                    reading,
                );
                Ok((row.text(0, "id")?, row.text(1, "status")?, stamp.at()))
            })
            .await?;
        let mut out = Vec::new();
        for row in rows {
            if let (Some(id), Some(status), Some(at)) = row {
                if now - at <= within.as_secs_f64() {
                    out.push((id, status, at));
                }
            }
        }
        Ok(out)
    }

    /// Whether a string can be an id of this table: digits for a numeric id column, the
    /// 8-4-4-4-12 form for a uuid one, anything else otherwise. An id that cannot be would
    /// make the database reject a whole lookup.
    pub fn valid_id(&self, id: &str) -> bool {
        match self.id_kind() {
            IdKind::Uuid => {
                let parts: Vec<&str> = id.split('-').collect();
                parts.len() == 5
                    && parts
                        .iter()
                        .zip([8, 4, 4, 4, 12])
                        .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
            }
            IdKind::Number => {
                let digits = id.strip_prefix('-').unwrap_or(id);
                let (low, high) = self.id_range();
                !digits.is_empty()
                    && digits.len() <= 20
                    && digits.chars().all(|c| c.is_ascii_digit())
                    && id.parse::<i128>().is_ok_and(|n| (low..=high).contains(&n))
            }
            IdKind::Text => !id.is_empty(),
        }
    }

    /// Counts rows per status word over the whole table: slow on a big table, so the daemon
    /// runs it on its own period (with the terminal counts it gives), never inside a scan.
    pub async fn status_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        let sql = self.queries.status_counts();
        let rows = self
            .fetch("counting rows per status", &sql, |row| {
                Ok((row.text(0, "status")?, row.int(1, "count")?))
            })
            .await?;
        let hex = self.queries.dialect == Dialect::MySql;
        let mut counts = std::collections::BTreeMap::new();
        for (status, n) in rows {
            let status = match status {
                Some(h) if hex => from_hex(&h),
                other => other,
            };
            if let Some(status) = status {
                *counts.entry(status).or_default() += n.unwrap_or(0).max(0) as u64;
            }
        }
        Ok(counts)
    }

    /// How many of the newest rows holding `word` (at most `limit`) were created within
    /// `within` of `now` (the database clock).
    pub async fn created_within(
        &self,
        word: &str,
        limit: usize,
        within: Duration,
        now: f64,
    ) -> Result<usize, StoreError> {
        let sql = self.queries.newest_created(word, limit);
        let reading = self.info.time.readings.created;
        let stamps = self
            .fetch("reading the newest rows of a status", &sql, |row| {
                Ok(Stamp::read(
                    row.float(0, "created_at")?,
                    row.text(1, "created_at")?.as_deref(),
                    reading,
                ))
            })
            .await?;
        Ok(stamps
            .iter()
            .filter_map(Stamp::at)
            .filter(|at| now - at <= within.as_secs_f64())
            .count())
    }

    /// Runs one guarded write. `Ok(true)`: the row was written; `Ok(false)`: it had changed
    /// since it was read and was left alone.
    pub async fn apply(
        &self,
        write: &Write,
        audit: &crate::adapters::audit::Entry,
        now: f64,
    ) -> Result<bool, StoreError> {
        let (sql, params) = self.queries.write(write, now);
        let audit_insert = self.audit_table.as_ref().map(|table| {
            let mut entry = audit.clone();
            entry.outcome = crate::adapters::audit::Recorded::Applied;
            self.queries.audit_insert(table, &entry)
        });
        let writer = self.writer().await?;
        on_pool!(writer, pool => {
            let mut query = sqlx::query(&sql);
            for p in params {
                query = query.bind(p);
            }
            let Some((insert_sql, insert_params)) = audit_insert else {
                let result = self
                    .timed("writing a job", query.execute(pool))
                    .await
                    .map_err(|e| self.write_rejected(write.action, e))?;
                return Ok(result.rows_affected() == 1);
            };
            // With an audit table, the row and its audit line commit together or not at all.
            let mut tx = self.timed("starting a transaction", pool.begin()).await?;
            let result = self
                .timed("writing a job", query.execute(&mut *tx))
                .await
                .map_err(|e| self.write_rejected(write.action, e))?;
            if result.rows_affected() != 1 {
                self.timed("rolling back", tx.rollback()).await?;
                return Ok(false);
            }
            let mut insert = sqlx::query(&insert_sql);
            for p in insert_params {
                insert = insert.bind(p);
            }
            self.timed("writing the audit table", insert.execute(&mut *tx))
                .await?;
            self.timed("committing", tx.commit()).await?;
            Ok(true)
        })
    }

    /// A guarded UPDATE the database rejected, as the config keys it is about (the columns
    /// its message names, else every column it sets) and their lines: the database's own
    /// words (`invalid input syntax for type json`) seldom say which key to fix.
    pub fn write_rejected(&self, action: Action, e: StoreError) -> StoreError {
        match e {
            StoreError::Rejected { message, .. } => StoreError::Config {
                place: self
                    .queries
                    .blame(action, &message)
                    .iter()
                    .map(|k| self.places.name(k))
                    .collect::<Vec<_>>()
                    .join(", "),
                message: format!(
                    "the guarded UPDATE of `{}` was rejected by the database: {message}",
                    action.as_str()
                ),
            },
            other => other,
        }
    }

    /// Runs a query and decodes each row with `decode`, straight from the driver's row.
    /// The session is taken from the pool first, on its own: a database that refuses one
    /// (CONNECT revoked, a failed login, too many clients) answers with an error too, but it
    /// is an outage, not a rejected statement.
    async fn fetch<T>(
        &self,
        what: &'static str,
        sql: &str,
        decode: impl Fn(&dyn Cells) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        if self.halt.is_set() {
            return Err(StoreError::Stopped { what });
        }
        // Each pooled session may have been ended by the server since its last use (a
        // restart, an operator's kill): one try more than there are sessions reaches a new one.
        let mut retries = self.database.max_connections;
        // A pool of one session keeps none aside: a second read would wait for it in vain.
        let keep = self.database.max_connections > 1;
        on_pool!(&self.pool, pool => loop {
            let kept = if keep { self.held.take() } else { None };
            let mut session = match kept {
                // Used lately: as it is, like a pooled one (see `reader_options`).
                Some((session, at)) if at.elapsed() < PING_AFTER_IDLE => session,
                other => {
                    // Idle too long, or none kept: a session from the pool. One kept too long
                    // goes back to the pool first, which pings it on the way in and closes it
                    // if it is gone.
                    drop(other);
                    tokio::select! {
                        session = self.session(what, pool.acquire()) => session?,
                        _ = self.halt.halted() => return Err(StoreError::Stopped { what }),
                    }
                }
            };
            let rows = tokio::select! {
                rows = tokio::time::timeout(self.timeout, sqlx::query(sql).fetch_all(&mut *session)) => rows,
                _ = self.halt.halted() => {
                    // The statement is still running: drop the session rather than wait for it.
                    drop(session.detach());
                    self.cancel_statements().await;
                    return Err(StoreError::Stopped { what });
                }
            };
            let ended = matches!(&rows, Ok(Err(e)) if session_ended(e));
            if ended && retries > 0 {
                retries -= 1;
                tracing::debug!("{what}: the session was gone; trying another");
                session.close_on_drop();
                continue;
            }
            // A session gone, or one whose statement timed out (it may still be running it),
            // is closed; a sound one kept for the next read.
            if ended || rows.is_err() {
                session.close_on_drop();
            } else if keep {
                self.held.keep(session);
            }
            let rows = self.outcome(what, rows)?;
            return rows.iter().map(|row| decode(row)).collect();
        })
    }

    /// Asks PostgreSQL to cancel the statements still running on this process's read
    /// sessions (known by their `application_name`), from a session of its own, within a
    /// second: a dropped session's statement would otherwise run on to its end. MySQL and
    /// SQLite: nothing to do (SQLite runs in this process; MySQL's statement ends with its
    /// connection's next check).
    async fn cancel_statements(&self) {
        if self.database.dialect != Dialect::Postgres {
            return;
        }
        let cancel = async {
            use std::str::FromStr;
            let options = sqlx::postgres::PgConnectOptions::from_str(&self.database.url).ok()?;
            let mut conn: sqlx::PgConnection =
                sqlx::Connection::connect_with(&options).await.ok()?;
            sqlx::query(
                "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = $1 AND state = 'active' AND pid <> pg_backend_pid()",
            )
            .bind(reader_name())
            .execute(&mut conn)
            .await
            .ok()?;
            sqlx::Connection::close(conn).await.ok()
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), cancel).await;
    }

    /// A session from a pool, within the query timeout: any error is the database not
    /// reached (never `Rejected`), whatever the server said.
    async fn session<C>(
        &self,
        what: &'static str,
        fut: impl std::future::Future<Output = Result<C, sqlx::Error>>,
    ) -> Result<C, StoreError> {
        self.timed(what, fut).await.map_err(|e| match e {
            StoreError::Rejected { what, message } => StoreError::Query { what, message },
            other => other,
        })
    }

    async fn timed<T>(
        &self,
        what: &'static str,
        fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        self.outcome(what, tokio::time::timeout(self.timeout, fut).await)
    }

    /// What a statement run under the query timeout came to, as a [`StoreError`].
    fn outcome<T>(
        &self,
        what: &'static str,
        result: Result<Result<T, sqlx::Error>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreError> {
        match result {
            Err(_) => Err(StoreError::Timeout {
                what,
                timeout: self.timeout,
            }),
            Ok(Err(sqlx::Error::Database(e))) if lock_wait_ran_out(e.as_ref()) => {
                Err(StoreError::Locked {
                    what,
                    message: scrub(&e.to_string(), &self.secrets),
                })
            }
            // The server ended or refused the session: the database is not reachable.
            Ok(Err(sqlx::Error::Database(e))) if session_lost(e.code().as_deref()) => {
                Err(StoreError::Query {
                    what,
                    message: scrub(&e.to_string(), &self.secrets),
                })
            }
            // The database answered, with an error about the statement.
            Ok(Err(sqlx::Error::Database(e))) => Err(StoreError::Rejected {
                what,
                message: scrub(&e.to_string(), &self.secrets),
            }),
            Ok(Err(e)) => Err(StoreError::Query {
                what,
                message: scrub(&e.to_string(), &self.secrets),
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Closes the pools' connections.
    pub async fn close(&self) {
        self.held.release();
        on_pool!(&self.pool, pool => pool.close().await);
        if let Some(writer) = self.writer.get() {
            on_pool!(writer, pool => pool.close().await);
        }
    }
}

/// The text whose bytes `HEX()` gave (lossy for bytes that are not UTF-8).
fn from_hex(hex: &str) -> Option<String> {
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Statuses;
    use crate::core::sql::{parse_field, parse_table};

    fn jobs() -> Jobs {
        let f = |s: &str| parse_field(s).unwrap();
        Jobs {
            table: parse_table("public.research_jobs").unwrap(),
            id: f("id"),
            status: f("status"),
            created_at: f("created_at"),
            heartbeat_at: Some(f("updated_at")),
            status_since: None,
            progress: Some(f("metadata.steps")),
            finished_at: Some(f("completed_at")),
            error: Some(f("error")),
            payload: None,
            parent_id: Some(f("main_job_id")),
            phase: None,
            pid: None,
            host: None,
            worker: None,
            workers: None,
            attempts: None,
            max_attempts: 3,
            where_sql: Some("archived = false".into()),
            statuses: Statuses {
                pending: vec!["pending".into()],
                running: vec!["running".into()],
                failed: vec!["failed".into()],
                ..Statuses::default()
            },
            writes: Default::default(),
        }
    }

    fn types() -> HashMap<String, String> {
        [
            ("id", "uuid"),
            ("created_at", "timestamp with time zone"),
            ("updated_at", "timestamp without time zone"),
            ("completed_at", "timestamp with time zone"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    fn write() -> Write {
        Write {
            job_id: "42".into(),
            action: Action::Fail,
            status_before: "running".into(),
            status_after: "failed".into(),
            guard: Guard {
                heartbeat: Some("2026-01-01 00:00:00".into()),
                progress: None,
                ..Guard::default()
            },
            reason: "jobwarden: hb: no heartbeat".into(),
            rule: "hb".into(),
            bump_attempts: false,
        }
    }

    #[test]
    fn scan_reads_only_active_rows() {
        let q = Queries::new(Dialect::Postgres, &jobs(), &types());
        assert!(q.scan.ends_with(
            "FROM \"public\".\"research_jobs\" WHERE \"status\" IN ('pending', 'running') AND (archived = false)"
        ), "{}", q.scan);
        assert!(q
            .scan
            .contains("(extract(epoch from (\"created_at\")::timestamptz))::float8"));
        assert!(q
            .scan
            .contains("(((\"metadata\")::jsonb #>> '{steps}'))::text"));
        let my = Queries::new(Dialect::MySql, &jobs(), &HashMap::new());
        assert!(
            my.scan.contains("WHERE `status` IN ('pending', 'running')"),
            "{}",
            my.scan
        );
    }

    #[test]
    fn the_workers_are_one_query_and_the_job_worker_is_in_both_reads() {
        let mut j = jobs();
        j.worker = Some(parse_field("worker_id").unwrap());
        j.workers = Some(crate::core::vocabulary::Workers {
            table: parse_table("procrastinate_workers").unwrap(),
            id: parse_field("id").unwrap(),
            heartbeat_at: parse_field("last_heartbeat").unwrap(),
            host: None,
            pid: Some(parse_field("pid").unwrap()),
        });
        let worker_types: HashMap<String, String> = [(
            "last_heartbeat".to_string(),
            "timestamp with time zone".to_string(),
        )]
        .into();
        let q = Queries::new(Dialect::Postgres, &j, &types()).with_workers(&worker_types);
        assert_eq!(
            q.workers.as_deref(),
            Some(
                "SELECT (\"id\")::text, (extract(epoch from (\"last_heartbeat\")::timestamptz))::float8, \
                 (\"last_heartbeat\")::text, NULL::text, (\"pid\")::text FROM \"procrastinate_workers\""
            )
        );
        assert!(q.scan.contains("(\"worker_id\")::text"), "{}", q.scan);
        assert!(q.light.contains("(\"worker_id\")::text"), "{}", q.light);
        assert!(q.light_at[col::WORKER].is_some());
        let my = Queries::new(Dialect::MySql, &j, &HashMap::new()).with_workers(&HashMap::new());
        assert!(
            my.workers
                .as_deref()
                .is_some_and(|w| w.ends_with("FROM `procrastinate_workers`")),
            "{:?}",
            my.workers
        );
        // Without [workers], no such query.
        let q = Queries::new(Dialect::Postgres, &jobs(), &types()).with_workers(&worker_types);
        assert_eq!(q.workers, None);
    }

    #[test]
    fn guarded_write_compares_everything_it_read() {
        let q = Queries::new(Dialect::Postgres, &jobs(), &types());
        let (sql, params) = q.write(&write(), 0.0);
        assert_eq!(
            sql,
            "UPDATE \"public\".\"research_jobs\" SET \"status\" = 'failed', \"completed_at\" = now(), \"error\" = $1 \
             WHERE \"id\" = '42' AND \"status\" = 'running' AND (archived = false) \
             AND (\"updated_at\")::text IS NOT DISTINCT FROM $2 \
             AND (((\"metadata\")::jsonb #>> '{steps}'))::text IS NOT DISTINCT FROM $3"
        );
        assert_eq!(
            params,
            vec![
                Some("jobwarden: hb: no heartbeat".into()),
                Some("2026-01-01 00:00:00".into()),
                None
            ]
        );
        let (sql, _) = Queries::new(Dialect::MySql, &jobs(), &HashMap::new()).write(&write(), 0.0);
        assert!(sql.contains("CAST(`updated_at` AS CHAR) <=> ?"), "{sql}");
        let (sql, _) = Queries::new(Dialect::Sqlite, &jobs(), &HashMap::new()).write(&write(), 0.0);
        assert!(sql.contains("CAST(\"updated_at\" AS TEXT) IS ?"), "{sql}");
    }

    #[test]
    fn guarded_write_requires_the_worker_as_read() {
        let mut j = jobs();
        j.worker = Some(parse_field("worker_id").unwrap());
        let with_workers = |mut j: Jobs| {
            j.workers = Some(crate::core::vocabulary::Workers {
                table: parse_table("jw.workers").unwrap(),
                id: parse_field("id").unwrap(),
                heartbeat_at: parse_field("last_heartbeat").unwrap(),
                host: None,
                pid: None,
            });
            j
        };
        let beat = |heartbeat: Option<&str>| crate::core::job::WorkerSeen::Beat {
            id: "17".into(),
            heartbeat: heartbeat.map(str::to_string),
        };
        let mut w = write();
        w.guard.worker = Some("17".into());
        w.guard.worker_row = Some(beat(Some("2026-01-01 00:00:00+00")));
        // The worker column alone: the job was not handed to another worker.
        let (sql, params) = Queries::new(Dialect::Postgres, &j, &types()).write(&w, 0.0);
        assert!(
            sql.ends_with(" AND (\"worker_id\")::text IS NOT DISTINCT FROM $4"),
            "{sql}"
        );
        assert_eq!(params.len(), 4);
        // With [workers]: its row still beats as read, one statement, every value bound.
        let q = Queries::new(Dialect::Postgres, &with_workers(j.clone()), &types());
        let (sql, params) = q.write(&w, 0.0);
        assert!(
            sql.ends_with(
                " AND (\"worker_id\")::text IS NOT DISTINCT FROM $4 \
                 AND EXISTS (SELECT 1 FROM \"jw\".\"workers\" WHERE (\"id\")::text = $5 \
                 AND (\"last_heartbeat\")::text IS NOT DISTINCT FROM $6)"
            ),
            "{sql}"
        );
        assert_eq!(
            params[3..],
            [
                Some("17".into()),
                Some("17".into()),
                Some("2026-01-01 00:00:00+00".into())
            ]
        );
        assert!(q.describe(&w, 0.0).ends_with(
            "AND still running, worker_id '17', worker 17's jw.workers.last_heartbeat '2026-01-01 00:00:00+00'"
        ), "{}", q.describe(&w, 0.0));
        // A worker whose row was gone: still gone.
        w.guard.worker_row = Some(crate::core::job::WorkerSeen::Gone { id: "17".into() });
        let my = Queries::new(Dialect::MySql, &with_workers(j.clone()), &HashMap::new());
        let (sql, params) = my.write(&w, 0.0);
        assert!(
            sql.ends_with(
                "AND CAST(`worker_id` AS CHAR) <=> ? \
                 AND NOT EXISTS (SELECT 1 FROM `jw`.`workers` WHERE CAST(`id` AS CHAR) = ?)"
            ),
            "{sql}"
        );
        assert_eq!(params.len(), 5);
        assert!(my
            .describe(&w, 0.0)
            .ends_with("worker 17 not in jw.workers"));
        // A worker that had not beaten yet: still NULL.
        w.guard.worker_row = Some(beat(None));
        let lite = Queries::new(Dialect::Sqlite, &with_workers(j), &HashMap::new());
        let (sql, params) = lite.write(&w, 0.0);
        assert!(
            sql.ends_with(
                "AND EXISTS (SELECT 1 FROM \"jw\".\"workers\" WHERE CAST(\"id\" AS TEXT) = ? \
                 AND CAST(\"last_heartbeat\" AS TEXT) IS ?)"
            ),
            "{sql}"
        );
        assert_eq!(params.last(), Some(&None));
        // No worker row judged (a job that names none): no look-up.
        w.guard.worker_row = None;
        let (sql, _) = lite.write(&w, 0.0);
        assert!(!sql.contains("EXISTS"), "{sql}");
    }

    #[test]
    fn requeue_only_sets_the_status() {
        let q = Queries::new(Dialect::Sqlite, &jobs(), &HashMap::new());
        let mut w = write();
        w.action = Action::Requeue;
        w.status_after = "pending".into();
        let (sql, params) = q.write(&w, 0.0);
        assert!(
            sql.starts_with("UPDATE \"public\".\"research_jobs\" SET \"status\" = 'pending' WHERE"),
            "{sql}"
        );
        assert_eq!(params.len(), 2);
    }

    #[test]
    fn hostile_ids_stay_literals() {
        let q = Queries::new(Dialect::Postgres, &jobs(), &types());
        let mut w = write();
        w.job_id = "1' OR '1'='1".into();
        let (sql, _) = q.write(&w, 0.0);
        assert!(sql.contains("\"id\" = '1'' OR ''1''=''1'"), "{sql}");
        let one = q.one("1' OR '1'='1");
        assert!(
            one.ends_with("WHERE \"id\" = '1'' OR ''1''=''1' AND (archived = false)"),
            "the fresh read of one job keeps its id a literal: {one}"
        );
    }

    #[test]
    fn parents_by_key_and_children_through_the_parent_column() {
        let q = Queries::new(Dialect::Postgres, &jobs(), &types());
        let sql = q.parents(&["7"]).unwrap();
        assert!(sql.ends_with("WHERE \"id\" IN ('7')"), "{sql}");
        assert_eq!(q.parents(&[]), None);
        let scope = "\"status\" IN ('pending', 'running') AND (archived = false)";
        assert_eq!(
            q.children(false).unwrap(),
            format!(
                "SELECT (\"id\")::text, (\"status\")::text, (\"main_job_id\")::text \
                 FROM \"public\".\"research_jobs\" WHERE \"main_job_id\" IN \
                 (SELECT \"id\" FROM \"public\".\"research_jobs\" WHERE {scope}) \
                 AND NOT COALESCE(({scope}), FALSE)"
            )
        );
        // Never an OR of the two look-ups: no index serves one.
        assert!(!q.children(false).unwrap().contains(" OR "));
        // With the index, PostgreSQL looks each active id up in it.
        assert!(
            q.children(true)
                .unwrap()
                .contains("WHERE \"main_job_id\" = ANY (ARRAY(SELECT \"id\" FROM"),
            "{}",
            q.children(true).unwrap()
        );
        // A parent column of another type than the id: the id is cast to it.
        let mut t = types();
        t.insert("main_job_id".into(), "text".into());
        let sql = Queries::new(Dialect::Postgres, &jobs(), &t)
            .children(false)
            .unwrap();
        assert!(
            sql.contains("\"main_job_id\" IN (SELECT (\"id\")::text::text FROM"),
            "{sql}"
        );
        // A JSON path: its text against the id's.
        let mut j = jobs();
        j.parent_id = Some(parse_field("metadata.parent").unwrap());
        let sql = Queries::new(Dialect::Postgres, &j, &types())
            .children(false)
            .unwrap();
        assert!(
            sql.contains(
                "WHERE ((\"metadata\")::jsonb #>> '{parent}') IN (SELECT (\"id\")::text FROM"
            ),
            "{sql}"
        );
        let mut j = jobs();
        j.parent_id = None;
        assert_eq!(
            Queries::new(Dialect::Postgres, &j, &types()).children(true),
            None
        );
    }

    #[test]
    fn parent_index_advice_per_dialect() {
        let q = Queries::new(Dialect::Postgres, &jobs(), &types());
        assert_eq!(
            q.parent_index_advice().unwrap(),
            "CREATE INDEX \"research_jobs_main_job_id_idx\" ON \"public\".\"research_jobs\" (\"main_job_id\")"
        );
        let mut j = jobs();
        j.parent_id = Some(parse_field("metadata.parent").unwrap());
        assert_eq!(
            Queries::new(Dialect::Postgres, &j, &types())
                .parent_index_advice()
                .unwrap(),
            "CREATE INDEX \"research_jobs_metadata_parent_idx\" ON \"public\".\"research_jobs\" \
             (((\"metadata\")::jsonb #>> '{parent}'))"
        );
        assert_eq!(
            Queries::new(Dialect::Sqlite, &j, &types())
                .parent_index_advice()
                .unwrap(),
            "CREATE INDEX \"research_jobs_metadata_parent_idx\" ON \"public\".\"research_jobs\" \
             (json_extract(\"metadata\", '$.parent'))"
        );
        // MariaDB indexes no JSON expression: no advice to run, and no index to look for.
        let my = Queries::new(Dialect::MySql, &j, &types());
        assert_eq!(my.parent_index_advice(), None);
        assert_eq!(my.parent_index(), None);
    }

    #[test]
    fn finished_at_follows_its_type() {
        let mut t = types();
        t.insert("completed_at".into(), "bigint".into());
        let (sql, _) = Queries::new(Dialect::Postgres, &jobs(), &t).write(&write(), 0.0);
        assert!(
            sql.contains("\"completed_at\" = extract(epoch from now())::bigint"),
            "{sql}"
        );
    }

    #[test]
    fn hex_words_read_back_as_text() {
        assert_eq!(from_hex("52756E6E696E67").as_deref(), Some("Running"));
        assert_eq!(from_hex("").as_deref(), Some(""));
        assert_eq!(from_hex("5"), None);
    }

    #[test]
    fn status_counts_read_every_word_within_where() {
        let sql = Queries::new(Dialect::Sqlite, &jobs(), &HashMap::new()).status_counts();
        assert_eq!(
            sql,
            "SELECT CAST(\"status\" AS TEXT), COUNT(*) FROM \"public\".\"research_jobs\" \
             WHERE (archived = false) GROUP BY \"status\""
        );
    }

    #[test]
    fn status_values_from_the_catalogue() {
        let v = |what: &str, text: &str| check_values(what, text, "status");
        assert_eq!(
            v("enum run_status", "PENDING\nPROCESSING"),
            Some(vec!["PENDING".into(), "PROCESSING".into()])
        );
        assert_eq!(
            v("ENUM column", "enum('a','it''s')"),
            Some(vec!["a".into(), "it's".into()])
        );
        assert_eq!(
            v(
                "CHECK constraint jobs_status_check",
                "CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text])))"
            ),
            Some(vec!["pending".into(), "running".into()])
        );
        assert_eq!(
            v("CHECK constraint c", "`status` in ('queued','done')"),
            Some(vec!["queued".into(), "done".into()])
        );
        assert_eq!(
            v(
                "CHECK constraint",
                "CREATE TABLE jobs (id INTEGER, status TEXT CHECK (status IN ('a', 'b')), substatus TEXT)"
            ),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(v("CHECK constraint c", "CHECK ((substatus <> 'x'))"), None);
        assert_eq!(v("CHECK constraint c", "CHECK ((attempts >= 0))"), None);
    }

    #[test]
    fn ended_sessions_are_not_rejected_statements() {
        for lost in [
            "08006", "08P01", "28000", "28P01", "57P01", "57P03", "53300", "70100",
        ] {
            assert!(session_lost(Some(lost)), "{lost}");
        }
        // Permission denied, a syntax error, an undefined column: the database answered.
        for answered in ["42501", "42601", "42703", "22P02", "HY000"] {
            assert!(!session_lost(Some(answered)), "{answered}");
        }
        assert!(!session_lost(None));
    }

    #[test]
    fn scrub_removes_secrets() {
        assert_eq!(
            scrub("password authentication failed: s3cret", &["s3cret".into()]),
            "password authentication failed: ***"
        );
    }

    /// A read that ends while its store closes (a reload closing the old store while the
    /// terminal counts still read) hands its session back: the pool's close, which waits
    /// for every session out, then ends. Kept, the session held the reload up for ever.
    #[tokio::test]
    async fn a_read_ending_after_the_close_keeps_no_session() {
        async fn pool() -> sqlx::SqlitePool {
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(2)
                .connect("sqlite::memory:")
                .await
                .expect("in-memory SQLite")
        }
        let closing = pool().await;
        let held = Held::default();
        let late = closing.acquire().await.expect("session");
        held.release();
        held.keep(late);
        let closed = tokio::time::timeout(Duration::from_secs(10), closing.close()).await;
        assert!(closed.is_ok(), "the pool's close waited for a kept session");

        // Before the close, a session is kept for the next read.
        let open = pool().await;
        let held = Held::default();
        held.keep(open.acquire().await.expect("session"));
        assert!(held.take::<sqlx::Sqlite>().is_some());
    }
}
