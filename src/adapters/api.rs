//! A client of a running daemon's HTTP API, for the commands that ask it to do something
//! (`jobwarden pause`, `jobwarden snooze`): the address and the token come from the same
//! config the daemon reads, or `--url` names the daemon.

use std::time::Duration;

use crate::config::Config;

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
}

impl ApiError {
    /// The request itself was wrong (exit 2), rather than refused or unreachable (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(self, ApiError::Setup(_)) || matches!(self, ApiError::Refused { status: 400, .. })
    }
}

/// The daemon's base URL: `--url` if given, else `[http] listen` (a wildcard address reached
/// on loopback; `https` with `tls_cert`) and `base_path`.
pub fn base_url(config: &Config, url: Option<&str>) -> Result<String, ApiError> {
    if let Some(url) = url {
        return Ok(url.trim_end_matches('/').to_string());
    }
    let listen = config.http.listen;
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
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let addr = std::net::SocketAddr::new(ip, listen.port());
    Ok(format!("{scheme}://{addr}{}", config.http.base_path))
}

/// `POST {base}{path}` with the config's bearer token and a JSON body: the daemon's answer.
pub async fn post(
    config: &Config,
    base: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let Some(token) = &config.http.token else {
        return Err(ApiError::Setup(
            "[http] token is not set, so the daemon takes no requests to write".into(),
        ));
    };
    let mut client = reqwest::Client::builder().timeout(TIMEOUT);
    if let Some(tls) = &config.http.tls {
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
    let url = format!("{base}{path}");
    let answer = client
        .post(&url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .map_err(|e| ApiError::Unreachable {
            url: crate::config::redact_url(&url),
            message: e.without_url().to_string(),
        })?;
    let status = answer.status().as_u16();
    let json: serde_json::Value = answer.json().await.unwrap_or(serde_json::Value::Null);
    if (200..300).contains(&status) {
        Ok(json)
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
    fn a_wildcard_listener_is_reached_on_loopback() {
        let text = "[database]\nurl = \"sqlite::memory:\"\n[jobs]\ntable = \"jobs\"\n\
                    [jobs.statuses]\nrunning = [\"running\"]\nfailed = [\"failed\"]\n\
                    [http]\nlisten = \"0.0.0.0:9847\"\nbase_path = \"/jobwarden\"\n";
        let config = crate::config::parse(text, std::path::Path::new("jw.toml"), None, &|_| None)
            .expect("config");
        assert_eq!(
            base_url(&config, None).unwrap(),
            "http://127.0.0.1:9847/jobwarden"
        );
        assert_eq!(
            base_url(&config, Some("http://10.0.0.5:9000/")).unwrap(),
            "http://10.0.0.5:9000"
        );
    }
}
