//! What each receiver is sent, built from book entries. Pure, so every payload shape is
//! tested without a receiver.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::book::{Entry, State};

/// Where receivers' links point, and the environment they are told about.
#[derive(Debug, Clone)]
pub struct Context {
    pub environment: Option<String>,
    /// The daemon's findings API, for Alertmanager's `generatorURL`.
    pub generator_url: String,
}

/// The spec's webhook body for one alert, plus `reason` on a resolution and `reminder` on a
/// repeat.
pub fn webhook(entry: &Entry, state: State, reminder: bool, ctx: &Context) -> Value {
    let mut body = json!({
        "version": 1,
        "state": state.as_str(),
        "environment": ctx.environment,
        "finding": entry.finding,
    });
    if let (State::Resolved, Some(r)) = (state, &entry.resolved) {
        body["reason"] = json!(r.reason);
    }
    if reminder {
        body["reminder"] = json!(true);
    }
    body
}

/// One webhook body for many new alerts at once: `findings` instead of `finding`.
pub fn webhook_digest(entries: &[&Entry], state: State, ctx: &Context) -> Value {
    let mut body = json!({
        "version": 1,
        "state": state.as_str(),
        "environment": ctx.environment,
        "digest": true,
        "findings": entries.iter().map(|e| &e.finding).collect::<Vec<_>>(),
    });
    if state == State::Resolved {
        body["reasons"] = entries
            .iter()
            .map(|e| e.resolved.as_ref().map(|r| r.reason.clone()))
            .collect();
    }
    body
}

/// A Slack incoming-webhook message for one alert.
pub fn slack(entry: &Entry, state: State, reminder: bool, ctx: &Context) -> Value {
    let env = ctx
        .environment
        .as_deref()
        .map(|e| format!("[{e}] "))
        .unwrap_or_default();
    let text = match (state, &entry.resolved) {
        (State::Resolved, Some(r)) => format!(
            ":white_check_mark: {env}resolved: {} job `{}` (rule `{}`): {}.",
            entry.kind.as_str(),
            entry.job_id,
            entry.rule,
            r.reason
        ),
        _ => format!(
            "{}{env}{} job `{}`{}",
            if reminder {
                ":repeat: still firing: "
            } else {
                ":rotating_light: "
            },
            entry.kind.as_str(),
            entry.job_id,
            slack_details(entry)
        ),
    };
    json!({ "text": text })
}

/// A Slack message listing many new alerts.
pub fn slack_digest(entries: &[&Entry], state: State, ctx: &Context) -> Value {
    let env = ctx
        .environment
        .as_deref()
        .map(|e| format!("[{e}] "))
        .unwrap_or_default();
    let mut text = match state {
        State::Resolved => format!(
            ":white_check_mark: {env}{} job findings resolved:",
            entries.len()
        ),
        State::Firing => format!(":rotating_light: {env}{} new job findings:", entries.len()),
    };
    for e in entries {
        let tail = match (state, &e.resolved) {
            (State::Resolved, Some(r)) => format!(": {}", r.reason),
            _ => slack_details(e),
        };
        text.push_str(&format!("\n• {} job `{}`{tail}", e.kind.as_str(), e.job_id));
    }
    json!({ "text": text })
}

/// ` (running, 31m 40s): no heartbeat ... Rule `hb`, action fail, outcome applied.`
fn slack_details(entry: &Entry) -> String {
    let f = &entry.finding;
    let s = |k: &str| f[k].as_str().unwrap_or("-").to_string();
    let age = f["age_seconds"].as_u64().map_or_else(
        || "-".to_string(),
        |a| humantime::format_duration(Duration::from_secs(a)).to_string(),
    );
    format!(
        " ({}, {age}): {}. Rule `{}`, action {}, outcome {}.",
        s("status"),
        s("message"),
        entry.rule,
        s("action"),
        s("outcome")
    )
}

/// The Alertmanager API v2 body: every alert in the set, firing ones with `endsAt` a few
/// resend periods ahead (so a dead jobwarden's alerts expire), resolved ones with `endsAt`
/// at their resolution.
pub fn alertmanager(entries: &[&Entry], now: f64, resend: Duration, ctx: &Context) -> Value {
    let alerts: Vec<Value> = entries
        .iter()
        .map(|e| {
            let ends = match &e.resolved {
                Some(r) => r.at,
                None => now + 4.0 * resend.as_secs_f64(),
            };
            let mut labels = json!({
                "alertname": alertname(e.kind.as_str()),
                "kind": e.kind,
                "rule": e.rule,
                "job_id": e.job_id,
                "severity": e.severity.as_str(),
            });
            if let Some(env) = &ctx.environment {
                labels["environment"] = json!(env);
            }
            let mut description = format!(
                "{} job {} ({}): {}",
                e.kind.as_str(),
                e.job_id,
                e.finding["status"].as_str().unwrap_or("-"),
                e.finding["message"].as_str().unwrap_or("-")
            );
            if let Some(r) = &e.resolved {
                description.push_str(&format!("; resolved: {}", r.reason));
            }
            json!({
                "labels": labels,
                "annotations": {
                    "summary": e.finding["message"].as_str().unwrap_or(""),
                    "description": description,
                },
                "startsAt": timestamp(e.fired_at),
                "endsAt": timestamp(ends),
                "generatorURL": ctx.generator_url,
            })
        })
        .collect();
    Value::Array(alerts)
}

/// `stalled` → `JobwardenStalled`, `dead_process` → `JobwardenDeadProcess`.
pub fn alertname(kind: &str) -> String {
    let mut name = String::from("Jobwarden");
    for part in kind.split('_') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

fn timestamp(epoch: f64) -> String {
    let secs = epoch.floor();
    let millis = ((epoch - secs) * 1000.0) as u32;
    match chrono::DateTime::<chrono::Utc>::from_timestamp(secs as i64, millis * 1_000_000) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => String::from("1970-01-01T00:00:00Z"),
    }
}

/// The `X-Jobwarden-Signature` value: `sha256=` and the hex HMAC-SHA256 of the body.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::alerts::book::Resolution;
    use crate::config::Severity;
    use std::collections::BTreeMap;

    fn entry(resolved: bool) -> Entry {
        Entry {
            kind: crate::core::detect::Kind::DeadProcess,
            rule: "hb".into(),
            job_id: "42".into(),
            severity: Severity::Critical,
            finding: json!({"kind": "dead_process", "job_id": "42", "status": "running", "message": "process 7 is gone",
                            "age_seconds": 1900, "action": "fail", "outcome": "applied"}),
            fired_at: 1_767_225_600.0,
            resolved: resolved.then(|| Resolution {
                at: 1_767_225_660.5,
                reason: "jobwarden failed the job".into(),
            }),
            acted: None,
            told: BTreeMap::new(),
            held: false,
        }
    }

    fn ctx() -> Context {
        Context {
            environment: Some("production".into()),
            generator_url: "http://127.0.0.1:9847/api/v1/findings".into(),
        }
    }

    #[test]
    fn webhook_is_the_spec_shape() {
        let v = webhook(&entry(false), State::Firing, false, &ctx());
        assert_eq!(v["version"], 1);
        assert_eq!(v["state"], "firing");
        assert_eq!(v["environment"], "production");
        assert_eq!(v["finding"]["job_id"], "42");
        let r = webhook(&entry(true), State::Resolved, false, &ctx());
        assert_eq!(r["reason"], "jobwarden failed the job");
    }

    #[test]
    fn slack_text_names_job_status_age_rule_and_outcome() {
        let t = slack(&entry(false), State::Firing, false, &ctx())["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(t, ":rotating_light: [production] dead_process job `42` (running, 31m 40s): process 7 is gone. Rule `hb`, action fail, outcome applied.");
        let r = slack(&entry(true), State::Resolved, false, &ctx())["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            r.contains("resolved: dead_process job `42`") && r.contains("jobwarden failed the job"),
            "{r}"
        );
    }

    #[test]
    fn alertmanager_labels_and_times() {
        let firing = entry(false);
        let resolved = entry(true);
        let v = alertmanager(
            &[&firing, &resolved],
            1_767_225_700.0,
            Duration::from_secs(60),
            &ctx(),
        );
        assert_eq!(v[0]["labels"]["alertname"], "JobwardenDeadProcess");
        for label in ["kind", "rule", "job_id", "environment", "severity"] {
            assert!(v[0]["labels"][label].is_string(), "{label}");
        }
        assert_eq!(v[0]["startsAt"], "2026-01-01T00:00:00.000Z");
        assert_eq!(v[0]["endsAt"], "2026-01-01T00:05:40.000Z");
        assert_eq!(v[1]["endsAt"], "2026-01-01T00:01:00.500Z");
        assert_eq!(
            v[0]["generatorURL"],
            "http://127.0.0.1:9847/api/v1/findings"
        );
    }

    #[test]
    fn hmac_signature_is_stable() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
