//! What each receiver is sent, built from book entries. Pure, so every payload shape is
//! tested without a receiver.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::book::{Entry, IncidentEntry, State};

/// A Slack text is kept under this many characters (Slack's own advice is 4,000).
pub const SLACK_MAX_CHARS: usize = 3_900;

/// Where receivers' links point, and the environment they are told about.
#[derive(Debug, Clone)]
pub struct Context {
    pub environment: Option<String>,
    /// Where people reach the console, base path included, no trailing `/`: `[http]
    /// external_url`, else the listener's own address. Alertmanager's `generatorURL` is a
    /// job's page under it.
    pub console_url: String,
    /// `[http] external_url`: the incident link in webhook and Slack messages is given only
    /// with it (a listener's address is rarely one a reader of Slack can open).
    pub external_url: Option<String>,
}

impl Context {
    /// The console's page of one job; for a finding about no job (a mass stall), its
    /// incident, else the status page.
    pub fn job_url(&self, job_id: &str, incident: Option<&str>) -> String {
        match (job_id, incident) {
            ("", Some(id)) => incident_link(&self.console_url, id),
            ("", None) => format!("{}/", self.console_url),
            (id, _) => crate::core::job::job_link(&format!("{}/jobs/", self.console_url), id, ""),
        }
    }

    /// The incident's link on the console, under `external_url` when one is set.
    pub fn incident_url(&self, id: &str) -> Option<String> {
        self.external_url
            .as_deref()
            .map(|base| incident_link(base, id))
    }
}

/// `<base>/?incident=<id>`: the status page opened on the incident.
fn incident_link(base: &str, id: &str) -> String {
    format!("{base}/?incident={}", crate::core::job::url_segment(id))
}

/// The webhook body for an incident: `incident` instead of `finding`; on its end,
/// `ended_at` and `ending` in it and the ending as `reason` (as a finding's resolution has).
pub fn webhook_incident(
    incident: &IncidentEntry,
    state: State,
    reminder: bool,
    ctx: &Context,
) -> Value {
    let mut told = json!({
        "id": incident.id,
        "cause": incident.cause,
        "opened_at": crate::core::job::rfc3339(incident.opened_at),
        "jobs": incident.jobs,
        "sample": incident.sample,
        "held_back": incident.held_back,
        "message": incident.message,
        "url": ctx.incident_url(&incident.id),
    });
    let mut body = json!({
        "version": 1,
        "state": state.as_str(),
        "environment": ctx.environment,
    });
    if let (State::Resolved, Some(at)) = (state, incident.ended_at) {
        told["ended_at"] = json!(crate::core::job::rfc3339(at));
        told["ending"] = json!(incident.ending);
        body["reason"] = json!(incident.ending);
    }
    body["incident"] = told;
    if reminder {
        body["reminder"] = json!(true);
    }
    body
}

/// A Slack message for an incident: its message, the first job ids and how many more, and
/// the console's link; under [`SLACK_MAX_CHARS`] whatever the count or the ids' lengths.
pub fn slack_incident(
    incident: &IncidentEntry,
    state: State,
    reminder: bool,
    ctx: &Context,
) -> Value {
    let env = ctx
        .environment
        .as_deref()
        .map(|e| format!("[{e}] "))
        .unwrap_or_default();
    let head = match state {
        State::Resolved => ":white_check_mark: ended: ",
        State::Firing if reminder => ":repeat: still open: ",
        State::Firing => ":rotating_light: ",
    };
    let mut text = format!(
        "{head}{}incident `{}`: {}.",
        slack_escape(&env),
        slack_escape(&clip(&incident.id, 80)),
        slack_escape(&clip(&incident.message, 1_500))
    );
    if !incident.sample.is_empty() {
        let ids: Vec<String> = incident
            .sample
            .iter()
            .map(|id| format!("`{}`", slack_escape(&clip(id, 80))))
            .collect();
        text.push_str(&format!("\nJobs: {}", ids.join(", ")));
        let more = incident.jobs.saturating_sub(incident.sample.len());
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text.push('.');
    }
    let mut text = clip(&text, SLACK_MAX_CHARS - 600);
    if let Some(url) = ctx.incident_url(&incident.id) {
        text.push_str(&format!("\n<{}|Open it on the console>", clip(&url, 500)));
    }
    json!({ "text": text })
}

/// At most `max` characters of `text`, the last one `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's three control characters in text, escaped as its docs say.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
        " ({}, {age}): {}.{} Rule `{}`, action {}, outcome {}.",
        s("status"),
        s("message"),
        owner(f)
            .map(|w| format!(" Owner: {w}."))
            .unwrap_or_default(),
        entry.rule,
        s("action"),
        s("outcome")
    )
}

/// Who held the finding's job, in words, from its JSON's `worker`, `host` and `pid`: "worker
/// 17 on w-2, pid 42", "worker 17 (its row is gone)", "host web-1, pid 4242".
fn owner(finding: &Value) -> Option<String> {
    let worker = finding
        .get("worker")
        .and_then(|w| crate::core::detect::Owner::deserialize(w).ok());
    crate::core::detect::owner_words(
        worker.as_ref(),
        finding["host"].as_str(),
        finding["pid"].as_i64(),
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
            if let Some(incident) = &e.incident {
                labels["incident"] = json!(incident);
            }
            let mut description = format!(
                "{} job {} ({}): {}",
                e.kind.as_str(),
                e.job_id,
                e.finding["status"].as_str().unwrap_or("-"),
                e.finding["message"].as_str().unwrap_or("-")
            );
            if let Some(w) = owner(&e.finding) {
                description.push_str(&format!("; owner: {w}"));
            }
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
                "generatorURL": ctx.job_url(&e.job_id, e.incident.as_deref()),
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
            incident: None,
        }
    }

    fn ctx() -> Context {
        Context {
            environment: Some("production".into()),
            console_url: "http://127.0.0.1:9847".into(),
            external_url: None,
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
    fn a_findings_worker_reaches_every_receiver() {
        let mut e = entry(false);
        e.finding["worker"] = json!({"id": "17", "gone": false, "host": "w-2", "pid": 42});
        // Webhooks get the finding's JSON as it is.
        let v = webhook(&e, State::Firing, false, &ctx());
        assert_eq!(v["finding"]["worker"]["id"], "17");
        let t = slack(&e, State::Firing, false, &ctx())["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(t.contains("Owner: worker 17 on w-2, pid 42."), "{t}");
        let am = alertmanager(&[&e], 1_767_225_600.0, Duration::from_secs(60), &ctx());
        let d = am[0]["annotations"]["description"].as_str().unwrap();
        assert!(d.contains("; owner: worker 17 on w-2, pid 42"), "{d}");
        e.finding["worker"] = json!({"id": "9", "gone": true});
        let t = slack(&e, State::Firing, false, &ctx())["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(t.contains("Owner: worker 9 (its row is gone)."), "{t}");
        // A worker column alone (no `[workers]`), and the row's own host and pid.
        e.finding["worker"] = json!({"id": "worker-3"});
        (e.finding["host"], e.finding["pid"]) = (json!("web-1"), json!(4242));
        let t = slack(&e, State::Firing, false, &ctx())["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            t.contains("Owner: worker worker-3; the row's host web-1, pid 4242."),
            "{t}"
        );
        let am = alertmanager(&[&e], 1_767_225_600.0, Duration::from_secs(60), &ctx());
        let d = am[0]["annotations"]["description"].as_str().unwrap();
        assert!(
            d.contains("; owner: worker worker-3; the row's host web-1, pid 4242"),
            "{d}"
        );
        // No worker, no owner.
        let t = slack(&entry(false), State::Firing, false, &ctx())["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!t.contains("Owner"), "{t}");
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
        assert_eq!(v[0]["generatorURL"], "http://127.0.0.1:9847/jobs/42");
        assert!(v[0]["labels"].get("incident").is_none());
        // In an incident: the label; a finding about no job links to its incident.
        let mut mass = entry(false);
        mass.job_id = String::new();
        mass.incident = Some("inc-3".into());
        let mut odd = entry(false);
        odd.job_id = "..".into();
        odd.incident = Some("inc-3".into());
        let external = Context {
            console_url: "https://jobs.internal/jw".into(),
            external_url: Some("https://jobs.internal/jw".into()),
            ..ctx()
        };
        let v = alertmanager(
            &[&mass, &odd],
            1_767_225_700.0,
            Duration::from_secs(60),
            &external,
        );
        assert_eq!(v[0]["labels"]["incident"], "inc-3");
        assert_eq!(
            v[0]["generatorURL"],
            "https://jobs.internal/jw/?incident=inc-3"
        );
        assert_eq!(
            v[1]["generatorURL"],
            "https://jobs.internal/jw/jobs/_?id=%2E%2E"
        );
    }

    fn incident(jobs: usize) -> IncidentEntry {
        IncidentEntry {
            id: "inc-7".into(),
            cause: "most active jobs look stuck at once".into(),
            opened_at: 1_767_225_600.0,
            ended_at: None,
            jobs,
            sample: (1..=jobs.min(crate::adapters::alerts::book::SAMPLE))
                .map(|i| i.to_string())
                .collect(),
            held_back: Some("300 of 302 active jobs look stuck at once".into()),
            message: format!(
                "most active jobs look stuck at once: {jobs} jobs, signals stopped 31m 40s ago"
            ),
            ending: None,
            severity: Severity::Critical,
            told: BTreeMap::new(),
        }
    }

    #[test]
    fn an_incident_is_one_webhook_body_opening_and_ending() {
        let mut open = incident(300);
        let v = webhook_incident(&open, State::Firing, false, &ctx());
        assert_eq!(
            v,
            json!({"version": 1, "state": "firing", "environment": "production",
                "incident": {"id": "inc-7", "cause": "most active jobs look stuck at once",
                    "opened_at": "2026-01-01T00:00:00Z", "jobs": 300,
                    "sample": ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
                    "held_back": "300 of 302 active jobs look stuck at once",
                    "message": "most active jobs look stuck at once: 300 jobs, signals stopped 31m 40s ago",
                    "url": null}})
        );
        open.ended_at = Some(1_767_226_000.0);
        open.ending = Some("300 written by jobwarden".into());
        let external = Context {
            external_url: Some("https://jobs.internal/jw".into()),
            ..ctx()
        };
        let v = webhook_incident(&open, State::Resolved, false, &external);
        assert_eq!(v["state"], "resolved");
        assert_eq!(v["reason"], "300 written by jobwarden");
        assert_eq!(v["incident"]["ending"], "300 written by jobwarden");
        assert_eq!(v["incident"]["ended_at"], "2026-01-01T00:06:40Z");
        assert_eq!(
            v["incident"]["url"],
            "https://jobs.internal/jw/?incident=inc-7"
        );
    }

    #[test]
    fn an_incident_on_slack_stays_short_whatever_the_count() {
        let external = Context {
            external_url: Some("https://jobs.internal/jw".into()),
            ..ctx()
        };
        let text = |i: &IncidentEntry| {
            slack_incident(i, State::Firing, false, &external)["text"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let t = text(&incident(5_000));
        assert!(t.starts_with(":rotating_light: [production] incident `inc-7`: most active jobs look stuck at once: 5000 jobs"), "{t}");
        assert!(
            t.contains("Jobs: `1`, `2`,") && t.contains("`10` and 4990 more."),
            "{t}"
        );
        assert!(
            t.ends_with("<https://jobs.internal/jw/?incident=inc-7|Open it on the console>"),
            "{t}"
        );
        // Long ids and a message full of Slack's control characters still fit, link kept.
        let mut huge = incident(5_000);
        huge.sample = (0..SAMPLE_FOR_TEST)
            .map(|i| format!("{i}-{}", "x".repeat(5_000)))
            .collect();
        huge.message = "<&>".repeat(5_000);
        let t = text(&huge);
        assert!(t.chars().count() < 4_000, "{}", t.chars().count());
        assert!(t.ends_with("|Open it on the console>"), "{t}");
        assert!(!t.contains("<&>"), "escaped");
    }

    const SAMPLE_FOR_TEST: usize = crate::adapters::alerts::book::SAMPLE;

    #[test]
    fn hmac_signature_is_stable() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
