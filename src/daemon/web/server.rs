//! The HTTP listener: jobwarden's own accept loop around hyper, so that no client can hold
//! what the daemon needs (descriptors, tasks) and health checks answer under any number of
//! idle sockets.
//!
//! Every connection is in one of three states: answering (a handler works on a request),
//! writing (from the handler's answer until the last byte of its body has been handed to the
//! socket) or idle (no request yet, or between keep-alive requests). A handler is bounded by
//! its own timeouts; a response being written by [`Limits::write_timeout`], so a slow reader
//! gets the whole body and a stalled one cannot hold the connection for ever. An idle
//! connection is closed after [`Limits::header_timeout`] if it never completed a request (a
//! slow or silent client; the TLS handshake counts against the same time) and after
//! [`Limits::idle_timeout`] between requests, counted from the response's last byte. Each
//! deadline is worked out again whenever the state changes, never once per connection.
//! At most [`Limits::max_connections`] are open at once: a new one beyond the cap closes the
//! oldest idle one (never-served first), and is itself refused only when every open
//! connection is busy. Each of these is counted in the `jobwarden_http_connections*` metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, Instant};
use tower::ServiceExt;

use crate::adapters::tls::Tls;
use crate::daemon::metrics::HttpMetrics;

/// A connection that has not completed a request (TLS handshake included) is closed after
/// this long.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A keep-alive connection with no request in flight is closed after this long (Prometheus
/// scrapes every 15 s to 1 min by default, so its connection is reused).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// A response is written within this long, however slowly its client reads (a 5 MB page
/// at 50 KB/s takes 100 s); after it, the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// The most connections open at once, before the descriptor budget (see [`Limits::for_process`]).
pub const MAX_CONNECTIONS: usize = 256;
/// Pause after a failed `accept` (out of descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long connections may finish their requests at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What one client may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The defaults, with the cap at a quarter of the open-file limit when that is lower, so
    /// the database pools, the artifact watches, the state files and the alert clients
    /// always have descriptors left.
    pub fn for_process() -> Limits {
        let budget = raise_open_files() / 4;
        Limits {
            header_timeout: HEADER_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_connections: MAX_CONNECTIONS.min(budget.max(16)),
        }
    }
}

/// Raises the soft open-file limit to the hard one (as the unit's `LimitNOFILE=` does) and
/// returns the soft limit in force.
fn raise_open_files() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
struct Conn {
    activity: Mutex<Activity>,
    /// Woken when the connection's deadline may have moved (see [`Activity::deadline`]).
    changed: Notify,
    /// Set by the accept loop to close it at the cap.
    evict: Notify,
}

/// What a connection is doing, which decides its deadline.
#[derive(Debug)]
struct Activity {
    /// Requests in progress: from the service call until their response body is produced.
    requests: usize,
    /// Since when a response is being written: from the handler's answer until its last byte
    /// has been handed to the socket (hyper's buffer flushed).
    writing_since: Option<Instant>,
    /// Whether a request has been answered on it.
    served: bool,
    /// When it last went idle (accepted, or a response was fully written).
    idle_since: Instant,
}

impl Activity {
    /// Busy: answering a request or writing its response. Only an idle connection is evicted.
    fn busy(&self) -> bool {
        self.requests > 0 || self.writing_since.is_some()
    }

    /// When the connection is closed if nothing changes, and why; `None` while a handler
    /// works on a request (its own timeouts bound it).
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Closed)> {
        if let Some(since) = self.writing_since {
            Some((since + limits.write_timeout, Closed::WriteTimeout))
        } else if self.requests > 0 {
            None
        } else if self.served {
            Some((self.idle_since + limits.idle_timeout, Closed::IdleTimeout))
        } else {
            Some((
                self.idle_since + limits.header_timeout,
                Closed::HeaderTimeout,
            ))
        }
    }
}

impl Conn {
    fn new() -> Conn {
        Conn {
            activity: Mutex::new(Activity {
                requests: 0,
                writing_since: None,
                served: false,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
            evict: Notify::new(),
        }
    }

    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` and wakes the connection's loop to look at its deadline again.
    fn change(&self, change: impl FnOnce(&mut Activity)) {
        change(&mut self.activity());
        self.changed.notify_one();
    }

    /// A request reached the service.
    fn request_started(&self) {
        self.change(|a| a.requests += 1);
    }

    /// Its handler answered: the response starts being written.
    fn answered(&self) {
        self.change(|a| {
            a.writing_since.get_or_insert_with(Instant::now);
        });
    }

    /// Its response body was produced (or dropped); what hyper still buffers is written
    /// until the next completed flush.
    fn request_done(&self) {
        self.change(|a| {
            a.requests -= 1;
            a.served = true;
        });
    }

    /// A flush completed: everything hyper had was handed to the socket. With no request in
    /// progress the response is whole, and the connection is idle from now.
    fn flushed(&self) {
        let mut a = self.activity();
        if a.requests == 0 && a.writing_since.is_some() {
            a.writing_since = None;
            a.idle_since = Instant::now();
            drop(a);
            self.changed.notify_one();
        }
    }
}

/// Holds a connection's request in progress until its response body is produced.
struct InProgress(Arc<Conn>);

impl InProgress {
    fn new(conn: &Arc<Conn>) -> InProgress {
        conn.request_started();
        InProgress(conn.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

/// A response body that keeps its request in progress until its last frame (or its drop).
struct Tracked {
    inner: axum::body::Body,
    in_progress: Option<InProgress>,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.in_progress = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket (after TLS), reporting completed flushes to its connection.
struct Watched<I> {
    io: I,
    conn: Arc<Conn>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.conn.flushed();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The open connections, oldest first.
#[derive(Debug, Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Arc<Conn>>,
}

impl Table {
    /// Makes room for one more under `cap`: closes the oldest idle connection that never
    /// completed a request, else the oldest idle one. False when every one is busy.
    fn make_room(&mut self, cap: usize) -> bool {
        if self.open.len() < cap {
            return true;
        }
        let never_served = |c: &Arc<Conn>| {
            let a = c.activity();
            !a.busy() && !a.served
        };
        let idle = |c: &Arc<Conn>| !c.activity().busy();
        let victim = self
            .open
            .iter()
            .find(|(_, c)| never_served(c))
            .or_else(|| self.open.iter().find(|(_, c)| idle(c)))
            .map(|(&id, _)| id);
        match victim.and_then(|id| self.open.remove(&id)) {
            Some(conn) => {
                conn.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn add(&mut self) -> (u64, Arc<Conn>) {
        let conn = Arc::new(Conn::new());
        self.next += 1;
        self.open.insert(self.next, conn.clone());
        (self.next, conn)
    }
}

/// How a connection ended, for the `reason` label of `jobwarden_http_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// The client closed it, or it failed (not counted).
    Client,
    HeaderTimeout,
    IdleTimeout,
    WriteTimeout,
    Evicted,
    TlsHandshake,
}

impl Closed {
    fn label(self) -> Option<&'static str> {
        match self {
            Closed::Client => None,
            Closed::HeaderTimeout => Some("header_timeout"),
            Closed::IdleTimeout => Some("idle_timeout"),
            Closed::WriteTimeout => Some("write_timeout"),
            Closed::Evicted => Some("evicted"),
            Closed::TlsHandshake => Some("tls_handshake"),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, within `limits`, over TLS while
/// `tls` holds an acceptor.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    metrics: HttpMetrics,
    tls: Arc<Tls>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: the backlog waits in the kernel meanwhile.
                        tracing::warn!("http: accept failed: {e}");
                        sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let (id, conn) = {
                    let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
                    if !table.make_room(limits.max_connections) {
                        metrics.refused.inc();
                        continue;
                    }
                    let added = table.add();
                    // The slots taken: an evicted connection gives its slot up at once.
                    metrics.open.set(table.open.len() as i64);
                    added
                };
                let acceptor = tls.get();
                let router = router.clone();
                let table = table.clone();
                let metrics = metrics.clone();
                let stop = stop_rx.clone();
                tasks.spawn(async move {
                    let closed = match acceptor {
                        None => connection(stream, peer, router, &conn, limits, stop).await,
                        Some(acceptor) => {
                            let deadline = conn.activity().idle_since + limits.header_timeout;
                            match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => connection(stream, peer, router, &conn, limits, stop).await,
                                Ok(Err(e)) => {
                                    tracing::debug!("http: TLS handshake with {peer} failed: {e}");
                                    Closed::TlsHandshake
                                }
                                Err(_) => Closed::TlsHandshake,
                            }
                        }
                    };
                    {
                        let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
                        table.open.remove(&id);
                        metrics.open.set(table.open.len() as i64);
                    }
                    if let Some(reason) = closed.label() {
                        metrics.closed.with_label_values(&[reason]).inc();
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// Serves one connection until the client closes it, a limit closes it, or shutdown.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    conn: &Arc<Conn>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> Closed
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let in_progress = InProgress::new(&conn);
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                in_progress.0.answered();
                response.map(|r| {
                    r.map(|inner| {
                        axum::body::Body::new(Tracked {
                            inner,
                            in_progress: Some(in_progress),
                        })
                    })
                })
            }
        })
    };
    let io = Watched {
        io,
        conn: conn.clone(),
    };
    let http =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::pin!(http);
    let mut stopping = false;
    loop {
        let deadline = conn.activity().deadline(&limits);
        tokio::select! {
            _ = http.as_mut() => return Closed::Client,
            _ = conn.evict.notified() => return Closed::Evicted,
            _ = conn.changed.notified() => {}
            _ = stop.changed(), if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
            _ = sleep_until(deadline.map_or_else(Instant::now, |(at, _)| at)), if deadline.is_some() => {
                // The state may have changed meanwhile: close only on a deadline still due.
                match conn.activity().deadline(&limits) {
                    Some((at, why)) if Instant::now() >= at => return why,
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(states: &[(bool, bool)]) -> Table {
        let mut t = Table::default();
        for &(busy, served) in states {
            let (_, c) = t.add();
            c.change(|a| {
                a.requests = usize::from(busy);
                a.served = served;
            });
        }
        t
    }

    #[tokio::test]
    async fn room_is_made_from_the_oldest_idle_never_served_connection() {
        // busy, idle+served, idle+never served, idle+never served
        let mut t = table(&[(true, true), (false, true), (false, false), (false, false)]);
        assert!(t.make_room(4));
        assert_eq!(t.open.keys().copied().collect::<Vec<_>>(), [1, 2, 4]);
        assert!(t.make_room(3));
        assert_eq!(t.open.keys().copied().collect::<Vec<_>>(), [1, 2]);
        // Then the served idle one; never the busy one.
        assert!(t.make_room(2));
        assert_eq!(t.open.keys().copied().collect::<Vec<_>>(), [1]);
        assert!(!t.make_room(1));
        assert!(t.make_room(2), "under the cap there is room");
    }

    fn limits() -> Limits {
        Limits {
            header_timeout: HEADER_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_connections: 4,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_follows_the_connection_through_a_request() {
        let limits = limits();
        let conn = Arc::new(Conn::new());
        let start = Instant::now();
        let deadline = |c: &Conn| c.activity().deadline(&limits);
        assert_eq!(
            deadline(&conn),
            Some((start + HEADER_TIMEOUT, Closed::HeaderTimeout))
        );
        // A handler at work has no deadline of ours, however long it takes.
        let in_progress = InProgress::new(&conn);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(deadline(&conn), None);
        // Its response is being written from the answer on, body and buffered tail alike.
        conn.answered();
        let answered = Instant::now();
        conn.flushed();
        drop(in_progress);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            deadline(&conn),
            Some((answered + WRITE_TIMEOUT, Closed::WriteTimeout))
        );
        // The last flush makes it idle, counted from then.
        conn.flushed();
        assert_eq!(
            deadline(&conn),
            Some((Instant::now() + IDLE_TIMEOUT, Closed::IdleTimeout))
        );
    }

    /// Serves `body` at `/` on a loopback port with `limits`; its address and metrics.
    async fn serving(body: Vec<u8>, limits: Limits) -> (SocketAddr, HttpMetrics) {
        let metrics = crate::daemon::metrics::Metrics::new(prometheus::Registry::new())
            .expect("metrics")
            .http;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route(
            "/",
            axum::routing::get(move || {
                let body = body.clone();
                async move { body }
            }),
        );
        tokio::spawn(serve(
            listener,
            router,
            metrics.clone(),
            Arc::new(Tls::default()),
            limits,
            std::future::pending(),
        ));
        (addr, metrics)
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_reading_is_cut_off_at_the_write_timeout() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let limits = Limits {
            write_timeout: Duration::from_secs(30),
            ..limits()
        };
        let (addr, metrics) = serving(vec![b'x'; 8 << 20], limits).await;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let mut client = socket.connect(addr).await.expect("connect");
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .expect("send");
        // The client reads nothing: the answer waits on the socket, and the paused clock
        // moves on while the runtime has nothing else to do. Well past the idle timeouts
        // of old (5 s), the connection is still open while the write timeout runs.
        let closed = || metrics.closed.with_label_values(&["write_timeout"]).get();
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(closed(), 0, "closed before the write timeout");
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(closed(), 1, "not closed at the write timeout");
        // What the client reads now ends short of the 8 MiB answer.
        let mut got = Vec::new();
        let _ = client.read_to_end(&mut got).await;
        assert!(got.len() < 8 << 20, "{} bytes", got.len());
        assert_eq!(metrics.open.get(), 0);
    }
}
