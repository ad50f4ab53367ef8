//! The layers' dependencies point one way: core <- config <- adapters <- app <- daemon <- main.
//! Every `crate::<layer>` path in a file under `src/<layer>/` must name its own layer or one
//! below it; `core` names nothing outside itself. A file that breaks the rule fails this test
//! with the file, the line and the path it used.

use std::path::{Path, PathBuf};

/// The layers, lowest first.
const LAYERS: [&str; 5] = ["core", "config", "adapters", "app", "daemon"];

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == layer)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<name>` in `text`, with its line number.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            let tail = &rest[at + "crate::".len()..];
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `$crate::` and `jobwarden_crate::` are other things.
            if !matches!(before, Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                found.push((n + 1, name));
            }
            rest = tail;
        }
    }
    found
}

/// The violations in the files under `src`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let Some(layer) = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .and_then(rank)
        else {
            continue; // lib.rs and main.rs sit above every layer.
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        for (line, name) in crate_paths(&text) {
            match rank(&name) {
                Some(target) if target > layer => out.push(format!(
                    "src/{}:{line}: `crate::{name}` from the {} layer (it may use {})",
                    rel.display(),
                    LAYERS[layer],
                    LAYERS[..=layer].join(", ")
                )),
                Some(_) => {}
                None => out.push(format!(
                    "src/{}:{line}: `crate::{name}` is not a layer ({})",
                    rel.display(),
                    LAYERS.join(", ")
                )),
            }
        }
    }
    out
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "imports against the layers:\n{}",
        found.join("\n")
    );
}

/// What the core never touches: files, the network, tasks, the clock, logs, randomness.
const IMPURE: [&str; 10] = [
    "std::fs",
    "std::net",
    "std::process",
    "tokio",
    "sqlx",
    "reqwest",
    "SystemTime",
    "Instant",
    "tracing::",
    "fastrand",
];

#[test]
fn the_core_does_no_io_and_reads_no_clock() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core"),
        &mut files,
    );
    assert!(files.len() >= 5, "src/core holds the core: {files:?}");
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for word in IMPURE.iter().filter(|w| line.contains(*w)) {
                found.push(format!("{}:{}: {word}", file.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "I/O or a clock in the core:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_catches_an_upward_import() {
    let dir = tempfile::tempdir().expect("temp dir");
    let core = dir.path().join("core");
    std::fs::create_dir_all(&core).expect("mkdir");
    std::fs::write(
        core.join("detect.rs"),
        "use crate::core::job::JobRow;\nuse crate::adapters::store::Store;\n",
    )
    .expect("write");
    std::fs::create_dir_all(dir.path().join("app")).expect("mkdir");
    std::fs::write(
        dir.path().join("app/scan.rs"),
        "fn f() { crate::config::load(); crate::daemon::run(); }\n",
    )
    .expect("write");
    let mut found = violations(dir.path());
    found.sort();
    assert_eq!(
        found,
        [
            "src/app/scan.rs:1: `crate::daemon` from the app layer (it may use core, config, adapters, app)",
            "src/core/detect.rs:2: `crate::adapters` from the core layer (it may use core)",
        ]
    );
}

/// The daemon's rooms and the rooms each may name. The scan loop and the web side both use
/// the state the loop publishes (and the metrics it owns); neither names the other, and the
/// state names neither. `src/daemon/mod.rs` wires the rooms together and may name them all.
const ROOMS: [(&str, &[&str]); 4] = [
    ("metrics", &["metrics"]),
    ("state", &["state", "metrics"]),
    ("scan_loop", &["scan_loop", "state", "metrics"]),
    ("web", &["web", "state", "metrics"]),
];

/// The violations of the daemon's rooms in the files under `daemon` (`src/daemon`).
fn room_violations(daemon: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(daemon, &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(daemon).expect("under src/daemon");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        let room = first.strip_suffix(".rs").unwrap_or(first);
        if room == "mod" {
            continue; // The wiring.
        }
        let shown = format!("src/daemon/{}", rel.display());
        let Some((_, may)) = ROOMS.iter().find(|(r, _)| *r == room) else {
            out.push(format!(
                "{shown}: `{room}` is not one of the daemon's rooms"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            if line.contains("super::super") {
                out.push(format!(
                    "{shown}:{}: `super::super` leaves the {room} room; name the room it wants",
                    n + 1
                ));
            }
            let mut rest = line;
            while let Some(at) = rest.find("crate::daemon::") {
                let tail = &rest[at + "crate::daemon::".len()..];
                let name: String = tail
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.is_empty() || name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    out.push(format!(
                        "{shown}:{}: `crate::daemon::{name}` goes through the daemon's re-exports; name the room",
                        n + 1
                    ));
                } else if !may.contains(&name.as_str()) {
                    out.push(format!(
                        "{shown}:{}: `crate::daemon::{name}` from the {room} room (it may use {})",
                        n + 1,
                        may.join(", ")
                    ));
                }
                rest = tail;
            }
        }
    }
    out
}

#[test]
fn the_daemons_rooms_point_one_way() {
    let daemon = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/daemon");
    for (room, _) in ROOMS {
        assert!(
            daemon.join(room).is_dir() || daemon.join(format!("{room}.rs")).is_file(),
            "the daemon's {room} room is missing"
        );
    }
    let found = room_violations(&daemon);
    assert!(
        found.is_empty(),
        "imports across the daemon's rooms:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_room_check_catches_the_loop_and_the_web_naming_each_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    for room in ["web", "scan_loop", "state"] {
        std::fs::create_dir_all(dir.path().join(room)).expect("mkdir");
    }
    std::fs::write(
        dir.path().join("web/http.rs"),
        "use crate::daemon::state::Shared;\nuse crate::daemon::scan_loop::Loop;\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("scan_loop/mod.rs"),
        "use crate::daemon::web::console::Health;\nuse crate::daemon::{Ask, Shared};\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("state/mod.rs"),
        "use crate::daemon::metrics::Metrics;\nuse super::super::web::console;\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("mod.rs"), "use crate::daemon::web;\n").expect("write");
    let mut found = room_violations(dir.path());
    found.sort();
    assert_eq!(
        found,
        [
            "src/daemon/scan_loop/mod.rs:1: `crate::daemon::web` from the scan_loop room (it may use scan_loop, state, metrics)",
            "src/daemon/scan_loop/mod.rs:2: `crate::daemon::` goes through the daemon's re-exports; name the room",
            "src/daemon/state/mod.rs:2: `super::super` leaves the state room; name the room it wants",
            "src/daemon/web/http.rs:2: `crate::daemon::scan_loop` from the web room (it may use web, state, metrics)",
        ]
    );
}
