//! The state directory through the real binary on SQLite: the operator's holds fail closed
//! when their file is damaged; a state file that cannot be saved is counted and said.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{wait_for, Backend, Daemon, TestConfig, TestDb};

/// The bearer token of these tests' daemons.
const TOKEN: &str = "state-test-token-0123";

/// How the holds file is damaged.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Damage {
    /// A pause and a snooze, cut off mid-way.
    CutShort,
    Garbage,
    Directory,
    /// Whole, but the daemon may not read it (as root, the daemon runs as `nobody`).
    Unreadable,
}

const WHOLE: &str = r#"{"paused_until":1.0,"snoozed":{"1":{"until":2.0,"reason":"r","by":"b"}}}"#;

#[tokio::test]
async fn holds_cut_short_hold_every_write_until_an_operator_pauses() {
    damaged_holds_hold_every_write(Damage::CutShort).await;
}

#[tokio::test]
async fn garbage_holds_hold_every_write_until_an_operator_pauses() {
    damaged_holds_hold_every_write(Damage::Garbage).await;
}

#[tokio::test]
async fn a_directory_for_holds_holds_every_write_until_an_operator_pauses() {
    damaged_holds_hold_every_write(Damage::Directory).await;
}

#[tokio::test]
async fn unreadable_holds_hold_every_write_until_an_operator_pauses() {
    damaged_holds_hold_every_write(Damage::Unreadable).await;
}

/// A stalled job (failed at the first scan that may) and a damaged `holds.json`: nothing is
/// written, across a restart, and `/`, `/readyz`, the metric, the log and a person's fail
/// say why; the file is kept aside as it was; `jobwarden pause --for 0s` ends it, and the
/// job is failed.
async fn damaged_holds_hold_every_write(damage: Damage) {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    db.running(1, 120.0, 90.0).await;
    let state = db.dir().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let holds = state.join("holds.json");
    match damage {
        Damage::CutShort => std::fs::write(&holds, &WHOLE[..WHOLE.len() / 2]).unwrap(),
        Damage::Garbage => std::fs::write(&holds, [0xff, 0x00, 0x7b, 0x13, 0x37]).unwrap(),
        Damage::Directory => std::fs::create_dir_all(holds.join("inner")).unwrap(),
        Damage::Unreadable => {
            std::fs::write(&holds, WHOLE).unwrap();
            std::fs::set_permissions(&holds, std::os::unix::fs::PermissionsExt::from_mode(0o000))
                .unwrap();
        }
    }
    let config = TestConfig::new(&db.url)
        .top("interval = \"200ms\"")
        .jobs("status_since = \"created_at\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section("[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1\nmin_active = 100")
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""
        ))
        .state(&state)
        .write(db.dir().join("jw.toml"));
    // Root reads any file: the unreadable case runs the daemon as `nobody`, owner of the rest.
    let as_nobody = damage == Damage::Unreadable && common::is_root();
    if as_nobody {
        chown_all(db.dir(), &holds);
    }
    let start = || {
        Daemon::start_with(&config, &[], |cmd| {
            if as_nobody {
                std::os::unix::process::CommandExt::uid(cmd, 65534);
                std::os::unix::process::CommandExt::gid(cmd, 65534);
            }
        })
    };
    let status = || async {
        db.rows("SELECT status FROM jobs WHERE id = 1").await[0][0]
            .clone()
            .unwrap_or_default()
    };

    let daemon = start();
    held_back_twice(&daemon).await;
    assert_eq!(status().await, "running", "nothing written");
    let metrics = common::get(&daemon.url("/metrics"))
        .await
        .expect("metrics")
        .1;
    assert_eq!(common::metric(&metrics, "jobwarden_holds_lost"), Some(1.0));
    let (code, ready) = common::get(&daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(code, 503, "{ready}");
    assert!(ready.contains("holds were lost"), "{ready}");
    assert!(ready.contains("holds.json.corrupt"), "{ready}");
    let (_, page) = common::get(&daemon.url("/")).await.expect("page");
    assert!(page.contains("holds were lost"), "{page}");
    let (_, findings) = common::get(&daemon.url("/api/v1/findings"))
        .await
        .expect("findings");
    let findings: serde_json::Value = serde_json::from_str(&findings).unwrap();
    assert_eq!(findings["findings"][0]["outcome"], "limited", "{findings}");
    let log = daemon.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("holds are lost"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{log}");
    // A person's fail is refused too, saying why.
    let r = reqwest::Client::new()
        .post(daemon.url("/api/v1/jobs/1/fail"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 409);
    assert!(r.text().await.unwrap().contains("holds were lost"));

    // A restart holds too: the lost holds were saved in the file's place.
    assert_eq!(daemon.stop().await, 0);
    let daemon = start();
    held_back_twice(&daemon).await;
    assert_eq!(status().await, "running", "still held after the restart");
    let (code, _) = common::get(&daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(code, 503);

    // An operator's pause of nothing ends it; the damaged file is still kept aside as it was.
    let url = daemon.url("");
    let out = common::jobwarden(
        &db.url,
        &[
            "pause",
            "--for",
            "0s",
            "--url",
            &url,
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    wait_for("the job failed", Duration::from_secs(10), || async {
        (status().await == "failed").then_some(())
    })
    .await;
    let (code, ready) = common::get(&daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(code, 200, "{ready}");
    let kept = state.join("holds.json.corrupt");
    match damage {
        Damage::CutShort => assert_eq!(
            std::fs::read_to_string(&kept).unwrap(),
            WHOLE[..WHOLE.len() / 2]
        ),
        Damage::Garbage => assert_eq!(
            std::fs::read(&kept).unwrap(),
            [0xff, 0x00, 0x7b, 0x13, 0x37]
        ),
        Damage::Directory => assert!(kept.join("inner").is_dir()),
        Damage::Unreadable => assert_eq!(std::fs::read_to_string(&kept).unwrap(), WHOLE),
    }
    assert_eq!(daemon.stop().await, 0);
}

/// Waits until the daemon held the job's write back on two more scans.
async fn held_back_twice(daemon: &Daemon) {
    let limited = || async {
        common::get(&daemon.url("/metrics")).await.map(|r| {
            common::metric(
                &r.1,
                "jobwarden_actions_total{action=\"fail\",outcome=\"limited\"}",
            )
            .unwrap_or(0.0)
        })
    };
    let start = wait_for("metrics", Duration::from_secs(10), limited).await;
    wait_for("held back twice", Duration::from_secs(10), || async {
        limited().await.filter(|n| *n >= start + 2.0)
    })
    .await;
}

/// Hands every file under `dir` to `nobody` (65534), but `root_owned`, which stays root's.
fn chown_all(dir: &Path, root_owned: &Path) {
    if dir != root_owned {
        std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    }
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            chown_all(&entry.unwrap().path(), root_owned);
        }
    }
}

#[tokio::test]
async fn state_files_that_cannot_be_saved_are_counted_and_said() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    db.running(1, 120.0, 0.1).await;
    let hook = common::Receiver::start(0, &[]).await;
    let state = db.dir().join("state");
    // A directory where the memory goes: read as none, and never saved.
    std::fs::create_dir_all(state.join("memory.json").join("inner")).unwrap();
    let config = TestConfig::new(&db.url)
        .top("interval = \"200ms\"")
        .heartbeat_rule("hb", "30m", "action = \"alert\"")
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""
        ))
        .section(&format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"",
            hook.url("/hook")
        ))
        .state(&state)
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    let book = state.join("alerts.json");
    wait_for("the alert book saved", Duration::from_secs(10), || async {
        book.is_file().then_some(())
    })
    .await;
    // Then a directory takes the book's place, and the job stalls: its alert fires, and the
    // book that records it cannot be saved.
    // (The daemon may save it again in between: until the directory is there.)
    while {
        let _ = std::fs::remove_file(&book);
        std::fs::create_dir(&book).is_err()
    } {}
    std::fs::create_dir(book.join("inner")).unwrap();
    db.exec(&format!("UPDATE jobs SET updated_at = {}", db.ago(90.0)))
        .await;
    let errors = |m: &str, file: &str| {
        common::metric(
            m,
            &format!("jobwarden_state_errors_total{{file=\"{file}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let metrics = wait_for("a failed save counted", Duration::from_secs(10), || async {
        common::get(&daemon.url("/metrics"))
            .await
            .map(|r| r.1)
            .filter(|m| errors(m, "alerts") >= 1.0)
    })
    .await;
    assert_eq!(hook.accepted("firing").len(), 1, "alerts go on");
    assert!(errors(&metrics, "memory") >= 1.0, "{metrics}");
    assert_eq!(errors(&metrics, "holds"), 0.0, "{metrics}");
    assert_eq!(errors(&metrics, "audit"), 0.0, "{metrics}");
    let (code, ready) = common::get(&daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(code, 200, "scans go on: {ready}");
    assert!(ready.contains("alerts.json cannot be saved"), "{ready}");
    assert!(ready.contains("memory.json cannot be saved"), "{ready}");
    let (_, page) = common::get(&daemon.url("/")).await.expect("page");
    assert!(page.contains("alerts.json cannot be saved"), "{page}");

    // Once the book can be saved again, it is, and the error is gone.
    std::fs::remove_dir_all(&book).unwrap();
    wait_for("the book saved again", Duration::from_secs(10), || async {
        let (_, ready) = common::get(&daemon.url("/readyz")).await?;
        (!ready.contains("alerts.json") && book.is_file()).then_some(())
    })
    .await;
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&book).unwrap()).unwrap();
    assert_eq!(
        saved["entries"].as_object().map(|e| e.len()),
        Some(1),
        "{saved}"
    );
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn links_in_the_state_directory_are_never_followed() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    db.running(1, 120.0, 90.0).await;
    let hook = common::Receiver::start(0, &[]).await;
    let state = db.dir().join("state");
    let theirs = db.dir().join("theirs");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    // Each state file, and each name a save once wrote first, is a link to a file that is not
    // jobwarden's.
    let names = [
        "alerts.json",
        "memory.json",
        "holds.json",
        "audit.jsonl",
        "alerts.json.tmp",
        "memory.json.tmp",
        "holds.json.tmp",
    ];
    for name in names {
        std::fs::write(theirs.join(name), format!("not jobwarden's: {name}")).unwrap();
        std::os::unix::fs::symlink(theirs.join(name), state.join(name)).unwrap();
    }
    let untouched = || {
        for name in names {
            assert_eq!(
                std::fs::read_to_string(theirs.join(name)).unwrap(),
                format!("not jobwarden's: {name}"),
                "{name} was written through its link"
            );
        }
    };
    let config = TestConfig::new(&db.url)
        .top("interval = \"200ms\"")
        .jobs("status_since = \"created_at\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section("[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1\nmin_active = 100")
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""
        ))
        .section(&format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"",
            hook.url("/hook")
        ))
        .state(&state)
        .write(db.dir().join("jw.toml"));
    let status = || async {
        db.rows("SELECT status FROM jobs WHERE id = 1").await[0][0]
            .clone()
            .unwrap_or_default()
    };
    let daemon = Daemon::start(&config, &[]);
    wait_for("the firing alert", Duration::from_secs(10), || async {
        (hook.accepted("firing").len() == 1).then_some(())
    })
    .await;
    held_back_twice(&daemon).await;
    untouched();
    // The book and the memory are saved in the links' place; the holds are lost (a link is
    // not read) and the audit trail cannot be written through one: nothing is written.
    for name in ["alerts.json", "memory.json"] {
        assert!(
            std::fs::symlink_metadata(state.join(name))
                .unwrap()
                .is_file(),
            "{name}"
        );
    }
    assert_eq!(status().await, "running");
    let (code, ready) = common::get(&daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(code, 503, "{ready}");
    assert!(ready.contains("symbolic link"), "{ready}");

    // With the holds ended and the audit trail's link gone, the write is made and recorded.
    let url = daemon.url("");
    let out = common::jobwarden(
        &db.url,
        &[
            "pause",
            "--for",
            "0s",
            "--url",
            &url,
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    held_back_twice(&daemon).await;
    assert_eq!(status().await, "running", "the audit trail is still a link");
    std::fs::remove_file(state.join("audit.jsonl")).unwrap();
    wait_for("the job failed", Duration::from_secs(10), || async {
        (status().await == "failed").then_some(())
    })
    .await;
    assert!(std::fs::read_to_string(state.join("audit.jsonl"))
        .unwrap()
        .contains("\"applied\""));
    untouched();
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn a_rotated_audit_trail_keeps_every_write_findable() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    let jobs = 30;
    for id in 1..=jobs {
        db.running(id, 120.0, 97.0).await;
    }
    let state = db.dir().join("state");
    let config = TestConfig::new(&db.url)
        .top("interval = \"200ms\"")
        .jobs("status_since = \"created_at\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section(
            "[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1\nmax_stuck_fraction = 1.0\n\
             max_actions_per_scan = 100",
        )
        .section("[http]\nlisten = \"127.0.0.1:0\"")
        .section("[audit]\nmax_size = \"8KiB\"")
        .state(&state)
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    wait_for("every job failed", Duration::from_secs(20), || async {
        let failed = db
            .rows("SELECT CAST(count(*) AS TEXT) FROM jobs WHERE status = 'failed'")
            .await;
        (failed[0][0].as_deref() == Some(&jobs.to_string())).then_some(())
    })
    .await;
    // The trail rotated, more than once, and kept every file within its size.
    for name in ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"] {
        let size = std::fs::metadata(state.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .len();
        assert!(size > 0 && size <= 8192, "{name}: {size}");
    }
    // Every write is on its job's page and on /audit, filtered by job and not.
    let (_, all) = common::get(&daemon.url("/audit?outcome=applied"))
        .await
        .expect("audit page");
    for id in 1..=jobs {
        let (code, page) = common::get(&daemon.url(&format!("/jobs/{id}")))
            .await
            .expect("job page");
        assert_eq!(code, 200);
        assert!(
            page.contains("outcome applied") && page.contains("fail running → failed"),
            "job {id}'s write is not on its page:\n{page}"
        );
        let (_, audit) = common::get(&daemon.url(&format!("/audit?job={id}")))
            .await
            .expect("audit page");
        assert_eq!(
            audit.matches("<tr>").count() - 1,
            1,
            "job {id}: one write, its intent joined with its outcome:\n{audit}"
        );
        assert!(
            all.contains(&format!("/jobs/{id}\"")),
            "job {id} not on /audit"
        );
    }
    // And `jobwarden audit` reads them all, the rotated files too.
    let out = common::jobwarden(
        &db.url,
        &[
            "audit",
            "--last",
            "100",
            "--json",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"applied\""))
        .count();
    assert_eq!(lines, jobs as usize);
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn damaged_holds_on_a_full_disk_are_put_back_and_still_hold() {
    assert!(
        common::is_root(),
        "this test mounts a small tmpfs: run it as root (scripts/test does, in CI)"
    );
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    db.running(1, 120.0, 90.0).await;
    let state = db.dir().join("tmpfs");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&state)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.clone());
    std::fs::write(state.join("holds.json"), "garbage").unwrap();
    let filler = state.join("filler");
    let _ = std::fs::write(&filler, vec![b'x'; 128 * 1024]);
    let config = TestConfig::new(&db.url)
        .top("interval = \"200ms\"")
        .jobs("status_since = \"created_at\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"")
        .section("[safety]\nstartup_grace = \"0s\"\nconfirm_scans = 1\nmin_active = 100")
        .section(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""
        ))
        .state(&state)
        .write(db.dir().join("jw.toml"));
    let status = || async {
        db.rows("SELECT status FROM jobs WHERE id = 1").await[0][0]
            .clone()
            .unwrap_or_default()
    };
    let pause = |daemon: &Daemon, span: &str| {
        reqwest::Client::new()
            .post(daemon.url("/api/v1/pause"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(format!(r#"{{"for": "{span}"}}"#))
            .send()
    };
    // The lost holds cannot be saved: the damaged file is put back, and every write held, at
    // each start.
    for _start in 0..2 {
        let daemon = Daemon::start(&config, &[]);
        held_back_twice(&daemon).await;
        assert_eq!(status().await, "running");
        let (code, ready) = common::get(&daemon.url("/readyz")).await.expect("readyz");
        assert_eq!(code, 503, "{ready}");
        assert!(ready.contains("put back"), "{ready}");
        assert_eq!(
            std::fs::read_to_string(state.join("holds.json")).unwrap(),
            "garbage"
        );
        assert!(!state.join("holds.json.corrupt").exists());
        assert_eq!(daemon.stop().await, 0);
    }
    // A pause that cannot be saved is not made (and counted); once there is room, it ends
    // the hold, and the damaged file is kept aside, not replaced.
    let daemon = Daemon::start(&config, &[]);
    held_back_twice(&daemon).await;
    let r = pause(&daemon, "0s").await.expect("post");
    assert_eq!(r.status().as_u16(), 500);
    let (_, metrics) = common::get(&daemon.url("/metrics")).await.expect("metrics");
    assert_eq!(
        common::metric(&metrics, "jobwarden_state_errors_total{file=\"holds\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(status().await, "running");
    assert_eq!(
        std::fs::read_to_string(state.join("holds.json")).unwrap(),
        "garbage",
        "still there for the next start"
    );
    std::fs::remove_file(&filler).unwrap();
    let r = pause(&daemon, "0s").await.expect("post");
    assert_eq!(r.status().as_u16(), 200);
    wait_for("the job failed", Duration::from_secs(10), || async {
        (status().await == "failed").then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(state.join("holds.json.corrupt")).unwrap(),
        "garbage"
    );
    assert_eq!(daemon.stop().await, 0);
}
