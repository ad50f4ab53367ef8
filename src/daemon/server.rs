//! The HTTP listener: jobwarden's own accept loop around hyper, so that no client can hold
//! what the daemon needs (descriptors, tasks) and health checks answer under any number of
//! idle sockets.
//!
//! Every connection is in one of two states: busy (a request is being answered) or idle (no
//! request yet, or between keep-alive requests). An idle connection is closed after
//! [`Limits::header_timeout`] if it never completed a request (a slow or silent client; the
//! TLS handshake counts against the same time) and after [`Limits::idle_timeout`] between
//! requests. At most [`Limits::max_connections`] are open at once: a new one beyond the cap
//! closes the oldest idle one (never-served first), and is itself refused only when every
//! open connection is busy. Each of these is counted in the `jobwarden_http_connections*`
//! metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
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
    /// Requests being answered now.
    busy: AtomicUsize,
    /// Whether a request has been answered on it.
    served: AtomicBool,
    /// When it last went idle (accepted, or a response was produced).
    idle_since: Mutex<Instant>,
    /// Set by the accept loop to close it at the cap.
    evict: Notify,
}

impl Conn {
    fn idle_since(&self) -> Instant {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn went_idle(&self) {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }
}

/// Marks a connection busy while a request is answered.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: &Arc<Conn>) -> Busy {
        conn.busy.fetch_add(1, Ordering::SeqCst);
        Busy(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.served.store(true, Ordering::SeqCst);
        self.0.went_idle();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
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
        let idle = |c: &Arc<Conn>| c.busy.load(Ordering::SeqCst) == 0;
        let victim = self
            .open
            .iter()
            .find(|(_, c)| idle(c) && !c.served.load(Ordering::SeqCst))
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
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: Mutex::new(Instant::now()),
            evict: Notify::new(),
        });
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
    Evicted,
    TlsHandshake,
}

impl Closed {
    fn label(self) -> Option<&'static str> {
        match self {
            Closed::Client => None,
            Closed::HeaderTimeout => Some("header_timeout"),
            Closed::IdleTimeout => Some("idle_timeout"),
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
                            let deadline = conn.idle_since() + limits.header_timeout;
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
            let busy = Busy::new(&conn);
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                drop(busy);
                response
            }
        })
    };
    let http =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::pin!(http);
    let mut stopping = false;
    loop {
        let deadline = if conn.busy.load(Ordering::SeqCst) > 0 {
            // Looked at again when the request is answered.
            Instant::now() + limits.header_timeout
        } else if conn.served.load(Ordering::SeqCst) {
            conn.idle_since() + limits.idle_timeout
        } else {
            conn.idle_since() + limits.header_timeout
        };
        tokio::select! {
            _ = http.as_mut() => return Closed::Client,
            _ = conn.evict.notified() => return Closed::Evicted,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
            _ = sleep_until(deadline) => {
                if conn.busy.load(Ordering::SeqCst) == 0 && Instant::now() >= deadline {
                    return if conn.served.load(Ordering::SeqCst) {
                        Closed::IdleTimeout
                    } else {
                        Closed::HeaderTimeout
                    };
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
            c.busy.store(usize::from(busy), Ordering::SeqCst);
            c.served.store(served, Ordering::SeqCst);
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
}
