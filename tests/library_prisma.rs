//! Prisma's table shape against the ready config `config/examples/prisma.toml` on the real
//! PostgreSQL and MariaDB, through the real binary.
//!
//! NOT Prisma's own client: its CLI needs a schema engine downloaded from binaries.prisma.sh,
//! which the test machines cannot reach, so neither `prisma migrate` nor `prisma generate`
//! runs here. The table is made with the DDL `prisma migrate` emits for the model of the
//! config's header (Prisma's documented mapping: `Int @id @default(autoincrement())` is
//! `SERIAL` / `INTEGER AUTO_INCREMENT`, `String` is `TEXT` / `VARCHAR(191)`, `DateTime` is
//! `TIMESTAMP(3)` / `DATETIME(3)`, `@default(now())` is `DEFAULT CURRENT_TIMESTAMP`, `Json`
//! is `JSONB` / `JSON`, `@db.Text` is `TEXT`; the migration.sql layout of
//! prisma/prisma-engines' SQL schema renderers), and rows are written as Prisma Client writes
//! them: UTC wall clock with milliseconds (its `now()` and `@updatedAt` values are
//! `new Date().toISOString()`), whatever the server's zone.
//!
//! A dead job (updated 47 minutes ago), a live one (updated now) and an idle one (created 2
//! hours ago) must be found with their ages over several scans, and `recover` must fail the
//! dead one with `finishedAt` in UTC wall clock, as Prisma Client reads it back.

mod common;

use std::time::Duration;

use common::{jobwarden_json, Backend, TestDb};

/// `prisma migrate diff --from-empty --to-schema` for the header's model, PostgreSQL.
const POSTGRES_DDL: &str = r#"CREATE TABLE "Job" (
    "id" SERIAL NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'pending',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    "startedAt" TIMESTAMP(3),
    "finishedAt" TIMESTAMP(3),
    "error" TEXT,
    "progress" JSONB,

    CONSTRAINT "Job_pkey" PRIMARY KEY ("id")
)"#;

/// The same for MySQL/MariaDB.
const MYSQL_DDL: &str = r#"CREATE TABLE `Job` (
    `id` INTEGER NOT NULL AUTO_INCREMENT,
    `status` VARCHAR(191) NOT NULL DEFAULT 'pending',
    `createdAt` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    `updatedAt` DATETIME(3) NOT NULL,
    `startedAt` DATETIME(3) NULL,
    `finishedAt` DATETIME(3) NULL,
    `error` TEXT NULL,
    `progress` JSON NULL,

    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"#;

/// Prisma Client's clock: UTC wall clock with milliseconds, `minutes` ago.
fn utc_ago(db: &TestDb, minutes: i64) -> String {
    match db.backend {
        Backend::Postgres => {
            format!("(now() AT TIME ZONE 'UTC')::timestamp(3) - interval '{minutes} minutes'")
        }
        _ => format!("UTC_TIMESTAMP(3) - INTERVAL {minutes} MINUTE"),
    }
}

async fn prisma_table(backend: Backend) {
    let db = TestDb::new(backend).await;
    match backend {
        Backend::Postgres => {
            db.exec(POSTGRES_DDL).await;
        }
        _ => {
            db.exec(MYSQL_DDL).await;
        }
    }
    let q = |c: &str| db.quote(c);
    // Prisma Client's create and update: every time from its own UTC clock, updatedAt too.
    for (id, status, created, updated, started) in [
        (1, "running", 50, 47, Some(49)),
        (2, "running", 50, 0, Some(49)),
        (3, "pending", 120, 120, None),
    ] {
        let started = started.map_or("NULL".to_string(), |m| utc_ago(&db, m));
        db.exec(&format!(
            "INSERT INTO {} ({}, {}, {}, {}, {}, {}) VALUES ({id}, '{status}', {}, {}, {started}, '{{\"step\": 3}}')",
            q("Job"),
            q("id"),
            q("status"),
            q("createdAt"),
            q("updatedAt"),
            q("startedAt"),
            q("progress"),
            utc_ago(&db, created),
            utc_ago(&db, updated),
        ))
        .await;
    }

    let config = db.ready_config("examples/prisma.toml", &[]);
    common::worker::validates(&db.url, &config);

    let start = std::time::SystemTime::now();
    for scan in 0..3 {
        if scan > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            // The live job goes on: Prisma Client's update bumps @updatedAt.
            db.exec(&format!(
                "UPDATE {} SET {} = {} WHERE {} = 2",
                q("Job"),
                q("updatedAt"),
                utc_ago(&db, 0),
                q("id")
            ))
            .await;
        }
        common::worker::check_finds(
            &db.url,
            &config,
            scan,
            &[("1", "stalled", 47 * 60), ("3", "pending-too-long", 7200)],
            start,
        );
    }

    let (code, report) = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(common::applied(&report), vec!["1"], "{report}");

    // What Prisma Client reads back: `finishedAt` as UTC wall clock, so just now.
    let ago = match backend {
        Backend::Postgres => format!(
            "EXTRACT(EPOCH FROM (now() AT TIME ZONE 'UTC') - {})",
            q("finishedAt")
        ),
        _ => format!(
            "TIMESTAMPDIFF(SECOND, {}, UTC_TIMESTAMP(3))",
            q("finishedAt")
        ),
    };
    let rows = db
        .rows(&format!(
            "SELECT {}, {}, {}, {} FROM {} ORDER BY {}",
            db.text(&q("id")),
            db.text(&q("status")),
            db.text(&q("error")),
            db.text(&ago),
            q("Job"),
            q("id")
        ))
        .await;
    let row = |i: usize| -> Vec<String> {
        rows[i]
            .iter()
            .map(|c| c.clone().unwrap_or_default())
            .collect()
    };
    let dead = row(0);
    assert_eq!(dead[1], "failed", "{dead:?}");
    assert!(dead[2].starts_with("jobwarden: stalled: "), "{dead:?}");
    let finished: f64 = dead[3].parse().unwrap_or(f64::NAN);
    assert!(
        (-2.0..60.0).contains(&finished),
        "finishedAt is {finished}s from UTC now: {dead:?}"
    );
    assert_eq!(row(1)[1..3], ["running".to_string(), String::new()]);
    assert_eq!(row(2)[1..3], ["pending".to_string(), String::new()]);
}

#[tokio::test]
async fn postgres_prisma_table() {
    prisma_table(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_prisma_table() {
    prisma_table(Backend::MySql).await;
}
