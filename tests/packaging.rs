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
    for check in [
        "promtool check rules",
        "promtool test rules",
        "grafana-dashboard.json",
        "systemd-analyze verify",
        "exposure",
    ] {
        assert!(
            log.contains(&format!("ok: {check}")) || log.contains(check),
            "{check} did not run:\n{log}"
        );
    }
}
