//! The daemon's HTTP side: metrics, health, the latest findings, and a token-guarded recover.
//!
//! Handlers only read what the scan loop publishes in [`Shared`]; `POST /api/v1/recover` is
//! passed to the loop as a message, so it never runs beside a scan. The listen address
//! defaults to 127.0.0.1; write endpoints answer 403 until a token is configured, 401 to a
//! wrong one (compared in constant time), and every error is a JSON `{"error": ...}`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::console;
use crate::daemon::state::{
    Ask, BulkRequest, JobRefusal, JobRequest, RecoverRequest, Select, Shared, Targets,
};

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Largest body of a bulk action: room for `[safety] max_bulk`'s default of 10,000 ids.
const MAX_BULK_BODY: usize = 2 * 1024 * 1024;
/// How long a recover request may wait for the loop (a scan in flight, then its own scan).
const RECOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a bulk action may wait for the loop: each of up to `[safety] max_bulk` rows is
/// read, and written with its intent flushed to disk first. A client that gives up earlier
/// does not stop the writes; the audit trail has them.
const BULK_TIMEOUT: Duration = Duration::from_secs(600);

/// The body of `POST /api/v1/recover`; both fields optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverBody {
    older_than: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// The routes, on shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    let base = shared.base_path();
    let routes = Router::new()
        .route("/", get(status_page))
        .route("/jobs", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route("/audit", get(audit_page))
        .route("/config", get(config_page))
        .route(
            "/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", console::STYLE) }),
        )
        .route(
            "/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", console::SCRIPT) }),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // The exporter-toolkit spellings, for tools that expect them.
        .route("/-/healthy", get(healthz))
        .route("/-/ready", get(readyz))
        .route("/api/v1/findings", get(findings))
        .route("/api/v1/recover", post(recover))
        .route("/api/v1/pause", post(pause))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/jobs/{action}", post(bulk_action))
        .route("/api/v1/jobs/{id}/{action}", post(job_action));
    // `[http] base_path` prefixes every route.
    let routes = if base.is_empty() {
        routes
    } else {
        // `/jobwarden` and `/jobwarden/` are both the status page.
        Router::new()
            .route(&format!("{base}/"), get(status_page))
            .nest(&base, routes)
    };
    routes
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            check_host,
        ))
        .layer(axum::middleware::map_response(nosniff))
        .with_state(shared)
}

/// `X-Content-Type-Options: nosniff` on every answer, errors and 404 included, so no browser
/// runs a body (a job id echoed in an error, say) as anything but its declared type.
async fn nosniff(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

/// Answers 421 to a request whose `Host` is not this listener's (see
/// [`crate::config::Http::host_allowed`]): a page in a local browser that rebinds its own
/// domain to 127.0.0.1 cannot read the endpoints.
async fn check_host(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !shared.host_allowed(host) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "this Host is not one jobwarden answers: add it to [http] allowed_hosts",
        );
    }
    next.run(request).await
}

/// Serves until `shutdown` completes, within `limits` (see [`super::server`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    limits: super::server::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let metrics = shared.metrics.http.clone();
    let tls = shared.tls.clone();
    super::server::serve(listener, router(shared), metrics, tls, limits, shutdown).await;
}

/// An HTML page, with the console's security headers.
fn html_page(markup: maud::Markup) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, console::CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        console::escape_bidi(markup.into_string()),
    )
        .into_response()
}

/// An embedded asset.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The status page, rendered off the async workers: with 10,000 findings the filter and
/// the page's sort take milliseconds, and `/healthz` and the scan loop never wait on them.
async fn status_page(
    State(shared): State<Arc<Shared>>,
    selection: Result<
        axum::extract::Query<console::Selection>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Response {
    // A query that does not parse (a repeated key) is the unfiltered page.
    let selection = selection.map(|q| q.0).unwrap_or_default();
    let health = shared.health();
    let published = shared.published();
    off_the_workers(move || {
        html_page(console::status_page(
            &health,
            published.as_deref(),
            &selection,
        ))
    })
    .await
}

/// How many heavy renders run at once: one core fewer than the machine has (at least one),
/// so page readers queue for a render instead of taking every core from the async workers
/// that answer `/healthz` and run the scan loop (20 readers of a 100,000-finding page pushed
/// `/healthz`'s p99 to a quarter of a second on 2 cores; see BENCHMARKS.md).
fn renders() -> &'static tokio::sync::Semaphore {
    static RENDERS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    RENDERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        tokio::sync::Semaphore::new(cores.saturating_sub(1).max(1))
    })
}

/// Runs a heavy render on the blocking pool, so no request waits on another's page, and no
/// more of them at once than [`renders`] allows.
async fn off_the_workers(render: impl FnOnce() -> Response + Send + 'static) -> Response {
    let Ok(_turn) = renders().acquire().await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the page could not be rendered",
        );
    };
    tokio::task::spawn_blocking(render)
        .await
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
        })
}

/// The audit entries of one job its page shows, at most (the latest).
const JOB_TRAIL_ENTRIES: usize = 10_000;
/// The audit entries `GET /audit` shows, at most.
const AUDIT_PAGE_ENTRIES: usize = 500;

/// `GET /audit?job=..&outcome=..&dry_runs=1`.
#[derive(Debug, Default, Deserialize)]
struct AuditFilter {
    job: Option<String>,
    outcome: Option<String>,
    /// Show a person's previews (dry runs) too: left out unless asked for.
    dry_runs: Option<String>,
}

/// The last `n` audit entries that `filter` wants, from the whole trail (its rotated files
/// too), read off the runtime.
async fn trail(
    shared: &Shared,
    n: usize,
    filter: crate::adapters::audit::Filter,
) -> Result<Vec<crate::adapters::audit::Entry>, Response> {
    let dir = shared.state_dir();
    let read = tokio::task::spawn_blocking(move || {
        crate::adapters::audit::last_matching(&dir, n, &filter)
    })
    .await;
    match read {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Ok(Err(e)) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the audit trail: {e}"),
        )),
        Err(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read the audit trail",
        )),
    }
}

async fn audit_page(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(filter): axum::extract::Query<AuditFilter>,
) -> Response {
    let job = filter.job.filter(|j| !j.is_empty());
    let outcome = filter.outcome.filter(|o| !o.is_empty());
    let dry_runs = filter.dry_runs.is_some_and(|v| !v.is_empty() && v != "0");
    let filter = crate::adapters::audit::Filter {
        job: job.clone(),
        outcome: outcome.clone(),
        hide_previews: !dry_runs,
    };
    let entries = match trail(&shared, AUDIT_PAGE_ENTRIES, filter).await {
        Ok(entries) => entries,
        Err(r) => return r,
    };
    // Pauses and snoozes have no outcome: shown unless one is asked for.
    let holds = match outcome {
        Some(_) => Vec::new(),
        None => {
            shared
                .holds_history(AUDIT_PAGE_ENTRIES, job.as_deref())
                .await
        }
    };
    html_page(console::audit_page(
        &shared.health(),
        job.as_deref(),
        outcome.as_deref(),
        dry_runs,
        &entries,
        &holds,
    ))
}

async fn config_page(State(shared): State<Arc<Shared>>) -> Response {
    let (config, rules) = shared.config_view();
    html_page(console::config_page(&shared.health(), &config, &rules))
}

/// `GET /jobs?class=&q=&page=`: the table's jobs of one class (`active`, the default, is
/// pending and running together; then `succeeded`, `failed`, `cancelled`), newest first,
/// [`console::JOBS_PAGE`] a page, searched by part of an id. One bounded read per request.
async fn jobs_page(
    State(shared): State<Arc<Shared>>,
    query: Result<
        axum::extract::Query<console::JobsQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Response {
    let query = query.map(|q| q.0).unwrap_or_default();
    let statuses = shared.statuses();
    let class = query.class();
    let words: Vec<String> = match class {
        None => statuses
            .pending
            .iter()
            .chain(&statuses.running)
            .cloned()
            .collect(),
        Some(c) => statuses.words(c).to_vec(),
    };
    let page = query.page();
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    // One row more than a page says whether there is a next one.
    let rows = shared
        .list_jobs(
            &words,
            q,
            console::JOBS_PAGE + 1,
            (page - 1) * console::JOBS_PAGE,
        )
        .await;
    // Which of the page's jobs have a finding in the latest scan (a pass over the findings,
    // nothing copied but the page's own ids).
    let stuck: std::collections::HashSet<String> = match (&rows, shared.latest()) {
        (Ok(rows), Some(report)) => {
            let on_page: std::collections::HashSet<&str> =
                rows.iter().map(|r| r.id.as_str()).collect();
            report
                .findings
                .iter()
                .filter(|f| on_page.contains(f.job_id.as_str()))
                .map(|f| f.job_id.clone())
                .collect()
        }
        _ => Default::default(),
    };
    html_page(console::jobs_page(
        &shared.health(),
        &query,
        &statuses,
        rows.as_deref().map_err(String::as_str),
        &stuck,
    ))
}

/// A job named by `?id=`, which wins over the path's id: the ids `.` and `..` cannot be a
/// path segment (see [`crate::core::job::job_link`]).
#[derive(Debug, Default, Deserialize)]
struct IdQuery {
    id: Option<String>,
}

async fn job_page(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<IdQuery>,
) -> Response {
    let id = query.id.unwrap_or(id);
    let report = shared.latest();
    let findings: Vec<&crate::core::detect::Finding> = report
        .iter()
        .flat_map(|r| r.findings.iter())
        .filter(|f| f.job_id == id)
        .collect();
    // A person's preview is not a write: the job's page shows what was done.
    let filter = crate::adapters::audit::Filter {
        job: Some(id.clone()),
        outcome: None,
        hide_previews: true,
    };
    let trail = match trail(&shared, JOB_TRAIL_ENTRIES, filter).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let row = shared.read_row(&id).await;
    let view = console::JobView {
        job_id: &id,
        row: &row,
        columns: &shared.columns(),
        findings: &findings,
        files: &shared.files_of(&id),
        alerts: &shared.alerts_of(&id).await,
        history: &shared.history_of(&id),
        trail: &trail,
        holds: &shared.holds_history(JOB_TRAIL_ENTRIES, Some(&id)).await,
    };
    let page = html_page(console::job_page(&shared.health(), &view));
    if console::unknown_job(&view) {
        // The page still says so, for a person who followed a stale link.
        return (StatusCode::NOT_FOUND, page).into_response();
    }
    page
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({"error": message.into()}))).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let paused = shared.paused_until().map(crate::core::job::rfc3339);
    // A standby says who leads, when the database tells.
    let leader = shared
        .leader_holder()
        .filter(|_| shared.role() == "standby");
    // A state file that cannot be saved does not stop the scans: said, not 503.
    let state_errors = shared.state_errors();
    match shared.readiness() {
        (true, _) => Json(serde_json::json!({
            "ready": true, "role": shared.role(), "leader": leader, "paused_until": paused,
            "state_errors": state_errors,
        }))
        .into_response(),
        (false, err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "ready": false,
                "role": shared.role(),
                "leader": leader,
                "paused_until": paused,
                "state_errors": state_errors,
                "error": err.unwrap_or_else(|| "no scan has reached the database yet".into()),
            })),
        )
            .into_response(),
    }
}

/// The latest report as JSON: serialized once per scan, by its first reader, off the async
/// workers (megabytes at 10,000 findings), from the shared report, never a copy of it.
async fn findings(State(shared): State<Arc<Shared>>) -> Response {
    match shared.published() {
        Some(published) => {
            off_the_workers(move || match published.json() {
                Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
                Err(e) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the findings could not be serialized: {e}"),
                ),
            })
            .await
        }
        None => error(StatusCode::SERVICE_UNAVAILABLE, "no scan has completed yet"),
    }
}

/// The bearer-token check of every write endpoint: the refusal, if any. 403 without a
/// configured token, 401 to a wrong one (compared in constant time).
fn unauthorized(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = shared.token() else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "write endpoints are disabled: set [http] token in the config",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Some(r);
    }
    None
}

/// What every write endpoint does first: the token check, then its JSON object body (empty:
/// the defaults), read only after the token passed and within the header timeout; `example`
/// shows the shape in the error.
async fn write_request<T: Default + serde::de::DeserializeOwned>(
    shared: &Shared,
    headers: &HeaderMap,
    body: axum::body::Body,
    example: &str,
) -> Result<T, Response> {
    write_request_within(shared, headers, body, example, MAX_BODY).await
}

/// [`write_request`] with a body of at most `max_body` bytes.
async fn write_request_within<T: Default + serde::de::DeserializeOwned>(
    shared: &Shared,
    headers: &HeaderMap,
    body: axum::body::Body,
    example: &str,
    max_body: usize,
) -> Result<T, Response> {
    if let Some(refused) = unauthorized(shared, headers) {
        return Err(refused);
    }
    // A body sent slowly holds a connection busy, past the idle limits: it gets as long as
    // a request's headers do.
    let read = axum::body::to_bytes(body, max_body);
    let body: Bytes = match tokio::time::timeout(super::server::HEADER_TIMEOUT, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {max_body} bytes"),
            ))
        }
        Err(_) => {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            ))
        }
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        ));
    }
    // An object, and nothing else (serde would read `[...]` into a struct too).
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v @ serde_json::Value::Object(_)) => serde_json::from_value(v)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid body: {e}"))),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("invalid body: it must be a JSON object such as {example}"),
        )),
        Err(e) => Err(error(StatusCode::BAD_REQUEST, format!("invalid body: {e}"))),
    }
}

async fn recover(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let body: RecoverBody =
        match write_request(&shared, &headers, body, "{\"older_than\": \"30m\"}").await {
            Ok(b) => b,
            Err(r) => return r,
        };
    let older_than = match body
        .older_than
        .as_deref()
        .map(crate::app::commands::parse_older_than)
    {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("older_than: {e}")),
    };
    let (reply, answer) = oneshot::channel();
    let request = RecoverRequest {
        older_than,
        dry_run: body.dry_run,
        reply,
    };
    match to_loop(&shared.recover, request, answer).await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(r) => r,
    }
}

/// Hands a request to the scan loop and waits for its answer (a scan in flight, then the
/// request's own work) within [`RECOVER_TIMEOUT`].
async fn to_loop<R, T>(
    loop_: &tokio::sync::mpsc::Sender<R>,
    request: R,
    answer: oneshot::Receiver<T>,
) -> Result<T, Response> {
    to_loop_within(loop_, request, answer, RECOVER_TIMEOUT).await
}

/// [`to_loop`], waiting at most `timeout` for the answer.
async fn to_loop_within<R, T>(
    loop_: &tokio::sync::mpsc::Sender<R>,
    request: R,
    answer: oneshot::Receiver<T>,
    timeout: Duration,
) -> Result<T, Response> {
    let stopping = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        )
    };
    if loop_.send(request).await.is_err() {
        return Err(stopping());
    }
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(stopping()),
        Err(_) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            "the daemon did not answer in time",
        )),
    }
}

/// The body of `POST /api/v1/pause`: `{"for": "30m", "reason": "..."}`; `"0s"` ends a pause.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    #[serde(rename = "for")]
    duration: Option<String>,
    /// Why, in the person's words: kept with the pause and logged.
    reason: Option<String>,
}

async fn pause(State(shared): State<Arc<Shared>>, request: axum::extract::Request) -> Response {
    let by = requester(&shared, &request);
    let (parts, body) = request.into_parts();
    let example = "{\"for\": \"30m\", \"reason\": \"...\"}";
    let body: PauseBody = match write_request(&shared, &parts.headers, body, example).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(r) = reason_too_long(body.reason.as_deref()) {
        return r;
    }
    let span = match span_for(body.duration.as_deref(), "30m", "a pause") {
        Ok(d) => d,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let reason = body.reason.unwrap_or_default();
    match shared.pause(span, reason.trim(), &by).await {
        Ok(until) => Json(serde_json::json!({
            "paused_until": until.map(crate::core::job::rfc3339),
        }))
        .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the pause could not be saved, so it was not made: {e}"),
        ),
    }
}

/// The body of `POST /api/v1/jobs/{id}/fail`, `/requeue` and `/snooze`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobBody {
    #[serde(default)]
    dry_run: bool,
    /// Snooze only: how long (`"0s"` ends a snooze).
    #[serde(rename = "for")]
    duration: Option<String>,
    /// Why, in the person's words: kept with the write or the snooze.
    reason: Option<String>,
    /// The row as the page showed it.
    seen: Option<crate::core::plan::Seen>,
}

/// `GET /api/v1/whoami`: whether the bearer token is right (the console checks it when it
/// is entered, before any button is offered), and who the daemon takes the caller for.
async fn whoami(State(shared): State<Arc<Shared>>, request: axum::extract::Request) -> Response {
    if let Some(refused) = unauthorized(&shared, request.headers()) {
        return refused;
    }
    Json(serde_json::json!({ "by": requester(&shared, &request) })).into_response()
}

/// The header the CLI names its user in (`cli:alice@host`), taken from a token holder when
/// no trusted proxy named the person.
const CLIENT_HEADER: &str = "x-jobwarden-by";
/// The longest name of a person kept.
const MAX_NAME: usize = 100;

/// Who asks, for the audit and the logs: the person, when `[http] user_header` came from a
/// trusted proxy (or the CLI named its user), and always `http` and the client's address:
/// `alice (http 10.0.0.5:51234)`, or `http 127.0.0.1:53580`.
fn requester(shared: &Shared, request: &axum::extract::Request) -> String {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let from = peer.map_or_else(|| "http".to_string(), |p| format!("http {p}"));
    let header = |name: &str| -> Option<String> {
        let value = request.headers().get(name)?.to_str().ok()?.trim();
        let clean = !value.is_empty()
            && value.chars().count() <= MAX_NAME
            && !value.chars().any(char::is_control);
        clean.then(|| value.to_string())
    };
    let proxied = shared.user_header().and_then(|(name, proxies)| {
        let peer = peer?;
        proxies
            .iter()
            .any(|c| c.contains(peer.ip()))
            .then(|| header(&name))
            .flatten()
    });
    match proxied.or_else(|| header(CLIENT_HEADER)) {
        Some(person) => format!("{person} ({from})"),
        None => from,
    }
}

/// The longest `reason` taken.
const MAX_REASON: usize = 500;

async fn job_action(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<IdQuery>,
    request: axum::extract::Request,
) -> Response {
    let id = query.id.unwrap_or(id);
    let by = requester(&shared, &request);
    let (example, verb) = match action.as_str() {
        "fail" => ("{\"dry_run\": true}", Ask::Fail),
        "requeue" => ("{\"dry_run\": true}", Ask::Requeue),
        // Its span comes with the body.
        "snooze" => (
            "{\"for\": \"2h\", \"reason\": \"...\"}",
            Ask::Snooze(Duration::ZERO),
        ),
        _ => return error(StatusCode::NOT_FOUND, "no such endpoint"),
    };
    let (parts, body) = request.into_parts();
    let body: JobBody = match write_request(&shared, &parts.headers, body, example).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(r) = reason_too_long(body.reason.as_deref()) {
        return r;
    }
    let ask = match (verb, body.duration.as_deref()) {
        (Ask::Snooze(_), text) => match span_for(text, "2h", "a snooze") {
            Ok(span) => Ask::Snooze(span),
            Err(why) => return error(StatusCode::BAD_REQUEST, why),
        },
        (ask, None) => ask,
        (_, Some(_)) => return error(StatusCode::BAD_REQUEST, "for: only snooze takes it"),
    };
    let (reply, answer) = oneshot::channel();
    let request = JobRequest {
        job_id: id,
        ask,
        dry_run: body.dry_run,
        seen: body.seen,
        reason: body.reason,
        by,
        reply,
    };
    match to_loop(&shared.jobs, request, answer).await {
        Ok(answer) => job_answer(answer),
        Err(r) => r,
    }
}

/// The answer to a job action (one job or many): the loop's JSON, or its refusal.
fn job_answer(answer: Result<serde_json::Value, JobRefusal>) -> Response {
    match answer {
        Ok(done) => Json(done).into_response(),
        Err(JobRefusal::NotFound(why)) => error(StatusCode::NOT_FOUND, why),
        Err(JobRefusal::Conflict { message, detail }) => {
            let mut answer = match detail {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            answer.insert("error".into(), message.into());
            (
                StatusCode::CONFLICT,
                Json(serde_json::Value::Object(answer)),
            )
                .into_response()
        }
        Err(JobRefusal::Unavailable(why)) => error(StatusCode::SERVICE_UNAVAILABLE, why),
        Err(JobRefusal::Invalid(why)) => error(StatusCode::BAD_REQUEST, why),
    }
}

/// The body of `POST /api/v1/jobs/fail`, `/requeue` and `/snooze` (a bulk action): exactly
/// one of `ids`, `incident` and `select` names the jobs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    ids: Option<Vec<String>>,
    incident: Option<String>,
    select: Option<Select>,
    #[serde(default)]
    dry_run: bool,
    /// The count the dry run showed: required to write.
    expect: Option<usize>,
    /// Snooze only: how long (`"0s"` ends the snoozes).
    #[serde(rename = "for")]
    duration: Option<String>,
    reason: Option<String>,
}

async fn bulk_action(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(action): axum::extract::Path<String>,
    request: axum::extract::Request,
) -> Response {
    let by = requester(&shared, &request);
    let verb = match action.as_str() {
        "fail" => Ask::Fail,
        "requeue" => Ask::Requeue,
        "snooze" => Ask::Snooze(Duration::ZERO),
        _ => return error(StatusCode::NOT_FOUND, "no such endpoint"),
    };
    let example = "{\"incident\": \"inc-1\", \"dry_run\": true}";
    let (parts, body) = request.into_parts();
    let body: BulkBody =
        match write_request_within(&shared, &parts.headers, body, example, MAX_BULK_BODY).await {
            Ok(b) => b,
            Err(r) => return r,
        };
    if let Some(r) = reason_too_long(body.reason.as_deref()) {
        return r;
    }
    let targets = match (body.ids, body.incident, body.select) {
        (Some(ids), None, None) => Targets::Ids(ids),
        (None, Some(incident), None) => Targets::Incident(incident),
        (None, None, Some(select)) if select.is_empty() => {
            return error(
                StatusCode::BAD_REQUEST,
                "select: name at least one of kind, rule, status, phase",
            )
        }
        (None, None, Some(select)) => Targets::Select(select),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "name the jobs with exactly one of ids, incident or select, such as {example}"
                ),
            )
        }
    };
    let ask = match (verb, body.duration.as_deref()) {
        (Ask::Snooze(_), text) => match span_for(text, "2h", "the snoozes") {
            Ok(span) => Ask::Snooze(span),
            Err(why) => return error(StatusCode::BAD_REQUEST, why),
        },
        (ask, None) => ask,
        (_, Some(_)) => return error(StatusCode::BAD_REQUEST, "for: only snooze takes it"),
    };
    let (reply, answer) = oneshot::channel();
    let request = BulkRequest {
        ask,
        targets,
        dry_run: body.dry_run,
        expect: body.expect,
        reason: body.reason,
        by,
        reply,
    };
    match to_loop_within(&shared.bulk, request, answer, BULK_TIMEOUT).await {
        Ok(answer) => job_answer(answer),
        Err(r) => r,
    }
}

/// A body's required `for` (such as `example`; `"0s"` ends `hold`), or what is wrong with it.
fn span_for(text: Option<&str>, example: &str, hold: &str) -> Result<Duration, String> {
    let Some(text) = text else {
        return Err(format!(
            "for: missing, such as {{\"for\": \"{example}\"}} (\"0s\" ends {hold})"
        ));
    };
    crate::config::parse_hold(text).map_err(|e| format!("for: {e}"))
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A person's reason is at most [`MAX_REASON`] characters: the 400 for one that is longer.
fn reason_too_long(reason: Option<&str>) -> Option<Response> {
    reason.filter(|r| r.chars().count() > MAX_REASON).map(|_| {
        error(
            StatusCode::BAD_REQUEST,
            format!("reason: longer than {MAX_REASON} characters"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
