//! Why a database server cannot be reached, said so that the operator knows what to fix.
//!
//! sqlx's pool retries a refused connection until its acquire timeout and then reports only
//! "pool timed out while waiting for an open connection", and a host name that does not
//! resolve as "failed to lookup address information". So before the pool is opened, the
//! server's address is probed once: the name looked up, then a TCP connection made (and
//! dropped). A refused port answers at once, a name that does not exist too; only a host
//! that drops packets takes the whole query timeout. The probe costs one TCP handshake per
//! connect (a daemon connects at start and after an outage), never per scan.

use std::time::Duration;

use crate::config::Database;
use crate::core::sql::Dialect;

/// The server's host and port, when the URL names one over TCP (not a Unix socket, not
/// SQLite).
pub(super) fn tcp_address(db: &Database) -> Option<(String, u16)> {
    use std::str::FromStr;
    let (host, port, socket) = match db.dialect {
        Dialect::Postgres => {
            let o = sqlx::postgres::PgConnectOptions::from_str(&db.url).ok()?;
            (
                o.get_host().to_string(),
                o.get_port(),
                o.get_socket().is_some(),
            )
        }
        Dialect::MySql => {
            let o = sqlx::mysql::MySqlConnectOptions::from_str(&db.url).ok()?;
            (
                o.get_host().to_string(),
                o.get_port(),
                o.get_socket().is_some(),
            )
        }
        Dialect::Sqlite => return None,
    };
    // An IPv6 literal comes bracketed from the URL (`[::1]`); the lookup takes it bare.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    (!socket && !host.starts_with('/') && !host.is_empty()).then_some((host, port))
}

/// What went wrong on the way to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unreachable {
    /// The host name did not resolve (with the resolver's words).
    NoSuchHost(String),
    /// The host answered that nothing listens on the port.
    Refused,
    /// No answer at all within the timeout.
    TimedOut,
    /// Anything else the network said (unreachable network, ...).
    Other(String),
}

/// `host:port`, an IPv6 literal in brackets.
fn shown(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The sentence for `reason`, naming `host:port`, the key to fix and the usual cause.
pub(super) fn describe(reason: &Unreachable, host: &str, port: u16, timeout: Duration) -> String {
    let at = shown(host, port);
    match reason {
        Unreachable::NoSuchHost(why) => format!(
            "the host name `{host}` was not found ({why}): check the host in `database.url`"
        ),
        Unreachable::Refused => format!(
            "connection refused by {at}: nothing listens on port {port} there; check \
             the port in `database.url` (PostgreSQL's default is 5432, MySQL's 3306) and that \
             the server is running"
        ),
        Unreachable::TimedOut => format!(
            "no answer from {at} within {} (`database.query_timeout`): the host is \
             down, or a firewall drops the connection; check the host and port in \
             `database.url`",
            humantime::format_duration(timeout)
        ),
        Unreachable::Other(why) => format!(
            "cannot open a connection to {at}: {why}; check the host and port in \
             `database.url`"
        ),
    }
}

/// Looks the host up and opens (and drops) one TCP connection to it, within `timeout`.
pub(super) async fn probe(host: &str, port: u16, timeout: Duration) -> Result<(), Unreachable> {
    let lookup = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await;
    let addresses: Vec<std::net::SocketAddr> = match lookup {
        Err(_) => return Err(Unreachable::TimedOut),
        Ok(Err(e)) => return Err(Unreachable::NoSuchHost(e.to_string())),
        Ok(Ok(found)) => found.collect(),
    };
    if addresses.is_empty() {
        return Err(Unreachable::NoSuchHost("no address".into()));
    }
    let mut last = Unreachable::TimedOut;
    for address in addresses {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Unreachable::Refused
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => last = Unreachable::TimedOut,
            Ok(Err(e)) => last = Unreachable::Other(e.to_string()),
            Err(_) => last = Unreachable::TimedOut,
        }
    }
    Err(last)
}

/// The pool timed out although the port accepted a connection: something listens there that
/// does not speak the database's protocol, or the server is too slow to greet.
pub(super) fn no_greeting(host: &str, port: u16, timeout: Duration) -> String {
    format!(
        "{} accepted a connection, but no database answered within {} \
         (`database.query_timeout`): check that port {port} is the database's in \
         `database.url`, or raise `database.query_timeout` for a slow server",
        shown(host, port),
        humantime::format_duration(timeout)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_refused_at_once_and_a_bad_name_is_named() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert_eq!(
            probe("127.0.0.1", port, Duration::from_secs(5)).await,
            Err(Unreachable::Refused)
        );
        assert!(matches!(
            probe("no-such-host.invalid", 5432, Duration::from_secs(5)).await,
            Err(Unreachable::NoSuchHost(_) | Unreachable::TimedOut)
        ));
        let listening = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listening.local_addr().unwrap().port();
        assert_eq!(
            probe("127.0.0.1", port, Duration::from_secs(5)).await,
            Ok(())
        );
    }

    #[test]
    fn the_address_comes_from_the_url_and_sockets_are_left_alone() {
        let db = |url: &str| {
            crate::config::parse(
                &format!(
                    "[database]\nurl = \"{url}\"\n[jobs]\ntable = \"jobs\"\n\
                     [jobs.statuses]\nrunning = [\"running\"]\n"
                ),
                std::path::Path::new("/etc/jw.toml"),
                None,
                &|_| None,
            )
            .expect("config")
            .database
        };
        let address = |url: &str| tcp_address(&db(url));
        assert_eq!(
            address("postgres://u@[::1]:5433/app"),
            Some(("::1".into(), 5433))
        );
        assert_eq!(
            address("mysql://u@db.internal/app"),
            Some(("db.internal".into(), 3306))
        );
        assert_eq!(address("postgres://u@%2Frun%2Fpostgresql/app"), None);
        assert_eq!(address("sqlite://jobs.db"), None);
    }

    #[test]
    fn each_reason_says_what_to_check() {
        let t = Duration::from_secs(5);
        let said = |r: Unreachable| describe(&r, "db", 5433, t);
        assert!(said(Unreachable::Refused).contains("connection refused by db:5433"));
        assert!(said(Unreachable::Refused).contains("check the port"));
        assert!(said(Unreachable::TimedOut).contains("no answer from db:5433 within 5s"));
        assert!(said(Unreachable::NoSuchHost("x".into())).contains("`db` was not found"));
        assert!(describe(&Unreachable::Refused, "::1", 5432, t).contains("by [::1]:5432:"));
    }
}
