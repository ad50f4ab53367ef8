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
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret-tls-token-0001\"\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"",
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
        .bearer_auth("s3cret-tls-token-0001")
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
    let (code, err) = validate("listen = \"0.0.0.0:9847\"\ntoken = \"a-token-of-24-characters\"");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("jw.toml:")
            && err.contains("`http.listen`")
            && err.contains("allow_plaintext"),
        "{err}"
    );
    assert!(
        !err.contains("a-token-of-24-characters"),
        "the token is not shown: {err}"
    );
    for ok in [
        "listen = \"0.0.0.0:9847\"\ntoken = \"a-token-of-24-characters\"\nallow_plaintext = true",
        "listen = \"0.0.0.0:9847\"",
        "listen = \"127.0.0.1:9847\"\ntoken = \"a-token-of-24-characters\"",
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

/// One HTTP/1.1 response read off `stream`: its head (lower-cased) and its body, by its
/// `content-length`, `chunk` bytes at a time with `pace` between reads (a slow reader).
async fn read_response(
    stream: &mut tokio::net::TcpStream,
    chunk: usize,
    pace: Duration,
) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read head");
        assert_eq!(
            n,
            1,
            "closed in the head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = Vec::with_capacity(length);
    let mut buf = vec![0u8; chunk];
    while body.len() < length {
        let want = chunk.min(length - body.len());
        let n = stream.read(&mut buf[..want]).await.expect("read body");
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
        tokio::time::sleep(pace).await;
    }
    (head, body)
}

/// Sends a GET on an open connection (kept alive).
async fn send_get(stream: &mut tokio::net::TcpStream, path: &str, extra: &str) {
    use tokio::io::AsyncWriteExt as _;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
}

#[tokio::test]
async fn a_slow_reader_gets_a_whole_five_megabyte_answer() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table_with_id("TEXT").await;
    // 7,000 stuck jobs with 500-character ids: /api/v1/findings is over 5 MB.
    db.exec(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 7000) \
         INSERT INTO jobs SELECT replace(hex(zeroblob(250)), '0', 'x') || '-' || i, 'running', {}, {} FROM n",
        db.ago(60.0),
        db.ago(45.0)
    ))
    .await;
    let config = TestConfig::new(&db.url)
        .top("interval = \"1h\"")
        .heartbeat_rule("hb", "30m", "")
        .http(0)
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    wait_for("the first scan", Duration::from_secs(60), || async {
        common::get(&daemon.url("/api/v1/findings"))
            .await
            .filter(|r| r.0 == 200)
    })
    .await;

    // A client with a small receive buffer that takes 16 KiB every 20 ms (at most 800 KB/s):
    // the answer takes longer than the header timeout (5 s) to read.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(8 * 1024).expect("SO_RCVBUF");
    let addr: SocketAddr = format!("127.0.0.1:{}", daemon.port).parse().expect("addr");
    let mut stream = socket.connect(addr).await.expect("connect");
    send_get(&mut stream, "/api/v1/findings", "").await;
    let started = tokio::time::Instant::now();
    let (head, body) = read_response(&mut stream, 16 * 1024, Duration::from_millis(20)).await;
    let took = started.elapsed();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.len() > 5_000_000, "only {} bytes arrived", body.len());
    assert!(
        took > Duration::from_secs(6),
        "the read was not slow: {took:?}"
    );
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "the body is not whole JSON ({} bytes, after {took:?}): {e}",
            body.len()
        )
    });
    let stalled = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == "stalled")
        .count();
    assert_eq!(stalled, 7000);
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");

    // The connection is still good for the next request.
    send_get(&mut stream, "/healthz", "").await;
    let (head, body) = read_response(&mut stream, 1024, Duration::ZERO).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"ok\n");
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn keep_alive_outlasts_seven_idle_seconds_and_every_answer_says_nosniff() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.small_jobs_table().await;
    let config = TestConfig::new(&db.url)
        .top("interval = \"300ms\"")
        .heartbeat_rule("hb", "30m", "")
        .section("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"a-token-of-24-characters\"")
        .write(db.dir().join("jw.toml"));
    let daemon = Daemon::start(&config, &[]);
    let addr: SocketAddr = format!("127.0.0.1:{}", daemon.port).parse().expect("addr");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    send_get(&mut stream, "/healthz", "").await;
    let (head, _) = read_response(&mut stream, 1024, Duration::ZERO).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");

    // Idle for longer than the header timeout, well within the 75 s keep-alive.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let answers = [
        ("/healthz", "", "200"),
        ("/metrics", "", "200"),
        ("/", "", "200"),
        ("/no/such/endpoint", "", "404"),
        ("/api/v1/pause", "", "405"),
    ];
    for (path, extra, code) in answers {
        send_get(&mut stream, path, extra).await;
        let (head, _) = read_response(&mut stream, 64 * 1024, Duration::ZERO).await;
        assert!(
            head.starts_with(&format!("http/1.1 {code}")),
            "{path}: {head}"
        );
        assert!(
            head.contains("x-content-type-options: nosniff"),
            "{path}: {head}"
        );
    }
    // A refused write and a wrong Host say it too.
    let client = reqwest::Client::new();
    let refused = client
        .post(daemon.url("/api/v1/pause"))
        .bearer_auth("not-the-token-at-all-no")
        .json(&serde_json::json!({"for": "1m"}))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(refused.headers()["x-content-type-options"], "nosniff");
    let misdirected = client
        .get(daemon.url("/healthz"))
        .header("Host", "evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(misdirected.status().as_u16(), 421);
    assert_eq!(misdirected.headers()["x-content-type-options"], "nosniff");
    assert_eq!(daemon.stop().await, 0);
}
