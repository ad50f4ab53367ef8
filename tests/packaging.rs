//! The deployment files stay valid: the systemd unit (`systemd-analyze verify`, and an
//! exposure of at most 2.0 under `systemd-analyze security`), the Prometheus alerting rules
//! (`promtool check rules` and their `promtool test rules` cases) and the Grafana dashboard
//! (JSON, panel layout, jobwarden metric names, PromQL). `scripts/check-contrib` does the
//! checking; this test makes it part of every test run.

#[test]
fn systemd_unit_rules_and_dashboard_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/check-contrib"))
        .output()
        .expect("run scripts/check-contrib");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/check-contrib failed:\n{log}");
    assert!(!log.contains("FAIL"), "{log}");
    // Each check passed: a line of its own that starts `ok:` and names it.
    let passed: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("check-contrib: ok: "))
        .collect();
    for check in [
        "promtool check rules contrib/prometheus-rules.yml",
        "promtool test rules contrib/prometheus-rules.test.yml",
        "contrib/grafana-dashboard.json",
        "systemd-analyze verify systemd/jobwarden.service",
        "systemd-analyze security --offline=yes systemd/jobwarden.service: exposure",
    ] {
        assert!(
            passed.iter().any(|l| l.starts_with(check)),
            "{check} did not pass:\n{log}"
        );
    }
    assert!(
        log.trim_end().ends_with("check-contrib: all checks passed"),
        "{log}"
    );
}

/// The Debian package `scripts/package-deb` builds (here from the test build's binary): its
/// files and fields; then, as root, installed on this machine with `dpkg -i`, its unit
/// verified where it landed, its binary, man page and completions in place, and purged.
#[test]
fn the_debian_package_installs_a_verified_unit() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = tempfile::tempdir().expect("out dir");
    let built = std::process::Command::new("bash")
        .arg(root.join("scripts/package-deb"))
        .arg(env!("CARGO_BIN_EXE_jobwarden"))
        .arg(out_dir.path())
        .env("JOBWARDEN_DEB_COMPRESSION", "none")
        .output()
        .expect("run scripts/package-deb");
    assert!(
        built.status.success(),
        "scripts/package-deb failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8_lossy(&built.stdout).trim().to_string();
    assert!(deb.ends_with(".deb"), "{deb}");
    let run = |program: &str, args: &[&str]| -> (bool, String) {
        let out = std::process::Command::new(program)
            .args(args)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, contents) = run("dpkg-deb", &["--contents", &deb]);
    assert!(ok, "{contents}");
    for file in [
        "./usr/bin/jobwarden",
        "./lib/systemd/system/jobwarden.service",
        "./etc/jobwarden/jobwarden.toml",
        "./usr/share/man/man1/jobwarden.1.gz",
        "./usr/share/man/man1/jobwarden-run.1.gz",
        "./usr/share/bash-completion/completions/jobwarden",
        "./usr/share/zsh/vendor-completions/_jobwarden",
        "./usr/share/fish/vendor_completions.d/jobwarden.fish",
        "./usr/share/doc/jobwarden/jobwarden.env.example",
    ] {
        assert!(contents.contains(file), "{file} missing:\n{contents}");
    }
    let (ok, info) = run("dpkg-deb", &["--info", &deb]);
    assert!(ok, "{info}");
    assert!(
        info.contains("Package: jobwarden")
            && info.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );

    // Installing it needs root (scripts/test runs as root on the test machine).
    // SAFETY: geteuid only reads the process's effective user id.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the package is built and read, not installed");
        return;
    }
    let (ok, installed) = run("dpkg", &["-i", &deb]);
    assert!(ok, "dpkg -i: {installed}");
    let checks = (|| {
        let (ok, text) = run(
            "systemd-analyze",
            &[
                "verify",
                "--man=no",
                "/lib/systemd/system/jobwarden.service",
            ],
        );
        if !ok || !text.trim().is_empty() {
            return Err(format!("systemd-analyze verify: {text}"));
        }
        let (ok, version) = run("/usr/bin/jobwarden", &["--version"]);
        if !ok || !version.starts_with("jobwarden ") {
            return Err(format!("jobwarden --version: {version}"));
        }
        let (ok, unit) = run("systemctl", &["cat", "jobwarden.service"]);
        // Without a running systemd (a container), `systemctl cat` cannot answer: the file
        // on disk is what it would read.
        let unit = if ok {
            unit
        } else {
            std::fs::read_to_string("/lib/systemd/system/jobwarden.service").unwrap_or_default()
        };
        if !unit.contains("ExecStart=/usr/bin/jobwarden run --config /etc/jobwarden/jobwarden.toml")
        {
            return Err(format!("the unit's ExecStart: {unit}"));
        }
        for file in [
            "/usr/share/man/man1/jobwarden.1.gz",
            "/usr/share/bash-completion/completions/jobwarden",
            "/etc/jobwarden/jobwarden.toml",
        ] {
            if !std::path::Path::new(file).exists() {
                return Err(format!("{file} not installed"));
            }
        }
        Ok(())
    })();
    let (purged, text) = run("dpkg", &["--purge", "jobwarden"]);
    checks.unwrap_or_else(|e| panic!("{e}"));
    assert!(purged, "dpkg --purge: {text}");
    assert!(!std::path::Path::new("/usr/bin/jobwarden").exists());
}
