//! A client of a running daemon's HTTP API, for the commands that ask it to do something
//! (`jobwarden pause`, `jobwarden snooze`): the address and the token come from the `[http]`
//! table of the config the daemon reads, or `--url` and `--token` (`JOBWARDEN_TOKEN`) give
//! them. Nothing here needs the database settings.
//!
//! The answer must be jobwarden's own: `pause --for 30m && deploy` relies on exit 0 meaning
//! the hold is in force, so a 2xx from anything else (a proxy's page, another service on the
//! port) is an error, as is JSON that does not confirm the hold. The token never goes to a
//! proxy the daemon's address does not need: none for a loopback daemon, and the
//! environment's proxy settings only with `--proxy-from-env`, for an `https` daemon.

use std::time::Duration;

use crate::config::Http;

/// How long a request to the daemon may take (a job action waits for a scan in flight).
const TIMEOUT: Duration = Duration::from_secs(70);

/// Why the daemon did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request cannot be made as configured (no token, no port, a bad URL).
    #[error("{0}")]
    Setup(String),
    /// The daemon could not be reached.
    #[error("cannot reach the daemon at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The daemon answered with an error: its status and message.
    #[error("the daemon refused ({status}): {message}")]
    Refused { status: u16, message: String },
    /// A success answer that is not jobwarden's confirmation of what was asked.
    #[error("the answer from {url} (HTTP {status}) is not jobwarden's confirmation, so nothing is known to be held: {why}")]
    NotConfirmed {
        url: String,
        status: u16,
        why: String,
    },
}

/// The header that names the person at the command line for the daemon's audit and holds
/// (`cli:alice@build-01`); the daemon takes it from a token holder when no trusted proxy named
/// the person.
const BY_HEADER: &str = "X-Jobwarden-By";

/// `cli:$USER@host`: who runs this command, as the audit names them.
fn operator() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| format!("uid{}", unsafe_free_uid()));
    let name = format!("cli:{user}@{}", crate::adapters::process::hostname());
    // A header value is visible ASCII; anything else would fail the request.
    name.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .take(100)
        .collect()
}

/// The real user id, for a shell without `USER`.
fn unsafe_free_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Which daemon to ask, and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `--url`: the daemon's base URL (default: from `[http] listen` and `base_path`).
    pub url: Option<String>,
    /// `--token` or `JOBWARDEN_TOKEN`: the bearer token (default: `[http] token`).
    pub token: Option<String>,
    /// `--proxy-from-env`: reach an `https` daemon beyond loopback through the proxy the
    /// environment names (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`). Without it no proxy is used.
    pub proxy_from_env: bool,
}

/// A success answer, checked to be jobwarden's own JSON object.
#[derive(Debug)]
pub struct Answer {
    /// The URL asked, redacted.
    pub url: String,
    pub status: u16,
    pub json: serde_json::Map<String, serde_json::Value>,
}

impl Answer {
    /// The end of the hold this answer confirms in `key` (`paused_until`, `snoozed_until`):
    /// an RFC 3339 time, or `None` when the hold was ended (`ending`), with every `(field,
    /// value)` of `fields` as given. Anything else is [`ApiError::NotConfirmed`].
    pub fn hold_until(
        &self,
        key: &str,
        ending: bool,
        fields: &[(&str, &str)],
    ) -> Result<Option<String>, ApiError> {
        let not = |why: String| ApiError::NotConfirmed {
            url: self.url.clone(),
            status: self.status,
            why,
        };
        for (field, want) in fields {
            let got = self.json.get(*field).and_then(|v| v.as_str());
            if got != Some(*want) {
                let shown = got.map_or_else(|| "missing".to_string(), |g| format!("{g:?}"));
                return Err(not(format!("`{field}` is {shown}, not {want:?}")));
            }
        }
        match (self.json.get(key), ending) {
            (Some(serde_json::Value::Null), true) => Ok(None),
            (Some(serde_json::Value::String(until)), false)
                if chrono::DateTime::parse_from_rfc3339(until).is_ok() =>
            {
                Ok(Some(until.clone()))
            }
            (None, _) => Err(not(format!("it has no `{key}`"))),
            (Some(value), true) => Err(not(format!(
                "`{key}` is {value}, not null: the hold did not end"
            ))),
            (Some(value), false) => Err(not(format!(
                "`{key}` is {value}, not the time the hold ends"
            ))),
        }
    }
}

impl ApiError {
    /// The request itself was wrong (exit 2), rather than refused or unreachable (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(self, ApiError::Setup(_)) || matches!(self, ApiError::Refused { status: 400, .. })
    }
}

/// The daemon's base URL: `--url` if given, else `[http] listen` (a wildcard address reached
/// on loopback; `https` with `tls_cert`) and `base_path`.
pub fn base_url(http: &Http, url: Option<&str>) -> Result<String, ApiError> {
    if let Some(url) = url {
        return Ok(url.trim_end_matches('/').to_string());
    }
    let listen = http.listen;
    if listen.port() == 0 {
        return Err(ApiError::Setup(
            "[http] listen has port 0, so the daemon's port is not known: give its address with --url"
                .into(),
        ));
    }
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let scheme = if http.tls.is_some() { "https" } else { "http" };
    let addr = std::net::SocketAddr::new(ip, listen.port());
    Ok(format!("{scheme}://{addr}{}", http.base_path))
}

/// Whether a request to `url` goes through the environment's proxy: never for a loopback
/// address, and only when asked (`--proxy-from-env`), for `https` (a proxy would read the
/// token of a plain-HTTP request).
fn through_proxy(url: &reqwest::Url, asked: bool) -> Result<bool, ApiError> {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    if !asked || loopback {
        return Ok(false);
    }
    if url.scheme() != "https" {
        return Err(ApiError::Setup(
            "--proxy-from-env needs an https daemon: a proxy would read the token sent over plain HTTP"
                .into(),
        ));
    }
    Ok(true)
}

/// `POST {daemon}{path}` with the bearer token (`--token`, else `[http] token`) and a JSON
/// body: the daemon's answer, a JSON object (any other success answer is
/// [`ApiError::NotConfirmed`]).
pub async fn post(
    http: &Http,
    target: &Target,
    path: &str,
    body: &serde_json::Value,
) -> Result<Answer, ApiError> {
    let Some(token) = target.token.as_ref().or(http.token.as_ref()) else {
        return Err(ApiError::Setup(
            "no token: give the daemon's token with --token or JOBWARDEN_TOKEN (or read it \
             from the config's [http] token); without one the daemon takes no requests to write"
                .into(),
        ));
    };
    let url = format!("{}{path}", base_url(http, target.url.as_deref())?);
    let parsed = reqwest::Url::parse(&url).map_err(|e| {
        ApiError::Setup(format!(
            "the daemon's URL {} is not a URL: {e}",
            crate::config::redact_url(&url)
        ))
    })?;
    let mut client = reqwest::Client::builder().timeout(TIMEOUT);
    if !through_proxy(&parsed, target.proxy_from_env)? {
        client = client.no_proxy();
    }
    if let Some(tls) = &http.tls {
        // The daemon's own certificate is trusted, self-signed or not.
        let pem = std::fs::read(&tls.cert).map_err(|e| {
            ApiError::Setup(format!(
                "cannot read [http] tls_cert {}: {e}",
                tls.cert.display()
            ))
        })?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| ApiError::Setup(format!("[http] tls_cert {}: {e}", tls.cert.display())))?;
        client = client.add_root_certificate(cert);
    }
    let client = client
        .build()
        .map_err(|e| ApiError::Setup(format!("cannot make an HTTP client: {e}")))?;
    let shown = crate::config::redact_url(&url);
    let answer = client
        .post(parsed)
        .bearer_auth(token)
        .header(BY_HEADER, operator())
        .json(body)
        .send()
        .await
        .map_err(|e| ApiError::Unreachable {
            url: shown.clone(),
            message: e.without_url().to_string(),
        })?;
    let status = answer.status().as_u16();
    let json: serde_json::Value = answer.json().await.unwrap_or(serde_json::Value::Null);
    if (200..300).contains(&status) {
        match json {
            serde_json::Value::Object(json) => Ok(Answer {
                url: shown,
                status,
                json,
            }),
            _ => Err(ApiError::NotConfirmed {
                url: shown,
                status,
                why: "its body is not a JSON object".into(),
            }),
        }
    } else {
        let message = json["error"]
            .as_str()
            .map_or_else(|| format!("HTTP {status}"), str::to_string);
        Err(ApiError::Refused { status, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_is_named_as_cli_user_at_host() {
        let name = operator();
        assert!(name.starts_with("cli:") && name.contains('@'), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_graphic()), "{name}");
    }

    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        let text = "[database]\nurl = \"sqlite::memory:\"\n[jobs]\ntable = \"jobs\"\n\
                    [jobs.statuses]\nrunning = [\"running\"]\nfailed = [\"failed\"]\n\
                    [http]\nlisten = \"0.0.0.0:9847\"\nbase_path = \"/jobwarden\"\n";
        let config = crate::config::parse(text, std::path::Path::new("jw.toml"), None, &|_| None)
            .expect("config");
        assert_eq!(
            base_url(&config.http, None).unwrap(),
            "http://127.0.0.1:9847/jobwarden"
        );
        assert_eq!(
            base_url(&config.http, Some("http://10.0.0.5:9000/")).unwrap(),
            "http://10.0.0.5:9000"
        );
    }

    #[test]
    fn a_proxy_is_used_only_when_asked_for_an_https_daemon_beyond_loopback() {
        let check = |url: &str, asked: bool| {
            through_proxy(&reqwest::Url::parse(url).unwrap(), asked).map_err(|e| e.to_string())
        };
        for url in [
            "http://127.0.0.1:9847",
            "https://127.3.4.5:9847/jw",
            "http://[::1]:9847",
            "http://[::ffff:127.0.0.1]:9847",
            "https://localhost:9847",
            "http://LOCALHOST.:9847",
            "http://jobs.localhost:9847",
        ] {
            assert_eq!(check(url, true), Ok(false), "{url}");
        }
        assert_eq!(check("https://jobs.internal/jw", false), Ok(false));
        assert_eq!(check("https://jobs.internal/jw", true), Ok(true));
        assert!(check("http://jobs.internal/jw", true)
            .unwrap_err()
            .contains("needs an https daemon"));
    }
}
