//! Leadership among replicas: several `jobwarden run` against one table all scan and serve
//! metrics, and exactly one (the leader) writes and alerts.
//!
//! The lock is the database's own: a PostgreSQL session advisory lock
//! (`pg_try_advisory_lock`) or a MySQL/MariaDB named lock (`GET_LOCK`), held on a dedicated
//! connection outside the pool. It is checked every scan: a leader whose connection broke has
//! lost it, and when a leader dies its lock goes with its connection, so a standby takes over
//! at its next scan. SQLite has no such lock: the daemon says at start that it must run as a
//! single replica, and always leads.

use sqlx::{AnyConnection, Connection, Row};

use crate::config::Config;
use crate::core::sql::Dialect;

/// A replica's claim to lead.
pub struct Leadership {
    dialect: Dialect,
    url: String,
    key: i64,
    name: String,
    conn: Option<AnyConnection>,
    held: bool,
}

/// A stable 63-bit key for a table, the same in every replica (FNV-1a).
fn lock_key(name: &str) -> i64 {
    (crate::core::memory::fingerprint(name) >> 1) as i64
}

impl Leadership {
    pub fn new(config: &Config) -> Leadership {
        let name = format!("jobwarden:{}", config.jobs.table);
        if config.database.dialect == Dialect::Sqlite {
            tracing::info!(
                "SQLite has no shared lock: run a single jobwarden replica against this database"
            );
        }
        Leadership {
            dialect: config.database.dialect,
            url: config.database.url.clone(),
            key: lock_key(&name),
            name,
            conn: None,
            held: false,
        }
    }

    /// Whether this replica leads now: keeps the lock if it holds it and its connection is
    /// alive, else tries to take it. Never waits for another replica.
    pub async fn check(&mut self) -> bool {
        if self.dialect == Dialect::Sqlite {
            return true;
        }
        let was = self.held;
        self.held = match self.try_hold().await {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!("leader lock: {e}");
                self.conn = None;
                false
            }
        };
        if self.held != was {
            if self.held {
                tracing::info!(lock = %self.name, "this replica is now the leader");
            } else {
                tracing::warn!(lock = %self.name, "this replica is no longer the leader");
            }
        }
        self.held
    }

    async fn try_hold(&mut self) -> Result<bool, sqlx::Error> {
        if self.conn.is_none() {
            sqlx::any::install_default_drivers();
            self.conn = Some(AnyConnection::connect(&self.url).await?);
            self.held = false;
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        if self.held {
            // Still ours while the session lives.
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
            return Ok(true);
        }
        let row = match self.dialect {
            Dialect::Postgres => {
                sqlx::query(&format!(
                    "SELECT CASE WHEN pg_try_advisory_lock({}) THEN 1 ELSE 0 END",
                    self.key
                ))
                .fetch_one(&mut *conn)
                .await?
            }
            _ => {
                // MySQL lock names are at most 64 characters.
                let name: String = self.name.chars().take(64).collect();
                sqlx::query("SELECT CAST(COALESCE(GET_LOCK(?, 0), 0) AS SIGNED)")
                    .bind(name)
                    .fetch_one(&mut *conn)
                    .await?
            }
        };
        let got: i64 = row
            .try_get::<i32, _>(0)
            .map(i64::from)
            .or_else(|_| row.try_get::<i64, _>(0))?;
        Ok(got == 1)
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
}
