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

use std::path::PathBuf;

use common::python::{found, Script};
use common::{jobwarden_json, Backend, TestDb};

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
    const job = await Job.findByPk(id, { rejectOnEmpty: true })
    const finished = job.finishedAt
    console.log(JSON.stringify({
      status: job.status,
      error: job.error,
      progress: job.progress,
      finishedAt: finished,
      finishedIsDate: finished instanceof Date && !isNaN(finished),
      finishedAgo: finished instanceof Date ? (Date.now() - finished.getTime()) / 1000 : null,
    }))
  }
  await sequelize.close()
}
main().catch((e) => { console.error(e.stack); process.exit(1) })
"#;

/// The `node_modules` that holds Sequelize at [`SEQUELIZE_VERSION`]; a missing or other
/// version fails the test with the way to get it.
fn node_modules() -> PathBuf {
    let dir = std::env::var_os("JOBWARDEN_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache.join("jobwarden-test/npm/node_modules")
        });
    let version = std::fs::read_to_string(dir.join("sequelize/package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string));
    assert_eq!(
        version.as_deref(),
        Some(SEQUELIZE_VERSION),
        "sequelize {SEQUELIZE_VERSION} is not installed in {}; run the tests through \
         scripts/test, which installs it from the npm registry",
        dir.display()
    );
    dir
}

struct Case {
    backend: Backend,
    /// Sequelize's `timezone` option.
    sequelize_timezone: &'static str,
    /// The config's `[database] timezone` for it.
    timezone: &'static str,
}

/// The model's script against the test's database, its table made by `sync()`.
fn model(db: &TestDb, case: &Case) -> Script {
    let script = db.dir().join("jobs.js");
    std::fs::write(&script, JOBS_JS).expect("write jobs.js");
    Script {
        python: common::tool("node"),
        script,
        cwd: db.dir().to_path_buf(),
        env: vec![
            (
                "NODE_PATH".into(),
                node_modules().to_string_lossy().into_owned(),
            ),
            ("JW_DATABASE_URL".into(), db.url.clone()),
            (
                "JW_SEQUELIZE_TIMEZONE".into(),
                case.sequelize_timezone.into(),
            ),
        ],
    }
}

async fn killed_mid_job(case: Case) {
    let db = TestDb::new(case.backend).await;
    let sequelize = model(&db, &case);
    let run = |args: &[&str]| sequelize.run(args);
    run(&["sync"]);

    // Every time the rows hold was written after this: the ages found are bounded by it.
    let start = std::time::SystemTime::now();
    let dead = run(&["create"]);
    let live = run(&["create"]);
    let idle = run(&["create"]);

    let worker = |id: &str| {
        let w = sequelize.worker(&["work", id], db.dir());
        w.expect(&[format!("running {id}")]);
        w
    };
    let mut killed = worker(&dead);
    killed.kill();
    let mut alive = worker(&live);

    // The outage lasts: the dead job last beat 47 minutes ago, the idle one waits 2 hours.
    run(&["shift", &dead, "47"]);
    run(&["shift", &idle, "120"]);

    // The ready config, with the zone Sequelize's `timezone` option needs, and a state
    // directory of its own.
    let zone = format!("timezone = \"{}\"", case.timezone);
    let config = db.ready_config("examples/sequelize.toml", &[("timezone = \"UTC\"", &zone)]);

    common::worker::validates(&db.url, &config);

    // Several scans: the dead job found with its age, the idle one alerted on, and the live
    // one, saved every 0.3 s, never.
    common::worker::scans_find_dead_and_idle(&db.url, &config, &dead, &idle, start, &mut alive)
        .await;

    // recover fails the dead job; the idle one stays an alert (exit 1).
    let (code, report) = jobwarden_json(&db.url, &config, &["recover"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(common::applied(&report), vec![dead.as_str()], "{report}");

    // Sequelize reads the failure back: its ENUM word, jobwarden's reason in `error`, and
    // `finishedAt` a Date just now on Sequelize's own clock (five hours off if the config's
    // zone did not match Sequelize's `timezone` on MariaDB).
    let get = |id: &str| -> serde_json::Value {
        let out = run(&["get", id]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("get {id}: {e}: {out}"))
    };
    let job = get(&dead);
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("jobwarden: stalled: "), "{job}");
    assert_eq!(job["finishedIsDate"], true, "{job}");
    let ago = job["finishedAgo"].as_f64().unwrap_or(f64::NAN);
    assert!(
        (-2.0..60.0).contains(&ago),
        "finishedAt is {ago}s ago: {job}"
    );
    // The live job and the idle one are untouched.
    let job = get(&live);
    assert_eq!(
        (&job["status"], &job["error"]),
        (&"running".into(), &serde_json::Value::Null),
        "{job}"
    );
    assert_eq!(get(&idle)["status"], "pending");
    assert!(alive.alive(), "the live worker is still working");

    // A new job created through the model is processed, with the idle one.
    let new = run(&["create"]);
    let done = run(&["process"]);
    assert_eq!(done, format!("done {idle}\ndone {new}"));
    let job = get(&new);
    assert_eq!(
        (&job["status"], &job["error"]),
        (&"done".into(), &serde_json::Value::Null),
        "{job}"
    );
    let (code, report) = jobwarden_json(&db.url, &config, &["check"]);
    assert_eq!((code, found(&report)), (0, vec![]), "{report}");
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
