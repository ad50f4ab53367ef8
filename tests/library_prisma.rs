//! Prisma, the real library, against the ready config `config/examples/prisma.toml` on the
//! real PostgreSQL and MariaDB, through the real binary.
//!
//! Prisma 7's Rust-free client: `prisma generate` (from the cache `scripts/test` fills from the
//! npm registry) writes a Prisma Client for the model of the config's header with
//! `engineType = "client"` (its query compiler is wasm, shipped in npm) into the test's folder,
//! and the client talks to the database through a driver adapter (`@prisma/adapter-pg`,
//! `@prisma/adapter-mariadb`). Nothing comes from binaries.prisma.sh, which the test machines
//! cannot reach: `generate` only checks that a schema engine file exists, and never runs it,
//! so `PRISMA_SCHEMA_ENGINE_BINARY` names a stub that fails if run. The table is made by the
//! test's own DDL, the one `prisma migrate` emits for the model (never by `prisma migrate`,
//! which needs that engine).
//!
//! Real worker processes using the client mark their job running and update its progress every
//! 0.3 s (`@updatedAt` is the heartbeat). One worker is SIGKILLed mid-job, one stays alive.
//! The dead job's times are moved back 47 minutes through the client, then jobwarden, with the
//! ready config, must find it with that age and never the live one across several scans, and
//! `recover` must fail it so that Prisma Client reads the row back (`findUnique`: status,
//! error, `finishedAt` a `Date` just now: Prisma writes and reads its naive `DateTime` columns
//! as UTC) and a new job created through the client is processed.

mod common;

use std::path::Path;

use common::python::Script;
use common::{Backend, TestDb};

/// The version `scripts/test` installs and the ready config names in its header.
const PRISMA_VERSION: &str = "7.10.0";

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

/// The model of the config's header, for `prisma generate`; `PROVIDER` and `OUTPUT` are
/// filled in.
const SCHEMA: &str = r#"generator client {
  provider   = "prisma-client-js"
  engineType = "client"
  output     = "OUTPUT"
}

datasource db {
  provider = "PROVIDER"
}

model Job {
  id         Int       @id @default(autoincrement())
  status     String    @default("pending")
  createdAt  DateTime  @default(now())
  updatedAt  DateTime  @updatedAt
  startedAt  DateTime?
  finishedAt DateTime?
  error      String?   @db.Text
  progress   Json?
}
"#;

/// `node jobs.js COMMAND [ID] [ARG]`, with `JW_DATABASE_URL` in the environment: the client's
/// side of the test.
const JOBS_JS: &str = r#"
const { PrismaClient } = require('./client')
const [command, id, arg] = process.argv.slice(2)
const url = process.env.JW_DATABASE_URL
let adapter
if (url.startsWith('postgres')) {
  const { PrismaPg } = require('@prisma/adapter-pg')
  adapter = new PrismaPg({ connectionString: url })
} else {
  const { PrismaMariaDb } = require('@prisma/adapter-mariadb')
  adapter = new PrismaMariaDb(url.replace(/^mysql:/, 'mariadb:'))
}
const prisma = new PrismaClient({ adapter })
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function main () {
  if (command === 'create') {
    console.log((await prisma.job.create({ data: {} })).id)
  } else if (command === 'work') {
    // Takes the job and hangs in it, updating its progress (and so updatedAt) as it goes.
    const job = await prisma.job.update({
      where: { id: Number(id) },
      data: { status: 'running', startedAt: new Date() },
    })
    console.log('running ' + job.id)
    for (let step = 1; ; step++) {
      await prisma.job.update({ where: { id: job.id }, data: { progress: { step } } })
      await sleep(300)
    }
  } else if (command === 'shift') {
    // The outage: the job's times, as Prisma wrote them, moved back (an explicit updatedAt
    // wins over @updatedAt).
    const job = await prisma.job.findUniqueOrThrow({ where: { id: Number(id) } })
    const back = Number(arg) * 60000
    const moved = (d) => d && new Date(d.getTime() - back)
    await prisma.job.update({
      where: { id: job.id },
      data: { createdAt: moved(job.createdAt), updatedAt: moved(job.updatedAt), startedAt: moved(job.startedAt) },
    })
  } else if (command === 'process') {
    // A worker run: every pending job taken and finished.
    for (const job of await prisma.job.findMany({ where: { status: 'pending' }, orderBy: { id: 'asc' } })) {
      await prisma.job.update({ where: { id: job.id }, data: { status: 'running', startedAt: new Date() } })
      await prisma.job.update({ where: { id: job.id }, data: { status: 'done', finishedAt: new Date(), progress: { step: 1 } } })
      console.log('done ' + job.id)
    }
  } else if (command === 'get') {
    printJob(await prisma.job.findUniqueOrThrow({ where: { id: Number(id) } }))
  }
  await prisma.$disconnect()
}
main().catch((e) => { console.error(e.stack); process.exit(1) })
"#;

/// Runs `prisma generate` for `provider` into `dir/client`, with the cache's `node_modules`
/// linked into `dir` (generate resolves `@prisma/client` from the schema's folder).
fn generate(dir: &Path, provider: &str) {
    let node_modules = common::worker::node_modules("prisma", PRISMA_VERSION);
    common::worker::node_modules("@prisma/client", PRISMA_VERSION);
    std::os::unix::fs::symlink(&node_modules, dir.join("node_modules")).expect("link node_modules");
    let schema = dir.join("schema.prisma");
    let output = dir.join("client");
    let text = SCHEMA
        .replace("PROVIDER", provider)
        .replace("OUTPUT", output.to_str().expect("utf-8"));
    std::fs::write(&schema, text).expect("write schema.prisma");
    // `generate` wants a schema engine file to exist and never runs it; this one says so.
    let engine = dir.join("schema-engine-unused");
    std::fs::write(
        &engine,
        "#!/bin/sh\necho 'the schema engine is not part of this test' >&2\nexit 1\n",
    )
    .expect("write the engine stub");
    std::fs::set_permissions(&engine, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the engine stub");
    let out = std::process::Command::new(common::tool("node"))
        .arg(node_modules.join("prisma/build/index.js"))
        .args(["generate", "--schema"])
        .arg(&schema)
        .current_dir(dir)
        .env("PRISMA_SCHEMA_ENGINE_BINARY", &engine)
        .env("CHECKPOINT_DISABLE", "1")
        .env("PRISMA_HIDE_UPDATE_MESSAGE", "1")
        .output()
        .expect("run prisma generate");
    assert!(
        out.status.success() && output.join("index.js").exists(),
        "prisma generate: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The client's script against the test's database, its table made by the migrate DDL.
async fn client(db: &TestDb) -> Script {
    let (ddl, provider) = match db.backend {
        Backend::Postgres => (POSTGRES_DDL, "postgresql"),
        _ => (MYSQL_DDL, "mysql"),
    };
    db.exec(ddl).await;
    generate(db.dir(), provider);
    common::worker::orm_script(
        db.dir(),
        JOBS_JS,
        vec![("JW_DATABASE_URL".into(), db.url.clone())],
    )
}

async fn killed_mid_job(backend: Backend) {
    let db = TestDb::new(backend).await;
    let prisma = client(&db).await;
    let config = db.ready_config("examples/prisma.toml", &[]);
    common::worker::orm_killed_mid_job(&db, &prisma, &config).await;
}

#[tokio::test]
async fn postgres_prisma_client() {
    killed_mid_job(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_prisma_client() {
    killed_mid_job(Backend::MySql).await;
}
