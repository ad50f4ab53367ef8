//! The listener under attack and under TLS, through the real binary: idle and half-sent
//! connections by the thousand do not take the daemon's descriptors (health, metrics, scans
//! and writes go on), and an HTTPS listener serves with a certificate made here and re-reads
//! a renewed one on SIGHUP.

mod common;

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use common::{metric, wait_for, Backend, Daemon, TestConfig, TestDb};

/// Idle sockets the attacker holds in each wave: more than the daemon's open-file limit.
const IDLE_SOCKETS: usize = 1_500;
/// The open-file limit the daemon runs under (the common default soft limit).
const DAEMON_NOFILE: libc::rlim_t = 1_024;

/// Opens `n` connections to `addr` (for at most 15 s), every other one sending half a
/// request head and never the rest, and returns those that connected.
fn open_idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    (0..n)
        .take_while(|_| tokio::time::Instant::now() < until)
        .filter_map(|i| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
            if i % 2 == 0 {
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
            }
            Some(s)
        })
        .collect()
}

/// Raises this test process's own open-file limit, so it can hold both waves.
fn raise_own_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads and writes only the struct passed in.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    assert!(
        limit.rlim_cur as usize > 2 * IDLE_SOCKETS + 200,
        "this test needs an open-file limit above {}",
        2 * IDLE_SOCKETS + 200
    );
}

async fn get(client: &reqwest::Client, url: &str) -> Result<(u16, String), String> {
    let r = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.map_err(|e| e.to_string())?))
}

#[tokio::test]
async fn idle_connections_leave_health_metrics_scans_and_writes_alone() {
    raise_own_limit();
    let db = TestDb::new(Backend::Postgres).await;
    db.exec("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, completed_at TIMESTAMPTZ, error TEXT)").await;
    let port = 0;
    let state = db.dir().join("state");
    let config = TestConfig::new(&db.url)
        .top("interval = \"300ms\"")
        .jobs("finished_at = \"completed_at\"\nerror = \"error\"\nstatus_since = \"created_at\"")
        .heartbeat_rule("hb", "30m", "action = \"fail\"\nseverity = \"critical\"")
        .section("[safety]\nmin_active = 1000\nmax_actions_per_scan = 100")
        .state(&state)
        .http(port)
        .write(db.dir().join("jw.toml"));
    // The daemon under the default limit, which its own cap must respect.
    let daemon = Daemon::start_with(&config, &[], |cmd| {
        // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: DAEMON_NOFILE,
                    rlim_max: DAEMON_NOFILE,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    wait_for("ready", Duration::from_secs(15), || async {
        get(&client, &daemon.url("/readyz"))
            .await
            .ok()
            .filter(|r| r.0 == 200)
    })
    .await;
    let addr: SocketAddr = format!("127.0.0.1:{}", daemon.port).parse().expect("addr");

    // Wave one; then stuck jobs arrive while it is held, and must be failed.
    let mut first = Some(tokio::task::spawn_blocking(move || {
        open_idle(addr, IDLE_SOCKETS)
    }));
    let probe = |path: &str| {
        let url = daemon.url(path);
        let client = client.clone();
        async move {
            let (code, body) = get(&client, &url)
                .await
                .unwrap_or_else(|e| panic!("{url} did not answer under idle connections: {e}"));
            assert_eq!(code, 200, "{url}: {body}");
            body
        }
    };
    let scans_before = metric(&probe("/metrics").await, "jobwarden_scans_total").unwrap_or(0.0);
    db.exec(&format!(
        "INSERT INTO jobs (id, status, created_at, updated_at) SELECT g, 'running', {}, {} FROM generate_series(1, 10) g",
        db.ago(60.0),
        db.ago(45.0)
    ))
    .await;
    let mut held = Vec::new();
    let mut second = None;
    let mut failed = 0;
    for round in 0..60 {
        probe("/healthz").await;
        probe("/metrics").await;
        if let Some(wave) = (round == 5).then(|| first.take()).flatten() {
            held = wave.await.expect("wave one");
            assert!(
                held.len() > IDLE_SOCKETS / 2,
                "only {} connected",
                held.len()
            );
        }
        if round == 30 {
            // Past the header timeout: wave two lands on a daemon that closed wave one.
            second = Some(tokio::task::spawn_blocking(move || {
                open_idle(addr, IDLE_SOCKETS)
            }));
        }
        failed = db
            .rows("SELECT count(*)::text FROM jobs WHERE status = 'failed'")
            .await[0][0]
            .as_deref()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = second.expect("wave two").await.expect("wave two");
    assert_eq!(
        failed, 10,
        "every stuck job failed while the sockets were held"
    );

    let metrics = probe("/metrics").await;
    let scans = metric(&metrics, "jobwarden_scans_total").unwrap_or(0.0);
    assert!(
        scans >= scans_before + 20.0,
        "scans went on: {scans_before} -> {scans}"
    );
    let closed = |reason: &str| {
        metric(
            &metrics,
            &format!("jobwarden_http_connections_closed_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(closed("evicted") > 0.0, "{metrics}");
    assert!(closed("header_timeout") > 0.0, "{metrics}");
    let open = metric(&metrics, "jobwarden_http_connections ").unwrap_or(f64::MAX);
    assert!(open <= 256.0, "the cap holds: {open} open");
    let fds = metric(&metrics, "jobwarden_process_open_fds").unwrap_or(f64::MAX);
    assert!(
        fds < DAEMON_NOFILE as f64 * 0.5,
        "descriptors left over: {fds} open"
    );
    assert_eq!(
        metric(
            &metrics,
            "jobwarden_actions_total{action=\"fail\",outcome=\"applied\"}"
        ),
        Some(10.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "jobwarden_audit_errors_total"), Some(0.0));
    drop(held);
    drop(second);

    // Every write has its audit record, and nothing ran out of descriptors.
    let log = daemon.log();
    assert!(!log.contains("Too many open files"), "{log}");
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).expect("audit file");
    let applied = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["outcome"] == "applied")
        .count();
    assert_eq!(applied, 10, "{audit}");
    assert_eq!(daemon.stop().await, 0);
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
fn certificate(dir: &Path) -> String {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    std::fs::write(dir.join("tls.crt"), made.cert.pem()).expect("write cert");
    std::fs::write(dir.join("tls.key"), made.key_pair.serialize_pem()).expect("write key");
    made.cert.pem()
}

fn trusting(pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem"))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client")
}

#[tokio::test]
async fn a_tls_listener_serves_https_and_rereads_its_certificate_on_sighup() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    let first = certificate(db.dir());
    let config = TestConfig::new(&db.url)
        .top("interval = \"300ms\"")
        .heartbeat_rule("hb", "30m", "")
        .section(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret\"\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"",
        )
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    let port = daemon.port;
    let https = |path: &str| format!("https://localhost:{port}{path}");
    let old = trusting(&first);
    let (code, body) = wait_for("https /healthz", Duration::from_secs(10), || async {
        get(&old, &https("/healthz")).await.ok()
    })
    .await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let metrics = get(&old, &https("/metrics"))
        .await
        .expect("metrics over https");
    assert!(metrics.1.contains("jobwarden_build_info"));
    // The token endpoint over TLS.
    let r = old
        .post(https("/api/v1/recover"))
        .bearer_auth("s3cret")
        .json(&serde_json::json!({"dry_run": true}))
        .send()
        .await
        .expect("recover over https");
    assert_eq!(r.status().as_u16(), 200);
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(
        plain
            .as_ref()
            .map(|r| r.status().as_u16() != 200)
            .unwrap_or(true),
        "plain HTTP answered on the TLS port: {plain:?}"
    );

    // A renewed certificate (a new key) is served after SIGHUP, without a restart.
    let second = certificate(db.dir());
    assert!(get(&trusting(&second), &https("/healthz")).await.is_err());
    daemon.signal(libc::SIGHUP);
    let renewed = trusting(&second);
    wait_for(
        "the renewed certificate",
        Duration::from_secs(10),
        || async {
            get(&renewed, &https("/healthz"))
                .await
                .ok()
                .filter(|r| r.0 == 200)
        },
    )
    .await;
    assert!(
        get(&old, &https("/healthz")).await.is_err(),
        "the old one is gone"
    );

    // A broken key at the next SIGHUP keeps the running certificate.
    std::fs::write(db.dir().join("tls.key"), "not a key").expect("break key");
    daemon.signal(libc::SIGHUP);
    wait_for("the refused reload", Duration::from_secs(10), || async {
        daemon.log().contains("config reload refused").then_some(())
    })
    .await;
    assert_eq!(
        get(&renewed, &https("/healthz")).await.map(|r| r.0),
        Ok(200)
    );
    assert!(daemon.log().contains("tls.key"), "{}", daemon.log());
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn a_token_beyond_loopback_needs_tls_or_an_explicit_plaintext() {
    let db = TestDb::new(Backend::Sqlite).await;
    let validate = |http: &str| {
        let config = TestConfig::new(&db.url)
            .heartbeat_rule("hb", "30m", "")
            .section(&format!("[http]\n{http}"))
            .write(db.dir().join("jw.toml"));
        let out = common::jobwarden(
            "",
            &["validate", "--config", config.to_str().expect("utf-8")],
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = validate("listen = \"0.0.0.0:9847\"\ntoken = \"t\"");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("jw.toml:")
            && err.contains("`http.listen`")
            && err.contains("allow_plaintext"),
        "{err}"
    );
    assert!(!err.contains("\"t\""), "the token is not shown: {err}");
    for ok in [
        "listen = \"0.0.0.0:9847\"\ntoken = \"t\"\nallow_plaintext = true",
        "listen = \"0.0.0.0:9847\"",
        "listen = \"127.0.0.1:9847\"\ntoken = \"t\"",
    ] {
        let (code, err) = validate(ok);
        assert_eq!(code, Some(0), "{ok}: {err}");
    }
    let (code, err) = validate("tls_cert = \"tls.crt\"");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("tls_key"), "{err}");
    // Files that are not a certificate and key: validate reads them as run would.
    std::fs::write(db.dir().join("tls.crt"), "junk").expect("write");
    std::fs::write(db.dir().join("tls.key"), "junk").expect("write");
    let out = common::jobwarden(
        "",
        &[
            "validate",
            "--config",
            TestConfig::new(&db.url)
                .heartbeat_rule("hb", "30m", "")
                .section("[http]\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"")
                .write(db.dir().join("jw.toml"))
                .to_str()
                .expect("utf-8"),
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("tls.crt"), "{text}");
}
