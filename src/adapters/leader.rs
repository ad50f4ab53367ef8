//! Leadership among replicas: several `jobwarden run` against one table all scan and serve
//! metrics, and exactly one (the leader) writes and alerts.
//!
//! The lock is the database's own: a PostgreSQL session advisory lock
//! (`pg_try_advisory_lock`) or a MySQL/MariaDB named lock (`GET_LOCK`), held on a dedicated
//! connection outside the pool. It is checked every scan: a leader whose connection broke has
//! lost it, and when a leader dies its lock goes with its connection, so a standby takes over
//! at its next scan. SQLite has no such lock: the daemon says at start that it must run as a
//! single replica, and always leads.
//!
//! The lock is named after the table *and where it lives*: `jobwarden:<database>.<table>` on
//! MySQL (whose `GET_LOCK` is server-wide: two applications with a `training_jobs` table in
//! two databases of one server must not share a lock) and
//! `jobwarden:<database>.<schema>.<table>` on PostgreSQL (two schemas of one database). The
//! database and schema are the session's own (`current_database()`, `current_schema()`,
//! `DATABASE()`) unless the config qualifies the table. A standby says who holds the lock when
//! the database can tell: the holder's pid and `application_name` (`jobwarden host:pid`, set by
//! every replica) from `pg_locks`, or the connection id of `IS_USED_LOCK` and its client from
//! the process list.

use sqlx::{AnyConnection, Connection, Row};

use crate::config::Config;
use crate::core::sql::{Dialect, TableName};

/// MySQL lock names are at most this many characters.
const MYSQL_LOCK_NAME_MAX: usize = 64;

/// A replica's claim to lead.
pub struct Leadership {
    dialect: Dialect,
    url: String,
    table: TableName,
    /// The lock's name, once the database and schema are known (at the first connect).
    name: Option<String>,
    conn: Option<AnyConnection>,
    held: bool,
    /// The role the last check reported, to log each change once (`None`: never checked).
    reported: Option<bool>,
    /// Who holds the lock, as the database tells, while this replica stands by.
    holder: Option<String>,
}

/// A stable 63-bit key for a lock name, the same in every replica (FNV-1a).
fn lock_key(name: &str) -> i64 {
    (crate::core::memory::fingerprint(name) >> 1) as i64
}

/// The lock's name: the table with the database (and on PostgreSQL the schema) it lives in.
/// `database` and `schema` are the session's own; a schema in the config's table name wins
/// (on MySQL a schema *is* a database). A MySQL name over 64 characters keeps its head and
/// ends in a hash of the whole, so it stays unique.
fn lock_name(dialect: Dialect, database: &str, schema: &str, table: &TableName) -> String {
    let schema = table.schema.as_deref().unwrap_or(schema);
    let name = match dialect {
        Dialect::MySql => format!("jobwarden:{schema}.{}", table.name),
        _ => format!("jobwarden:{database}.{schema}.{}", table.name),
    };
    if dialect != Dialect::MySql || name.chars().count() <= MYSQL_LOCK_NAME_MAX {
        return name;
    }
    let hash = format!("#{:016x}", crate::core::memory::fingerprint(&name));
    let head: String = name
        .chars()
        .take(MYSQL_LOCK_NAME_MAX - hash.len())
        .collect();
    format!("{head}{hash}")
}

impl Leadership {
    pub fn new(config: &Config) -> Leadership {
        if config.database.dialect == Dialect::Sqlite {
            tracing::info!(
                "SQLite has no shared lock: run a single jobwarden replica against this database"
            );
        }
        Leadership {
            dialect: config.database.dialect,
            url: config.database.url.clone(),
            table: config.jobs.table.clone(),
            name: None,
            conn: None,
            held: false,
            reported: None,
            holder: None,
        }
    }

    /// Whether this replica leads now: keeps the lock if it holds it and its connection is
    /// alive, else tries to take it. Never waits for another replica. Logs one line when the
    /// role is first known and one each time it changes.
    pub async fn check(&mut self) -> bool {
        if self.dialect == Dialect::Sqlite {
            return true;
        }
        self.held = match self.try_hold().await {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!("leader lock: {e}");
                self.conn = None;
                false
            }
        };
        self.holder = if self.held {
            None
        } else {
            self.find_holder().await
        };
        if self.reported != Some(self.held) {
            let lock = self.name.as_deref().unwrap_or("(not reached)");
            let holder = self.holder.as_deref().unwrap_or("unknown");
            match (self.reported, self.held) {
                (_, true) => tracing::info!(lock, "this replica is now the leader"),
                (None, false) => tracing::warn!(
                    lock,
                    leader = holder,
                    "this replica is a standby: another session holds the leader lock; it \
                     writes and alerts nothing until it takes the lock"
                ),
                (Some(_), false) => tracing::warn!(
                    lock,
                    leader = holder,
                    "this replica is no longer the leader"
                ),
            }
            self.reported = Some(self.held);
        }
        self.held
    }

    /// Who holds the lock while this replica stands by, as the database tells ("pid 4242
    /// (jobwarden web-2:1234)", "connection 17 (app@10.0.0.5:53312)"); `None` when it cannot.
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }

    async fn try_hold(&mut self) -> Result<bool, sqlx::Error> {
        if self.conn.is_none() {
            sqlx::any::install_default_drivers();
            let mut conn = AnyConnection::connect(&self.url).await?;
            self.name = Some(identify(self.dialect, &self.table, &mut conn).await?);
            self.conn = Some(conn);
            self.held = false;
        }
        let (Some(conn), Some(name)) = (self.conn.as_mut(), self.name.as_deref()) else {
            return Ok(false);
        };
        if self.held {
            // Still ours while the session lives: a ping (PostgreSQL's Sync, MySQL's
            // COM_PING) asks no statement of the server.
            conn.ping().await?;
            return Ok(true);
        }
        let row = match self.dialect {
            Dialect::Postgres => {
                sqlx::query(&format!(
                    "SELECT CASE WHEN pg_try_advisory_lock({}) THEN 1 ELSE 0 END",
                    lock_key(name)
                ))
                .fetch_one(&mut *conn)
                .await?
            }
            _ => {
                sqlx::query("SELECT CAST(COALESCE(GET_LOCK(?, 0), 0) AS SIGNED)")
                    .bind(name.to_string())
                    .fetch_one(&mut *conn)
                    .await?
            }
        };
        Ok(int(&row, 0)? == Some(1))
    }

    /// Asks the database who holds the lock; `None` when it cannot tell (or will not: the
    /// process list of another user needs a privilege).
    async fn find_holder(&mut self) -> Option<String> {
        let (Some(conn), Some(name)) = (self.conn.as_mut(), self.name.as_deref()) else {
            return None;
        };
        let found = match self.dialect {
            Dialect::Postgres => {
                let key = lock_key(name) as u64;
                let sql = format!(
                    "SELECT a.pid::text, COALESCE(a.application_name, '')::text, \
                     COALESCE(host(a.client_addr), '')::text \
                     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                     AND l.classid = '{}'::oid AND l.objid = '{}'::oid LIMIT 1",
                    key >> 32,
                    key & 0xffff_ffff
                );
                sqlx::query(&sql)
                    .fetch_optional(&mut *conn)
                    .await
                    .ok()
                    .flatten()
                    .map(|row| {
                        let [pid, app, addr] = [0, 1, 2].map(|i| text(&row, i).unwrap_or_default());
                        describe(&format!("pid {pid}"), &app, &addr)
                    })
            }
            _ => {
                let row = sqlx::query("SELECT CAST(IS_USED_LOCK(?) AS SIGNED)")
                    .bind(name.to_string())
                    .fetch_one(&mut *conn)
                    .await
                    .ok()?;
                let id = int(&row, 0).ok().flatten()?;
                let client = sqlx::query(
                    "SELECT CAST(CONCAT(USER, '@', HOST) AS CHAR) \
                     FROM information_schema.PROCESSLIST WHERE ID = ?",
                )
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .ok()
                .flatten()
                .and_then(|row| text(&row, 0).ok())
                .unwrap_or_default();
                Some(describe(&format!("connection {id}"), "", &client))
            }
        };
        found
    }

    /// Whether the last check found this replica leading.
    pub fn is_leader(&self) -> bool {
        self.dialect == Dialect::Sqlite || self.held
    }

    /// Lets the lock go (at shutdown), so a standby takes over at once.
    pub async fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
        self.held = false;
    }
}

/// Names the lock after the session's database and schema, and (PostgreSQL) sets the
/// session's `application_name` to this replica, so a standby can say who leads.
async fn identify(
    dialect: Dialect,
    table: &TableName,
    conn: &mut AnyConnection,
) -> Result<String, sqlx::Error> {
    let (database, schema) = match dialect {
        Dialect::Postgres => {
            sqlx::query("SELECT set_config('application_name', $1, false)")
                .bind(format!("jobwarden {}", crate::adapters::audit::replica()))
                .execute(&mut *conn)
                .await?;
            let row = sqlx::query(
                "SELECT current_database()::text, COALESCE(current_schema()::text, '')",
            )
            .fetch_one(&mut *conn)
            .await?;
            (text(&row, 0)?, text(&row, 1)?)
        }
        _ => {
            let row = sqlx::query("SELECT CAST(COALESCE(DATABASE(), '') AS CHAR)")
                .fetch_one(&mut *conn)
                .await?;
            let database = text(&row, 0)?;
            (database.clone(), database)
        }
    };
    Ok(lock_name(dialect, &database, &schema, table))
}

/// "pid 4242 (jobwarden web-2:1234, from 10.0.0.5)": what is known of a session.
fn describe(session: &str, name: &str, from: &str) -> String {
    let details: Vec<String> = [
        (!name.is_empty()).then(|| name.to_string()),
        (!from.is_empty()).then(|| format!("from {from}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if details.is_empty() {
        session.to_string()
    } else {
        format!("{session} ({})", details.join(", "))
    }
}

/// A text column of an `Any` row (NULL as empty).
fn text(row: &sqlx::any::AnyRow, index: usize) -> Result<String, sqlx::Error> {
    Ok(row.try_get::<Option<String>, _>(index)?.unwrap_or_default())
}

/// An integer column of an `Any` row, of either width.
fn int(row: &sqlx::any::AnyRow, index: usize) -> Result<Option<i64>, sqlx::Error> {
    row.try_get::<Option<i32>, _>(index)
        .map(|v| v.map(i64::from))
        .or_else(|_| row.try_get::<Option<i64>, _>(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_values() {
        // Replicas of different versions must agree on the lock: these numbers never change.
        assert_eq!(lock_key("jobwarden:jobs"), 384_957_192_433_527_594);
        assert_eq!(
            lock_key("jobwarden:public.research_jobs"),
            2_107_957_539_721_377_936
        );
        assert_ne!(lock_key("jobwarden:jobs"), lock_key("jobwarden:other"));
    }

    fn table(s: &str) -> TableName {
        crate::core::sql::parse_table(s).unwrap()
    }

    #[test]
    fn names_say_where_the_table_lives() {
        let n = |d, db: &str, schema: &str, t: &str| lock_name(d, db, schema, &table(t));
        assert_eq!(
            n(Dialect::MySql, "app_a", "app_a", "training_jobs"),
            "jobwarden:app_a.training_jobs"
        );
        assert_ne!(
            n(Dialect::MySql, "app_a", "app_a", "training_jobs"),
            n(Dialect::MySql, "app_b", "app_b", "training_jobs"),
            "two databases of one server, one table name: two locks"
        );
        // A qualified table names its own database (MySQL) or schema (PostgreSQL).
        assert_eq!(
            n(Dialect::MySql, "app_a", "app_a", "ops.jobs"),
            "jobwarden:ops.jobs"
        );
        assert_eq!(
            n(Dialect::Postgres, "app", "public", "jobs"),
            "jobwarden:app.public.jobs"
        );
        assert_eq!(
            n(Dialect::Postgres, "app", "public", "tenant_1.jobs"),
            "jobwarden:app.tenant_1.jobs"
        );
    }

    #[test]
    fn long_mysql_names_are_hashed_to_fit() {
        let long = "a".repeat(60);
        let a = lock_name(Dialect::MySql, &long, &long, &table("training_jobs"));
        let b = lock_name(Dialect::MySql, &long, &long, &table("training_jobz"));
        assert_eq!(a.chars().count(), MYSQL_LOCK_NAME_MAX, "{a}");
        assert!(a.starts_with("jobwarden:aaaa"), "{a}");
        assert_ne!(a, b, "names that differ only past the limit stay apart");
        // PostgreSQL hashes every name into its key: no limit.
        let pg = lock_name(Dialect::Postgres, &long, "public", &table("jobs"));
        assert!(pg.ends_with(".public.jobs"), "{pg}");
    }

    #[test]
    fn holders_are_described_with_what_is_known() {
        assert_eq!(
            describe("pid 42", "jobwarden web-2:7", "10.0.0.5"),
            "pid 42 (jobwarden web-2:7, from 10.0.0.5)"
        );
        assert_eq!(describe("connection 17", "", ""), "connection 17");
    }
}
