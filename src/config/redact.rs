//! The one notion of secret: every sink URL's password, query and (for Slack) path, every
//! header value and HMAC secret, the database URL's password and the HTTP token, and what
//! `${VAR}` expanded into them. [`scrub`] takes them out of any message, [`redact_url`] and
//! [`redact_alert_url`] show a URL without them, [`redacted_json`] is the config as
//! `validate` prints it.

use super::*;

/// What `shown` hides of `url`: the tail after their common start, when `shown` ends in `***`.
pub(super) fn hidden_part(url: &str, shown: &str) -> Option<String> {
    let kept = shown.strip_suffix("***")?;
    let common = url
        .char_indices()
        .zip(kept.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    Some(url[common..].to_string()).filter(|h| !h.is_empty())
}

/// Replaces every secret in a message with `***` (secrets shorter than three characters are
/// left alone: they would mangle every message).
pub fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 3)
        .fold(message.to_string(), |m, s| m.replace(s.as_str(), "***"))
}

/// Replaces the password of a `scheme://user:password@host/...` URL (and a `password=` query
/// parameter) with `***`. Anything else is returned unchanged.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(password) = url_password(url) {
        if !password.is_empty() {
            out = out.replacen(&format!(":{password}@"), ":***@", 1);
        }
    }
    if let Some((head, query)) = out.split_once('?') {
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}?{query}");
    }
    out
}

/// The password part of a URL's user info, if any.
pub(super) fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    Some(userinfo.split_once(':')?.1.to_string())
}

/// The resolved config as a JSON value, with secrets redacted.
pub fn redacted_json(config: &Config) -> serde_json::Value {
    let writes =
        |columns: &[crate::core::writes::SetColumn]| -> serde_json::Map<String, serde_json::Value> {
            columns
                .iter()
                .map(|c| (c.column.clone(), c.value.source()))
                .collect()
        };
    let field = |f: &Option<Field>| f.as_ref().map(|f| f.to_string());
    let rules: Vec<_> = config
        .rules
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name, "statuses": r.statuses, "signal": r.signal,
                "after": humantime::format_duration(r.after).to_string(),
                "phases": r.phases, "action": r.action, "severity": r.severity,
            })
        })
        .collect();
    let artifacts: Vec<_> = config
        .artifacts
        .iter()
        .map(|a| {
            serde_json::json!({
                "name": a.name, "root": a.root, "pattern": a.pattern, "partial": a.partial,
                "settle": humantime::format_duration(a.settle).to_string(), "required": a.required,
                "watch": a.watch, "reconcile_every": humantime::format_duration(a.reconcile_every).to_string(),
                "required_within": humantime::format_duration(a.required_within).to_string(),
            })
        })
        .collect();
    let alerts: Vec<_> = config
        .alerts
        .iter()
        .map(|a| serde_json::json!({
            "name": a.name, "kind": a.kind, "url": redact_alert_url(a.kind, &a.url),
            "min_severity": a.min_severity,
            "headers": a.headers.iter().map(|(k, _)| (k.clone(), "***")).collect::<BTreeMap<_, _>>(),
            "hmac_secret": a.hmac_secret.as_ref().map(|_| "***"),
            "repeat_every": a.repeat_every.map(|d| humantime::format_duration(d).to_string()),
            "timeout": humantime::format_duration(a.timeout).to_string(),
            "queue": a.queue,
        }))
        .collect();
    let j = &config.jobs;
    serde_json::json!({
        "environment": config.environment,
        "interval": humantime::format_duration(config.interval).to_string(),
        "dry_run": config.dry_run,
        "terminal_counts_every": config.terminal_counts_every
            .map_or("0".to_string(), |d| humantime::format_duration(d).to_string()),
        "database": {
            "url": config.redacted_url(),
            "dialect": config.database.dialect,
            "max_connections": config.database.max_connections,
            "query_timeout": humantime::format_duration(config.database.query_timeout).to_string(),
            "timezone": config.database.timezone.map(|t| t.to_string()),
        },
        "jobs": {
            "table": j.table.to_string(), "id": j.id.to_string(), "status": j.status.to_string(),
            "created_at": j.created_at.to_string(), "heartbeat_at": field(&j.heartbeat_at),
            "status_since": field(&j.status_since),
            "progress": field(&j.progress), "finished_at": field(&j.finished_at),
            "error": field(&j.error), "payload": field(&j.payload), "parent_id": field(&j.parent_id), "phase": field(&j.phase),
            "pid": field(&j.pid), "host": field(&j.host), "where": j.where_sql,
            "attempts": field(&j.attempts), "max_attempts": j.max_attempts,
            "statuses": StatusClass::ALL.iter()
                .map(|&c| (c.as_str(), j.statuses.words(c).to_vec()))
                .collect::<BTreeMap<_, _>>(),
        },
        "writes": {
            "fail": writes(&j.writes.fail),
            "requeue": writes(&j.writes.requeue),
        },
        "rules": rules,
        "artifacts": artifacts,
        "http": {"listen": config.http.listen.to_string(), "token": config.http.token.as_ref().map(|_| "***"),
            "allowed_hosts": config.http.allowed_hosts,
            "tls_cert": config.http.tls.as_ref().map(|t| t.cert.display().to_string()),
            "tls_key": config.http.tls.as_ref().map(|t| t.key.display().to_string()),
            "base_path": config.http.base_path, "job_url": config.http.job_url,
            "external_url": config.http.external_url, "user_header": config.http.user_header,
            "trusted_proxies": config.http.trusted_proxies.iter()
                .map(|c| format!("{}/{}", c.net, c.bits)).collect::<Vec<_>>()},
        "alerts": alerts,
        "state": {"dir": config.state_dir},
        "audit": {"table": config.audit_table.as_ref().map(|t| t.to_string()),
            "max_size": crate::config::format_size(config.audit_max_size)},
        "safety": {
            "max_actions_per_scan": config.safety.max_actions_per_scan,
            "max_stuck_fraction": config.safety.max_stuck_fraction,
            "min_active": config.safety.min_active,
            "min_age": humantime::format_duration(config.safety.min_age).to_string(),
            "startup_grace": humantime::format_duration(config.safety.startup_grace).to_string(),
            "confirm_scans": config.safety.confirm_scans,
            "max_bulk": config.safety.max_bulk,
        },
    })
}

/// A Slack incoming-webhook URL is itself the secret (its path); other URLs only hide a
/// password.
/// A sink URL as jobwarden shows it anywhere: a Slack URL keeps its host and first path
/// segment (`https://hooks.slack.com/services/***`, the rest is the secret); any URL loses
/// its password and query string.
pub fn redact_alert_url(kind: AlertKind, url: &str) -> String {
    let url = redact_url(url);
    let url = match url.split_once('?') {
        Some((base, _)) => format!("{base}?***"),
        None => url,
    };
    match (kind, url.split_once("://")) {
        (AlertKind::Slack, Some((scheme, rest))) => {
            let mut parts = rest.split('/');
            let host = parts.next().unwrap_or_default();
            match parts.next().filter(|p| !p.is_empty()) {
                Some(first) => format!("{scheme}://{host}/{first}/***"),
                None => format!("{scheme}://{host}/***"),
            }
        }
        _ => url,
    }
}
