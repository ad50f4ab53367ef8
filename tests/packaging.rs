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
