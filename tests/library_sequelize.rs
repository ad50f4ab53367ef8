//! Sequelize, the real library, against the ready config `config/examples/sequelize.toml` on
//! the real PostgreSQL and MariaDB, through the real binary.
//!
//! A small node script (Sequelize, `pg` and `mysql2` from the cache `scripts/test` fills from
//! the npm registry) defines the jobs model of the config's header and creates its table with
//! Sequelize's own `sync()`. Real worker processes using the model mark their job running and
//! `save()` it every 0.3 s (`updatedAt` is the heartbeat). One worker is SIGKILLed mid-job,
//! one stays alive. The dead job's times are moved back 47 minutes through the model (the
//! time a real outage would take), then jobwarden, with the ready config, must find it with
//! that age and never the live one across several scans, and `recover` must fail it so that
//! Sequelize reads the row back (`findByPk`: status, error, `finishedAt` a `Date` just now)
//! and a new job created through the model is processed. Sequelize's `timezone: '-05:00'`
//! writes naive wall clock at that offset into MariaDB's `DATETIME`: the config's `timezone`
//! set to "Etc/GMT+5" keeps the age right, not off by five hours.

mod common;

use common::python::Script;
use common::{Backend, TestDb};

/// The version `scripts/test` installs and the ready config names in its header.
const SEQUELIZE_VERSION: &str = "6.37.8";

/// `node jobs.js COMMAND [ID] [ARG]`, with `JW_DATABASE_URL` and `JW_SEQUELIZE_TIMEZONE` (the
/// `timezone` option) in the environment: the model's side of the test.
const JOBS_JS: &str = r#"
const { Sequelize, DataTypes } = require('sequelize')
const [command, id, arg] = process.argv.slice(2)
const sequelize = new Sequelize(process.env.JW_DATABASE_URL, {
  logging: false,
  timezone: process.env.JW_SEQUELIZE_TIMEZONE,
})
// The model the ready config's header describes.
const Job = sequelize.define('Job', {
  status: {
    type: DataTypes.ENUM('pending', 'running', 'done', 'failed', 'cancelled'),
    allowNull: false,
    defaultValue: 'pending',
  },
  startedAt: DataTypes.DATE,
  finishedAt: DataTypes.DATE,
  error: DataTypes.TEXT,
  progress: { type: DataTypes.JSON, allowNull: false, defaultValue: {} },
})
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function main () {
  if (command === 'sync') {
    await sequelize.sync()
  } else if (command === 'create') {
    console.log((await Job.create()).id)
  } else if (command === 'work') {
    // Takes the job and hangs in it, saving its progress (and so updatedAt) as it goes.
    const job = await Job.findByPk(id, { rejectOnEmpty: true })
    await job.update({ status: 'running', startedAt: new Date() })
    console.log('running ' + job.id)
    for (let step = 1; ; step++) {
      job.progress = { step }
      await job.save()
      await sleep(300)
    }
  } else if (command === 'shift') {
    // The outage: the job's times, as Sequelize wrote them, moved back.
    const job = await Job.findByPk(id, { rejectOnEmpty: true })
    const back = Number(arg) * 60000
    const moved = (d) => d && new Date(d.getTime() - back)
    await Job.update(
      { createdAt: moved(job.createdAt), updatedAt: moved(job.updatedAt), startedAt: moved(job.startedAt) },
      { where: { id: job.id }, silent: true, fields: ['createdAt', 'updatedAt', 'startedAt'] })
  } else if (command === 'process') {
    // A worker run: every pending job taken and finished.
    for (const job of await Job.findAll({ where: { status: 'pending' }, order: [['id', 'ASC']] })) {
      await job.update({ status: 'running', startedAt: new Date() })
      await job.update({ status: 'done', finishedAt: new Date(), progress: { step: 1 } })
      console.log('done ' + job.id)
    }
  } else if (command === 'get') {
    printJob(await Job.findByPk(id, { rejectOnEmpty: true }))
  }
  await sequelize.close()
}
main().catch((e) => { console.error(e.stack); process.exit(1) })
"#;

struct Case {
    backend: Backend,
    /// Sequelize's `timezone` option.
    sequelize_timezone: &'static str,
    /// The config's `[database] timezone` for it.
    timezone: &'static str,
}

/// The model's script against the test's database, its table made by `sync()`.
fn model(db: &TestDb, case: &Case) -> Script {
    common::worker::orm_script(
        db.dir(),
        JOBS_JS,
        vec![
            (
                "NODE_PATH".into(),
                common::worker::node_modules("sequelize", SEQUELIZE_VERSION)
                    .to_string_lossy()
                    .into_owned(),
            ),
            ("JW_DATABASE_URL".into(), db.url.clone()),
            (
                "JW_SEQUELIZE_TIMEZONE".into(),
                case.sequelize_timezone.into(),
            ),
        ],
    )
}

async fn killed_mid_job(case: Case) {
    let db = TestDb::new(case.backend).await;
    let sequelize = model(&db, &case);
    sequelize.run(&["sync"]);
    // The ready config, with the zone Sequelize's `timezone` option needs, and a state
    // directory of its own.
    let zone = format!("timezone = \"{}\"", case.timezone);
    let config = db.ready_config("examples/sequelize.toml", &[("timezone = \"UTC\"", &zone)]);
    common::worker::orm_killed_mid_job(&db, &sequelize, &config).await;
}

#[tokio::test]
async fn postgres_default_utc() {
    killed_mid_job(Case {
        backend: Backend::Postgres,
        sequelize_timezone: "+00:00",
        timezone: "UTC",
    })
    .await;
}

#[tokio::test]
async fn mariadb_default_utc() {
    killed_mid_job(Case {
        backend: Backend::MySql,
        sequelize_timezone: "+00:00",
        timezone: "UTC",
    })
    .await;
}

#[tokio::test]
async fn mariadb_minus_five_hours() {
    killed_mid_job(Case {
        backend: Backend::MySql,
        sequelize_timezone: "-05:00",
        timezone: "Etc/GMT+5",
    })
    .await;
}
