//! The operator's console: server-rendered pages over what the scan loop publishes.
//!
//! `GET /` is the status page (and the exporter landing page: name, version, links to
//! `/metrics` and `/api/v1/findings`); `GET /jobs/{id}` one job's findings and its audit
//! trail. Pages are rendered by maud (compiled templates: every value from the jobs table is
//! escaped by the template itself), with one embedded stylesheet and one embedded script that
//! reloads the page every few seconds while the tab is visible; without JavaScript the page
//! is the same, minus the refresh. A `Content-Security-Policy` allows only those two assets.
//! Every link honours `[http] base_path`.
//!
//! The pages never scan. With `[http] token` set they carry each finding's actions (mark as
//! failed, re-queue, snooze) hidden: the script shows them once the operator has given the
//! token (kept in the tab's session storage, sent as a bearer header; no cookies), runs each
//! as a dry run first, shows the exact statement, and writes only on confirmation. Without a
//! token, or without JavaScript, the pages have no buttons at all. An open incident carries
//! the same three for all its jobs (the bulk endpoints, which take the count the dry run
//! showed).
//!
//! The status page stays small whatever the scan found: incidents first (what holds each
//! back said once), then one page of [`PAGE_ROWS`] findings, filtered by the query, with
//! counts per kind and rule. Only that page's rows are sorted and rendered.

use maud::{html, Markup, DOCTYPE};

use crate::adapters::alerts::book;
use crate::adapters::audit;
use crate::app::scan::Report;
use crate::config::Rule;
use crate::core::detect::{format_age, Finding, Kind};
use crate::core::holds::Snooze;
use crate::core::incident::View;
use crate::core::pattern::ArtifactFile;
use crate::core::vocabulary::{Action, Severity};
use crate::daemon::state::{Change, Health, Published, RowRead, What};

/// The policy every page is served with: nothing but this listener's own assets.
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                       connect-src 'self'; base-uri 'none'; form-action 'self'; \
                       frame-ancestors 'none'";

/// The stylesheet, embedded in the binary.
pub const STYLE: &str = include_str!("console.css");
/// The refresh script, embedded in the binary.
pub const SCRIPT: &str = include_str!("console.js");

/// Bidirectional controls (embeddings, overrides, isolates, marks): a job id, a reason or a
/// file name holding one would reorder what the page shows around it (`report-\u{202E}fdp.exe` shows as `report-exe.pdf`).
const BIDI_CONTROLS: &[char] = &[
    '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}',
    '\u{2067}', '\u{2068}', '\u{2069}',
];

/// A rendered page with every bidirectional control made harmless: shown as its escape
/// (`\u{202E}`) in text, and kept as a character reference inside tags, so an attribute that
/// carries a job id to the script (`data-job`) still carries the id itself. maud escapes `<`,
/// `>` and `"` in values, so a `<` or `>` in the page is always the template's own.
pub fn escape_bidi(page: String) -> String {
    if !page.contains(BIDI_CONTROLS) {
        return page;
    }
    let mut out = String::with_capacity(page.len() + 64);
    let mut in_tag = false;
    for c in page.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ => {}
        }
        if BIDI_CONTROLS.contains(&c) {
            let code = u32::from(c);
            if in_tag {
                out.push_str(&format!("&#x{code:X};"));
            } else {
                out.push_str(&format!("\\u{{{code:X}}}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The status page: the incidents, then one page of the findings that `selection` wants.
pub fn status_page(
    health: &Health,
    published: Option<&Published>,
    selection: &Selection,
) -> Markup {
    let base = health.base.as_str();
    page(
        base,
        "jobwarden",
        html! {
            header {
                h1 { "jobwarden" }
                span class="version" { "v" (env!("CARGO_PKG_VERSION")) }
                @if let Some(env) = &health.environment {
                    span class="badge env" { (env) }
                }
                nav {
                    a href={(base) "/jobs"} { "jobs" }
                    a href={(base) "/audit"} { "audit" }
                    a href={(base) "/config"} { "config" }
                    a href={(base) "/metrics"} { "metrics" }
                    a href={(base) "/api/v1/findings"} { "findings JSON" }
                }
            }
            (health_strip(health))
            (action_panels(health))
            @match published {
                None => p class="empty" { "No scan has completed yet." },
                Some(published) => (findings_section(health, published, selection)),
            }
            (snoozes_section(health))
        },
    )
}

/// What one job's page shows.
#[derive(Debug)]
pub struct JobView<'a> {
    pub job_id: &'a str,
    /// The row, read for this page.
    pub row: &'a RowRead,
    /// The configured columns: config key and column name.
    pub columns: &'a [(String, String)],
    /// Its findings in the latest scan.
    pub findings: &'a [&'a Finding],
    /// Its files under each artifact root (the root's name, the files).
    pub files: &'a [(String, Vec<ArtifactFile>)],
    /// Its alerts in the alert book.
    pub alerts: &'a [book::Entry],
    /// Its findings appearing and clearing since this process started.
    pub history: &'a [Change],
    /// Every audit entry about it.
    pub trail: &'a [audit::Entry],
    /// Its snoozes, and the pauses of every write, as the audit trail kept them.
    pub holds: &'a [audit::Hold],
}

/// One job's page: its findings, its row as read now, its files, and a timeline of what
/// jobwarden knows of it. A job that is no longer active (or never was) has a page too.
pub fn job_page(health: &Health, view: &JobView<'_>) -> Markup {
    let base = health.base.as_str();
    let job_id = view.job_id;
    let timeline = timeline(view);
    page(
        base,
        &format!("job {job_id} · jobwarden"),
        html! {
            header {
                h1 { a href={(base) "/"} { "jobwarden" } " · job " code { (job_id) } }
                @if let Some(url) = &health.job_url {
                    nav { a href=(url.replace("{job_id}", &crate::core::job::url_segment(job_id))) { "open in the application" } }
                }
            }
            p class="headline" { (headline(view)) }
            (action_panels(health))
            @if let Some(s) = health.snoozes.get(job_id) {
                p class="warn" {
                    (snooze_note(s))
                    @if health.actions { " " (end_snooze(job_id)) }
                }
            }
            section {
                h2 { "Findings" }
                @if view.findings.is_empty() {
                    p class="empty" { "No finding in the last scan." }
                } @else {
                    (findings_table(health, view.findings, &[]))
                }
            }
            section {
                h2 { "Row" }
                (row_table(view))
            }
            @if !view.files.is_empty() {
                section {
                    h2 { "Files" }
                    @for (root, files) in view.files {
                        h3 { (root) }
                        @if files.is_empty() {
                            p class="empty" { "No file of this job." }
                        } @else {
                            ul class="files" {
                                @for f in files {
                                    li {
                                        code { (f.path) } " · " (f.size) " bytes · changed " (format_age(f.age)) " ago"
                                        @if f.partial { " · " span class="held" { "partial" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Timeline" }
                @if timeline.is_empty() {
                    p class="empty" { "jobwarden has written nothing about this job." }
                } @else {
                    ol class="timeline" {
                        @for (at, item) in &timeline {
                            li { time { (crate::core::job::rfc3339(*at)) } " " (item) }
                        }
                    }
                }
            }
        },
    )
}

/// Whether jobwarden knows nothing of the job: the table has no such row and no finding,
/// change or audit entry names it (the page answers 404).
pub fn unknown_job(view: &JobView<'_>) -> bool {
    matches!(view.row, RowRead::Missing)
        && view.findings.is_empty()
        && view.history.is_empty()
        && view.trail.is_empty()
        && view.alerts.is_empty()
        && !view.holds.iter().any(|h| h.job_id.is_some())
}

/// The job's story in one line: its state now, then the last write jobwarden made to it
/// (when, by which rule, who asked) or what is wrong with it as of the last scan.
/// "failed · failed by jobwarden at 2026-12-03T15:34:00Z, rule stalled-heartbeat, asked by
/// alice (http 10.0.0.5:51234)".
fn headline(view: &JobView<'_>) -> String {
    if unknown_job(view) {
        return "no such job: the table has no row with this id (within [jobs] where), and jobwarden has never found or written it".into();
    }
    let state = match view.row {
        RowRead::Row(row, _) => row.status.clone(),
        RowRead::Missing => "not in the table".to_string(),
        RowRead::Unread(_) => "state unknown (the row could not be read)".to_string(),
    };
    let last_write = view
        .trail
        .iter()
        .rev()
        .find(|e| e.outcome == audit::Recorded::Applied);
    let story = if let Some(e) = last_write {
        let verb = match e.action {
            Action::Requeue => "re-queued",
            _ => "failed",
        };
        let mut s = format!(
            "{verb} by jobwarden at {} ({} → {}), rule {}",
            e.time, e.status_before, e.status_after, e.rule
        );
        match &e.requested_by {
            Some(by) => s.push_str(&format!(", asked by {by}")),
            None => s.push_str(", on its own"),
        }
        if let Some(why) = &e.reason {
            s.push_str(&format!(": {why}"));
        }
        if let Some(b) = &e.batch {
            s.push_str(&format!(" (bulk {b})"));
        }
        Some(s)
    } else {
        None
    };
    let wrong = view
        .findings
        .first()
        .map(|f| format!("{}: {}", f.kind.as_str(), f.message));
    match (story, wrong) {
        (Some(story), Some(wrong)) => format!("{state} · {story}; now {wrong}"),
        (Some(story), None) => format!("{state} · {story}"),
        (None, Some(wrong)) => format!("{state} · {wrong}"),
        (None, None) => format!("{state} · nothing wrong as of the last scan"),
    }
}

/// A `?page=` as the form sends it: a number from 1 (at most a million), else 1.
fn page_number(text: Option<&str>) -> usize {
    text.and_then(|p| p.trim().parse::<usize>().ok())
        .filter(|&p| p >= 1)
        .unwrap_or(1)
        .min(1_000_000)
}

/// A page's link: `path` with each (name, value) percent-encoded, and `page` when past the
/// first.
fn page_link(path: &str, pairs: &[(&str, &str)], page: usize) -> String {
    let mut query: Vec<String> = pairs
        .iter()
        .map(|(n, v)| format!("{n}={}", crate::core::job::url_segment(v)))
        .collect();
    if page > 1 {
        query.push(format!("page={page}"));
    }
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Jobs on one page of `GET /jobs`.
pub const JOBS_PAGE: usize = 100;

/// `GET /jobs?class=&q=&page=`, as the form sends it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct JobsQuery {
    /// `active` (the default: pending and running), `succeeded`, `failed` or `cancelled`
    /// (or `pending`, `running` alone).
    pub class: Option<String>,
    /// Part of an id.
    pub q: Option<String>,
    pub page: Option<String>,
}

impl JobsQuery {
    /// The class asked for; `None` is the active jobs (pending and running).
    pub fn class(&self) -> Option<crate::core::vocabulary::StatusClass> {
        let asked = self.class.as_deref().map(str::trim).unwrap_or_default();
        crate::core::vocabulary::StatusClass::ALL
            .into_iter()
            .find(|c| c.as_str() == asked)
    }

    /// The page asked for, from 1.
    pub fn page(&self) -> usize {
        page_number(self.page.as_deref())
    }

    fn link(&self, base: &str, class: Option<&str>, page: usize) -> String {
        let q = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        let pairs: Vec<(&str, &str)> = [("class", class), ("q", q)]
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| (name, v)))
            .collect();
        page_link(&format!("{base}/jobs"), &pairs, page)
    }
}

/// The table's jobs of one class, newest first, a page at a time (`rows` holds one more than
/// a page when there is a next one), each linked to its page; `stuck` are the ids with a
/// finding in the latest scan.
pub fn jobs_page(
    health: &Health,
    query: &JobsQuery,
    statuses: &crate::core::vocabulary::Statuses,
    rows: Result<&[crate::core::job::JobRow], &str>,
    stuck: &std::collections::HashSet<String>,
) -> Markup {
    use crate::core::vocabulary::StatusClass;
    let base = health.base.as_str();
    let current = query.class();
    let tabs: Vec<(Option<StatusClass>, &str)> = std::iter::once((None, "active"))
        .chain(
            [
                StatusClass::Succeeded,
                StatusClass::Failed,
                StatusClass::Cancelled,
            ]
            .into_iter()
            .filter(|c| !statuses.words(*c).is_empty())
            .map(|c| (Some(c), c.as_str())),
        )
        .collect();
    let class_name = current.map(StatusClass::as_str);
    let page_no = query.page();
    let stamp = |s: &crate::core::job::Stamp| match s {
        crate::core::job::Stamp::At(t) => crate::core::job::rfc3339(*t),
        _ => "—".to_string(),
    };
    page(
        base,
        "jobs · jobwarden",
        html! {
            header {
                h1 { a href={(base) "/"} { "jobwarden" } " · jobs" }
            }
            nav class="counts" {
                p {
                    @for (i, (class, name)) in tabs.iter().enumerate() {
                        @if i > 0 { " · " }
                        @if *class == current { strong { (name) } }
                        @else { a href=(query.link(base, class.map(StatusClass::as_str), 1)) { (name) } }
                    }
                }
            }
            form method="get" action={(base) "/jobs"} class="filter" {
                @if let Some(c) = class_name { input type="hidden" name="class" value=(c); }
                label { "job id " input type="search" name="q" value=[query.q.as_deref()] placeholder="part of an id"; }
                " " button type="submit" { "Search" }
            }
            @match rows {
                Err(why) => p class="warn" { "The jobs could not be read: " (why) },
                Ok(rows) if rows.is_empty() => p class="empty" { "No job matches." },
                Ok(rows) => {
                    div class="scroll" { table class="jobs" {
                        thead { tr { th { "job" } th { "status" } th { "phase" } th { "created" } th { "last heartbeat" } th { "" } } }
                        tbody {
                            @for r in rows.iter().take(JOBS_PAGE) {
                                tr {
                                    td { a href=(crate::core::job::job_link(&format!("{base}/jobs/"), &r.id, "")) { code { (r.id) } } }
                                    td { (r.status) }
                                    td { (r.phase.as_deref().unwrap_or("—")) }
                                    td { (stamp(&r.created_at)) }
                                    td { (stamp(&r.heartbeat_at)) }
                                    td { @if stuck.contains(&r.id) { span class="held" { "finding" } } }
                                }
                            }
                        }
                    } }
                    nav class="pages" {
                        @if page_no > 1 { a rel="prev" href=(query.link(base, class_name, page_no - 1)) { "← previous" } " " }
                        "page " (page_no)
                        @if rows.len() > JOBS_PAGE { " " a rel="next" href=(query.link(base, class_name, page_no + 1)) { "next →" } }
                    }
                }
            }
        },
    )
}

/// The longest value shown whole; longer ones are cut, the rest folded.
const VALUE_SHOWN: usize = 200;

/// The row as read, configured columns only.
fn row_table(view: &JobView<'_>) -> Markup {
    let (row, detail) = match view.row {
        RowRead::Row(row, detail) => (row, detail),
        RowRead::Missing => {
            return html! { p class="empty" { "The table has no row with this id (within [jobs] where)." } }
        }
        RowRead::Unread(why) => {
            return html! { p class="warn" { "The row could not be read: " (why) } }
        }
    };
    let stamp = |s: &crate::core::job::Stamp| match s {
        crate::core::job::Stamp::At(t) => Some(crate::core::job::rfc3339(*t)),
        crate::core::job::Stamp::Missing => None,
        crate::core::job::Stamp::Invalid(raw) => {
            Some(format!("{raw} (not a time jobwarden can read)"))
        }
    };
    let values: Vec<(&str, Option<String>)> = vec![
        ("jobs.id", Some(row.id.clone())),
        ("jobs.status", Some(row.status.clone())),
        ("jobs.created_at", stamp(&row.created_at)),
        ("jobs.heartbeat_at", stamp(&row.heartbeat_at)),
        ("jobs.status_since", stamp(&row.status_since)),
        ("jobs.progress", row.progress.clone()),
        ("jobs.phase", row.phase.clone()),
        ("jobs.parent_id", row.parent_id.clone()),
        (
            "jobs.pid",
            row.pid
                .map(|p| p.to_string())
                .or_else(|| row.bad_pid.clone()),
        ),
        ("jobs.host", row.host.clone()),
        ("jobs.worker", row.worker.clone()),
        ("jobs.attempts", row.guard.attempts.clone()),
        ("jobs.error", detail.error.clone()),
        ("jobs.finished_at", detail.finished_at.clone()),
        ("jobs.payload", detail.payload.clone()),
    ];
    html! {
        div class="scroll" { table {
            thead { tr { th { "key" } th { "column" } th { "value" } } }
            tbody {
                @for (key, column) in view.columns {
                    @if let Some((_, value)) = values.iter().find(|(k, _)| k == key) {
                        tr { td { code { (key) } } td { code { (column) } } td { (value_cell(value.as_deref())) } }
                    }
                }
            }
        } }
    }
}

/// One value: whole when short, else cut with the rest folded; a JSON value folded and
/// pretty-printed.
fn value_cell(value: Option<&str>) -> Markup {
    let Some(value) = value else {
        return html! { span class="empty" { "NULL" } };
    };
    let json = serde_json::from_str::<serde_json::Value>(value)
        .ok()
        .filter(|v| v.is_object() || v.is_array());
    let cut: String = value.chars().take(VALUE_SHOWN).collect();
    let long = cut.len() < value.len();
    html! {
        @if let Some(json) = json {
            details { summary { code { (cut) @if long { "…" } } } pre { code { (serde_json::to_string_pretty(&json).unwrap_or_default()) } } }
        } @else if long {
            details { summary { code { (cut) "…" } } pre { code { (value) } } }
        } @else {
            code { (value) }
        }
    }
}

/// Everything jobwarden knows of the job, with its time, oldest first: the row's own
/// timestamps, findings appearing and clearing, alerts and what each sink was told, and the
/// audit trail.
fn timeline(view: &JobView<'_>) -> Vec<(f64, Markup)> {
    // Each item with its time and its place among items of the same second: a row's own
    // times, a finding appearing, its alert, the write it called for, the finding clearing,
    // the alert resolving.
    let mut items: Vec<(f64, u8, Markup)> = Vec::new();
    if let RowRead::Row(row, _) = view.row {
        for (stamp, what) in [
            (&row.created_at, "created".to_string()),
            (&row.status_since, format!("entered status {}", row.status)),
            (&row.heartbeat_at, "last heartbeat".to_string()),
        ] {
            if let crate::core::job::Stamp::At(t) = stamp {
                items.push((*t, 0, html! { span class="row" { "row: " (what) } }));
            }
        }
    }
    for c in view.history {
        let (kind, rule) = (c.key.kind.as_str(), &c.key.rule);
        let (place, item) = match &c.what {
            What::Appeared(message) => (
                1,
                html! { "finding appeared: " (kind) " (rule " (rule) "): " (message) },
            ),
            What::Cleared => (4, html! { "finding cleared: " (kind) " (rule " (rule) ")" }),
            What::Told(d) => (
                if d.state == book::State::Firing { 2 } else { 5 },
                html! {
                    "alert " (d.state.as_str()) " "
                    (if d.delivered { "delivered to " } else { "given up on by " }) (d.sink)
                    @if let Some(why) = d.reason.as_ref().filter(|_| d.state == book::State::Resolved) { ": " (why) }
                },
            ),
        };
        items.push((c.at, place, item));
    }
    // The alert book as last saved: alerts firing now (and those just resolved).
    for a in view.alerts {
        items.push((
            a.fired_at,
            2,
            html! { "alert firing: " (a.kind.as_str()) " (rule " (a.rule) ")" },
        ));
        if let Some(r) = &a.resolved {
            items.push((r.at, 5, html! { "alert resolved: " (r.reason) }));
        }
    }
    for e in view.trail {
        let at = chrono::DateTime::parse_from_rfc3339(&e.time)
            .map(|t| t.timestamp() as f64)
            .unwrap_or(0.0);
        items.push((
            at,
            3,
            html! {
                span class={"outcome " (e.outcome.as_str())} { (e.outcome.as_str()) }
                " " (e.action.as_str()) " " (e.status_before) " → " (e.status_after)
                " (" (e.kind.as_str()) ", rule " (e.rule) ", age " (format_age(e.age_seconds as f64)) ")"
                @if e.forced { " forced" }
                " by " (e.replica)
                @if let Some(who) = &e.requested_by { ", asked by " (who) }
                @if let Some(why) = &e.reason { ": " (why) }
            },
        ));
    }
    // Its snoozes, and the pauses while it lived (a pause before the row was created is not
    // its story).
    let born = match view.row {
        RowRead::Row(row, _) => match row.created_at {
            crate::core::job::Stamp::At(t) => t,
            _ => f64::NEG_INFINITY,
        },
        _ => f64::NEG_INFINITY,
    };
    for h in view.holds {
        let at = chrono::DateTime::parse_from_rfc3339(&h.time)
            .map(|t| t.timestamp() as f64)
            .unwrap_or(0.0);
        if h.job_id.is_none() && at < born {
            continue;
        }
        let what = match h.hold {
            audit::HoldKind::Pause => "every write paused",
            audit::HoldKind::Resume => "writes resumed",
            audit::HoldKind::Snooze => "snoozed",
            audit::HoldKind::Unsnooze => "snooze ended",
        };
        items.push((
            at,
            3,
            html! {
                span class="held" { (what) }
                @if let Some(until) = &h.until { " until " (until) }
                @if !h.reason.is_empty() { ": " (h.reason) }
                @if !h.by.is_empty() { ", asked by " (h.by) }
            },
        ));
    }
    // By the second (the audit trail's precision), then by that place; stable, so an audit
    // intent stays before its outcome.
    items.sort_by(|a, b| a.0.floor().total_cmp(&b.0.floor()).then(a.1.cmp(&b.1)));
    items.into_iter().map(|(at, _, item)| (at, item)).collect()
}

/// The latest audit entries, newest first, with the filter that chose them.
pub fn audit_page(
    health: &Health,
    job: Option<&str>,
    outcome: Option<&str>,
    dry_runs: bool,
    entries: &[audit::Entry],
    holds: &[audit::Hold],
) -> Markup {
    let base = health.base.as_str();
    page(
        base,
        "audit · jobwarden",
        html! {
            header {
                h1 { a href={(base) "/"} { "jobwarden" } " · audit" }
            }
            form method="get" action={(base) "/audit"} class="filter" {
                label { "job " input type="text" name="job" value=[job]; }
                label { "outcome " input type="text" name="outcome" value=[outcome]; }
                label { input type="checkbox" name="dry_runs" value="1" checked[dry_runs]; " previews too" }
                button type="submit" { "filter" }
            }
            @if entries.is_empty() {
                p class="empty" { "No audit entries match." }
            } @else {
                div class="scroll" { table {
                    thead { tr { th { "time" } th { "job" } th { "write" } th { "kind, rule, age" } th { "outcome" } th { "by" } } }
                    tbody {
                        @for e in entries.iter().rev() {
                            tr {
                                td { (e.time) }
                                td { a href=(crate::core::job::job_link(&format!("{}/jobs/", base), &e.job_id, "")) { code { (e.job_id) } } }
                                td { (e.action.as_str()) " " (e.status_before) " → " (e.status_after) @if e.forced { " (forced)" } }
                                td { (e.kind.as_str()) ", " (e.rule) ", " (format_age(e.age_seconds as f64)) }
                                td { span class={"outcome " (e.outcome.as_str())} { (e.outcome.as_str()) } }
                                td {
                                    (e.replica)
                                    @if let Some(who) = &e.requested_by { br; "asked by " (who) }
                                    @if let Some(why) = &e.reason { br; "why: " (why) }
                                }
                            }
                        }
                    }
                } }
            }
            @if !holds.is_empty() {
                h2 { "Pauses and snoozes" }
                div class="scroll" { table class="holds" {
                    thead { tr { th { "time" } th { "what" } th { "until" } th { "reason" } th { "by" } } }
                    tbody {
                        @for h in holds.iter().rev() {
                            tr {
                                td { (h.time) }
                                td {
                                    (h.hold.as_str())
                                    @if let Some(id) = &h.job_id {
                                        " " a href=(crate::core::job::job_link(&format!("{}/jobs/", base), id, "")) { code { (id) } }
                                    } @else { " (every write)" }
                                }
                                td { (h.until.as_deref().unwrap_or("—")) }
                                td { (h.reason) }
                                td { (h.by) }
                            }
                        }
                    }
                } }
            }
        },
    )
}

/// The resolved config (secrets redacted) and the rules in the order they are tried.
pub fn config_page(health: &Health, config: &serde_json::Value, rules: &[Rule]) -> Markup {
    let base = health.base.as_str();
    let pretty = serde_json::to_string_pretty(config).unwrap_or_default();
    page(
        base,
        "config · jobwarden",
        html! {
            header { h1 { a href={(base) "/"} { "jobwarden" } " · config" } }
            section {
                h2 { "Rules, in precedence order" }
                p class="empty" { "For each job and signal, the first rule that matches its status (and phase) decides." }
                div class="scroll" { table {
                    thead { tr { th { "#" } th { "rule" } th { "statuses" } th { "phases" } th { "signal" } th { "after" } th { "action" } th { "severity" } } }
                    tbody {
                        @for (n, r) in rules.iter().enumerate() {
                            tr {
                                td { (n + 1) } td { (r.name) } td { (r.statuses.join(", ")) }
                                td { (r.phases.as_ref().map(|p| p.join(", ")).unwrap_or_else(|| "any".into())) }
                                td { (r.signal.as_str()) } td { (format_age(r.after.as_secs_f64())) }
                                td { (r.action.as_str()) } td { (r.severity.as_str()) }
                            }
                        }
                    }
                } }
            }
            section {
                h2 { "Resolved config" }
                p class="empty" { "Secrets are shown as ***." }
                pre { code { (pretty) } }
            }
        },
    )
}

fn page(base: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href={(base) "/assets/console.css"};
                script src={(base) "/assets/console.js"} defer {}
            }
            body data-base=(base) { main { (body) } }
        }
    }
}

fn health_strip(h: &Health) -> Markup {
    let ok = |good: bool| if good { "good" } else { "bad" };
    html! {
        ul class="health" {
            li class=(ok(h.database_up)) { "database " (if h.database_up { "up" } else { "down" }) }
            li class=(ok(h.ready)) {
                (if h.ready { "ready" } else { "not ready" })
                @if let Some(why) = &h.not_ready { ": " (why) }
            }
            li { "last good scan "
                @match h.last_scan_age {
                    Some(age) => { (format_age(age)) " ago" @if let Some(s) = h.last_scan_seconds { ", took " (format!("{:.0} ms", s * 1000.0)) } },
                    None => "never",
                }
            }
            li class=(if h.role == "standby" { "warn" } else { "" }) {
                (h.role)
                @if let Some(leader) = h.leader.as_ref().filter(|_| h.role == "standby") { ": the leader is " (leader) }
            }
            li class=(if h.dry_run { "warn" } else { "" }) { "dry run " (if h.dry_run { "on" } else { "off" }) }
            @for e in &h.state_errors {
                li class="bad" { (e) }
            }
            @if let Some(why) = &h.holds_lost {
                li class="bad" { (crate::core::safety::HeldBack::HoldsLost(why.clone())) }
            }
            @match h.paused_until {
                Some(until) => li class="warn" {
                    "writes paused until " (crate::core::job::rfc3339(until))
                    @if let Some(note) = &h.pause {
                        @if !note.reason.is_empty() { ": " (note.reason) }
                        @if !note.by.is_empty() { " (" (note.by) ")" }
                    }
                },
                None => li { "writes not paused" },
            }
            @for (name, depth, failures) in &h.sinks {
                li class=(if *depth > 0 || *failures > 0 { "warn" } else { "" }) {
                    "alerts " (name) ": " (depth) " waiting, " (failures) " failed attempts"
                }
            }
        }
    }
}

/// Findings in one page of the status page's table: a page's weight stays bounded (about
/// 150 KB with actions) whatever the number of findings.
pub const PAGE_ROWS: usize = 100;
/// Incidents shown on the status page, at most, open ones first: `?incident=` still finds
/// the others' findings.
const INCIDENTS_SHOWN: usize = 20;
/// Distinct values a filter offers in its list (statuses, phases): a phase is the table's
/// own data, so its number has no bound of its own.
const CHOICES: usize = 50;

/// Which findings the status page's table shows: `GET /?kind=&rule=&status=&phase=&incident=&q=&page=`.
/// Every field is text as the form sends it; an empty one does not filter, and a page that
/// is not a number is the first.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Selection {
    pub kind: Option<String>,
    pub rule: Option<String>,
    pub status: Option<String>,
    pub phase: Option<String>,
    pub incident: Option<String>,
    /// Part of a job id.
    pub q: Option<String>,
    /// From 1.
    pub page: Option<String>,
}

impl Selection {
    /// The filters that are set, as (name, value), in the query's order.
    fn filters(&self) -> Vec<(&'static str, &str)> {
        [
            ("kind", &self.kind),
            ("rule", &self.rule),
            ("status", &self.status),
            ("phase", &self.phase),
            ("incident", &self.incident),
            ("q", &self.q),
        ]
        .into_iter()
        .filter_map(|(name, v)| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| (name, v))
        })
        .collect()
    }

    fn page(&self) -> usize {
        page_number(self.page.as_deref())
    }

    fn wants(&self, f: &Finding) -> bool {
        self.filters().iter().all(|(name, v)| match *name {
            "kind" => f.kind.as_str() == *v,
            "rule" => f.rule == *v,
            "status" => f.status == *v,
            "phase" => f.phase.as_deref() == Some(*v),
            "incident" => f.incident.as_deref() == Some(*v),
            _ => f.job_id.contains(*v),
        })
    }

    /// The status page's link with these filters, `set` changed (an empty value drops it),
    /// on page `page`.
    fn link(&self, base: &str, set: Option<(&str, &str)>, page: usize) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .filters()
            .into_iter()
            .filter(|(name, _)| set.is_none_or(|(s, _)| s != *name))
            .collect();
        if let Some((name, value)) = set.filter(|(_, v)| !v.is_empty()) {
            pairs.push((name, value));
        }
        page_link(&format!("{base}/"), &pairs, page)
    }
}

fn findings_section(h: &Health, published: &Published, sel: &Selection) -> Markup {
    let report = &*published.report;
    let active: u64 = report.jobs.values().sum();
    if report.findings.is_empty() {
        return html! {
            (incidents_section(h, report))
            section {
                h2 { "Findings" }
                p class="empty" {
                    "Nothing is stuck. " (active) " active jobs"
                    @for (class, n) in &report.jobs { " · " (class.as_str()) " " (n) }
                    "."
                }
            }
            (warnings_section(h, report))
        };
    }
    let base = h.base.as_str();
    let filtered = !sel.filters().is_empty();
    // The findings are in order once per scan: the unfiltered page is a slice of that order,
    // a filtered one a pass over it.
    let shown = published.by_urgency().filter(|f| !filtered || sel.wants(f));
    let matching = if filtered {
        shown.clone().count()
    } else {
        report.findings.len()
    };
    let pages = matching.div_ceil(PAGE_ROWS).max(1);
    let page = sel.page().min(pages);
    let first = (page - 1) * PAGE_ROWS;
    let rows: Vec<&Finding> = shown.skip(first).take(PAGE_ROWS).collect();
    let index = published.index();
    let (kinds, rules) = (&index.kinds, &index.rules);
    let (statuses, phases) = (&index.statuses, &index.phases);
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    html! {
        (incidents_section(h, report))
        section id="findings" {
            h2 { "Findings" }
            p {
                (report.findings.len()) " findings among " (active) " active jobs"
                @if filtered { "; " (matching) " match" }
                @if matching > rows.len() {
                    "; rows " (first + 1) "–" (first + rows.len()) " shown, critical first, then the oldest"
                }
                "."
            }
            nav class="counts" {
                (count_links(base, sel, "kind", kinds))
                (count_links(base, sel, "rule", rules))
            }
            form method="get" action={(base) "/"} class="filter" {
                label { "job id " input type="search" name="q" value=(value(&sel.q)) placeholder="part of an id"; }
                (choice("kind", kinds, sel.kind.as_deref()))
                (choice("rule", rules, sel.rule.as_deref()))
                (choice("status", statuses, sel.status.as_deref()))
                (choice("phase", phases, sel.phase.as_deref()))
                label { "incident "
                    select name="incident" {
                        option value="" { "any" }
                        @for v in report.incidents.iter().take(INCIDENTS_SHOWN) {
                            option value=(v.id) selected[sel.incident.as_deref() == Some(v.id.as_str())] { (v.id) }
                        }
                    }
                }
                " " button type="submit" { "Filter" }
                @if filtered { " " a href={(base) "/"} { "clear" } }
            }
            @if rows.is_empty() {
                p class="empty" { "No finding matches." }
            } @else {
                (findings_table(h, &rows, &report.incidents))
            }
            @if pages > 1 {
                nav class="pages" {
                    @if page > 1 { a rel="prev" href=(sel.link(base, None, page - 1)) { "← previous" } " " }
                    "page " (page) " of " (pages)
                    @if page < pages { " " a rel="next" href=(sel.link(base, None, page + 1)) { "next →" } }
                }
            }
        }
        (warnings_section(h, report))
    }
}

/// "stalled 9,812 · overdue 188": each a link that filters by it (the current one plain).
fn count_links(base: &str, sel: &Selection, name: &str, counts: &[(String, usize)]) -> Markup {
    let current = sel
        .filters()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v);
    html! {
        p {
            (name) ": "
            @for (i, (value, n)) in counts.iter().take(CHOICES).enumerate() {
                @if i > 0 { " · " }
                @if current == Some(value.as_str()) { strong { (value) " " (n) } }
                @else { a href=(sel.link(base, Some((name, value)), 1)) { (value) " " (n) } }
            }
            @if counts.len() > CHOICES { " · …" }
        }
    }
}

/// A filter's list of values (the most frequent [`CHOICES`]), the current one selected.
fn choice(name: &str, counts: &[(String, usize)], current: Option<&str>) -> Markup {
    html! {
        label { (name) " "
            select name=(name) {
                option value="" { "any" }
                @if let Some(c) = current.filter(|c| !c.is_empty() && !counts.iter().take(CHOICES).any(|(v, _)| v == c)) {
                    option value=(c) selected { (c) }
                }
                @for (value, n) in counts.iter().take(CHOICES) {
                    option value=(value) selected[current == Some(value.as_str())] { (value) " (" (n) ")" }
                }
            }
        }
    }
}

/// The incidents, open first and critical first: each with its cause, count, age, what
/// holds it back (said here once, not on each of its rows) and, with a token, the buttons
/// that act on all its jobs at once.
fn incidents_section(h: &Health, report: &Report) -> Markup {
    if report.incidents.is_empty() {
        return html! {};
    }
    let base = h.base.as_str();
    // An incident is as loud as its loudest finding.
    let mut loudest: std::collections::HashMap<&str, Severity> = std::collections::HashMap::new();
    for f in &report.findings {
        if let Some(id) = &f.incident {
            let s = loudest.entry(id.as_str()).or_insert(f.severity);
            *s = (*s).max(f.severity);
        }
    }
    let severity = |v: &View| {
        // The mass stall's own finding carries no incident: it is critical.
        if v.held_back.is_some() && v.ended_at.is_none() {
            return Some(Severity::Critical);
        }
        loudest.get(v.id.as_str()).copied()
    };
    let mut list: Vec<&View> = report.incidents.iter().collect();
    list.sort_by(|a, b| {
        a.ended_at
            .is_some()
            .cmp(&b.ended_at.is_some())
            .then(severity(b).cmp(&severity(a)))
            .then(b.opened_at.total_cmp(&a.opened_at))
    });
    let more = list.len().saturating_sub(INCIDENTS_SHOWN);
    list.truncate(INCIDENTS_SHOWN);
    let sel = Selection::default();
    html! {
        section class="incidents" id="incidents" {
            h2 { "Incidents" }
            @for v in list {
                @let sev = severity(v);
                article class={"incident" @if let Some(s) = sev { " severity-" (s.as_str()) } @if v.ended_at.is_some() { " ended" }} id={"incident-" (v.id)} {
                    h3 {
                        "Incident " code { (v.id) } ": " (v.cause)
                        @if let Some(s) = sev.filter(|_| v.ended_at.is_none()) { " " span class={"badge " (s.as_str())} { (s.as_str()) } }
                    }
                    p {
                        (v.jobs) (if v.jobs == 1 { " job" } else { " jobs" })
                        " · opened " (format_age((report.checked_at - v.opened_at).max(0.0))) " ago"
                        @if v.ended_at.is_some() { " · " (v.message) }
                        " · " a href=(sel.link(base, Some(("incident", &v.id)), 1)) { "its findings" }
                    }
                    @if let (Some(held), None) = (&v.held_back, v.ended_at) {
                        p class="held" { "held back: " (held) }
                    }
                    @if h.actions && v.ended_at.is_none() {
                        div class="actions bulk" hidden data-incident=(v.id) data-jobs=(v.jobs) {
                            button type="button" data-act="fail" { "Fail all" }
                            button type="button" data-act="requeue" { "Re-queue all" }
                            button type="button" data-act="snooze" { "Snooze all" }
                        }
                    }
                }
            }
            @if more > 0 { p class="empty" { (more) " more incidents: see " a href={(base) "/api/v1/findings"} { "the findings JSON" } "." } }
        }
    }
}

/// Rows that could not be judged.
fn warnings_section(h: &Health, report: &Report) -> Markup {
    html! {
        @if !report.warnings.is_empty() {
            section {
                h2 { "Warnings" }
                ul class="warnings" {
                    @for w in &report.warnings {
                        li {
                            @if let Some(id) = &w.job_id { a href=(crate::core::job::job_link(&format!("{}/jobs/", h.base), id, "")) { "job " (id) } ": " }
                            (w.message)
                        }
                    }
                }
            }
        }
    }
}

/// The findings' rows. What holds a finding back is said on its row, unless its incident
/// (in `incidents`) says it once for all its jobs.
fn findings_table(h: &Health, findings: &[&Finding], incidents: &[View]) -> Markup {
    let held_by_incident = |f: &Finding| {
        incidents
            .iter()
            .find(|v| f.incident.as_deref() == Some(v.id.as_str()))
            .filter(|v| v.held_back.is_some() && v.held_back == f.held)
            .map(|v| v.id.as_str())
    };
    // The mass stall's own finding says what its incident says.
    let stall_of = |f: &Finding| {
        incidents
            .iter()
            .find(|v| {
                f.kind == Kind::MassStall
                    && v.ended_at.is_none()
                    && v.held_back.as_deref() == Some(f.message.as_str())
            })
            .map(|v| v.id.as_str())
    };
    html! {
        div class="scroll" {
            table {
                thead { tr {
                    th { "job" } th { "status" } th { "phase" } th { "kind" } th { "rule" }
                    th { "age / threshold" } th { "action" } th { "outcome" } th { "why" }
                    @if h.actions { th { "act" } }
                } }
                tbody {
                    @for f in findings {
                        tr class={"severity-" (f.severity.as_str())} {
                            td {
                                @if f.job_id.is_empty() { "—" }
                                @else { a href=(crate::core::job::job_link(&format!("{}/jobs/", h.base), &f.job_id, "")) { code { (f.job_id) } } }
                            }
                            td { (f.status) }
                            td { (f.phase.as_deref().unwrap_or("—")) }
                            td { (f.kind.as_str()) }
                            td { (f.rule) }
                            td { (format_age(f.age_seconds as f64)) " / " (format_age(f.threshold_seconds as f64)) }
                            td { (f.action.as_str()) }
                            td { span class={"outcome " (f.outcome.as_str())} { (f.outcome.as_str()) } }
                            td {
                                @if let Some(id) = stall_of(f) {
                                    "writes held back: see incident " a href={"#incident-" (id)} { (id) }
                                } @else {
                                    (f.message)
                                }
                                @if let Some(o) = crate::core::detect::owner_words(f.worker.as_ref(), f.host.as_deref(), f.pid) { br; span class="owner" { (o) } }
                                @let snoozed = h.snoozes.get(&f.job_id);
                                @if let Some(s) = snoozed { br; span class="held" { (snooze_note(s)) } }
                                @if let (Some(why), None) = (&f.held, snoozed) {
                                    br;
                                    @if let Some(id) = held_by_incident(f) {
                                        span class="held" { "held back with incident " a href={"#incident-" (id)} { (id) } }
                                    } @else {
                                        span class="held" { "held back: " (why) }
                                    }
                                }
                                @for a in &f.artifacts { br; code { (a.path) } }
                            }
                            @if h.actions {
                                td { @if !f.job_id.is_empty() && f.kind != Kind::MassStall {
                                    // Only the buttons that can work on this job.
                                    div class="actions" hidden data-job=(f.job_id) data-seen=(seen_json(f)) data-status=(f.status) {
                                        @if h.offers.allows(f, Action::Fail) {
                                            button type="button" data-act="fail" { "Mark as failed" }
                                        }
                                        @if h.offers.allows(f, Action::Requeue) {
                                            button type="button" data-act="requeue" { "Re-queue" }
                                        }
                                        button type="button" data-act="snooze" { "Snooze" }
                                    }
                                } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The row as this page shows it, sent back with an action: the daemon refuses the action
/// if the row has changed since.
fn seen_json(f: &Finding) -> String {
    serde_json::to_string(&crate::core::plan::Seen::of(f)).unwrap_or_default()
}

/// "snoozed until ... by ...: reason".
fn snooze_note(s: &Snooze) -> String {
    // The words a write held back by it says, and who asked.
    let held = crate::core::safety::HeldBack::Snoozed { until: s.until };
    let mut note = format!("{held} by {}", s.by);
    if !s.reason.is_empty() {
        note.push_str(": ");
        note.push_str(&s.reason);
    }
    note
}

/// The token prompt and the preview of an action, hidden until the script shows them; only
/// on pages with actions.
fn action_panels(h: &Health) -> Markup {
    html! {
        @if h.actions {
            div id="unlock" class="panel" hidden {
                form id="unlock-form" {
                    label { "Token to act on jobs " input type="password" id="token" autocomplete="off" required; }
                    " " button type="submit" { "Unlock actions" }
                }
                p class="empty" { "Checked with the daemon, then kept in this tab only (session storage) and sent as a bearer header." }
                p id="unlock-result" {}
            }
            p id="locked" hidden { "Actions unlocked in this tab" span id="locked-as" {} ". " button type="button" id="lock" { "Lock" } }
            // The pause of every write (alerts go on): a reason and an end, or its end now.
            div class="actions pause" hidden {
                @if h.paused_until.is_some() {
                    button type="button" id="resume" { "Resume writes now" }
                } @else {
                    form id="pause-form" {
                        "Pause every write for "
                        select id="pause-for" {
                            option value="30m" { "30 minutes" }
                            option value="1h" selected { "1 hour" }
                            option value="2h" { "2 hours" }
                            option value="8h" { "8 hours" }
                        }
                        " " label { "reason " input type="text" id="pause-reason" maxlength="500" required; }
                        " " button type="submit" { "Pause writes" }
                    }
                }
                span id="pause-result" {}
            }
            div id="preview" class="panel" hidden {
                p id="preview-title" {}
                p id="preview-words" {}
                details {
                    summary { "the exact statement" }
                    pre id="preview-statement" {}
                }
                label id="preview-for-label" hidden {
                    "for "
                    select id="preview-for" {
                        option value="1h" { "1 hour" }
                        option value="2h" selected { "2 hours" }
                        option value="8h" { "8 hours" }
                        option value="24h" { "24 hours" }
                    }
                    " "
                }
                label { "reason " input type="text" id="preview-reason" maxlength="500"; }
                p {
                    button type="button" id="confirm" disabled { "Confirm" }
                    " "
                    button type="button" id="cancel" { "Cancel" }
                }
                p id="preview-result" {}
            }
        }
    }
}

/// The button that ends a job's snooze (hidden until unlocked).
fn end_snooze(job_id: &str) -> Markup {
    html! {
        span class="actions" hidden data-job=(job_id) {
            button type="button" data-act="unsnooze" { "End snooze" }
        }
    }
}

/// The snoozed jobs, each with a button to end its snooze (hidden until unlocked).
fn snoozes_section(h: &Health) -> Markup {
    html! {
        @if !h.snoozes.is_empty() {
            section {
                h2 { "Snoozed" }
                ul class="snoozes" {
                    @for (id, s) in &h.snoozes {
                        li {
                            a href=(crate::core::job::job_link(&format!("{}/jobs/", h.base), id, "")) { "job " code { (id) } } ": " (snooze_note(s))
                            @if h.actions { " " (end_snooze(id)) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::detect::{Kind, Outcome, Warning};
    use crate::core::vocabulary::{Action, Severity, StatusClass};

    /// What a table with `queued` and `running` jobs lets a person do.
    fn offers() -> crate::core::plan::Offers {
        crate::core::plan::Offers {
            statuses: crate::core::vocabulary::Statuses {
                pending: vec!["queued".into()],
                running: vec!["running".into()],
                failed: vec!["failed".into()],
                ..Default::default()
            },
            min_age: 60,
        }
    }

    fn finding(job_id: &str, message: &str) -> Finding {
        Finding {
            kind: Kind::Stalled,
            rule: "hb".into(),
            job_id: job_id.into(),
            status: "running".into(),
            phase: Some("<b>phase</b>".into()),
            age_seconds: 3900,
            threshold_seconds: 1800,
            since: 0.0,
            severity: Severity::Critical,
            action: Action::Fail,
            outcome: Outcome::Limited,
            message: message.into(),
            artifacts: vec![],
            evidence: None,
            incident: None,
            worker: None,
            host: None,
            pid: None,
            guard: Default::default(),
            progress: None,
            held: None,
        }
    }

    fn report(findings: Vec<Finding>) -> Report {
        Report {
            environment: None,
            checked_at: 0.0,
            jobs: [(StatusClass::Running, 3)].into_iter().collect(),
            findings,
            warnings: vec![Warning {
                job_id: Some("w<1>".into()),
                message: "created_at is <NULL>".into(),
            }],
            by_status: Default::default(),
            artifact_seconds: None,
            oldest_heartbeat_age: None,
            suspicion: None,
            suspicion_holds: false,
            newest_signal_age: None,
            late: Vec::new(),
            incidents: Vec::new(),
            read_in_full: 3,
            summarised: false,
        }
    }

    #[test]
    fn every_value_from_the_table_is_escaped() {
        let r = report(vec![finding(
            "<script>alert(1)</script>",
            "no heartbeat <img src=x>",
        )]);
        let html = status_page(
            &Health::default(),
            Some(&Published::new(r.clone())),
            &Selection::default(),
        )
        .into_string();
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("no heartbeat &lt;img src=x&gt;"));
        assert!(html.contains("&lt;b&gt;phase&lt;/b&gt;"));
        assert!(html.contains("created_at is &lt;NULL&gt;"));
        // The link to its page encodes the id as one path segment.
        assert!(
            html.contains("href=\"/jobs/%3Cscript%3Ealert%281%29%3C%2Fscript%3E\""),
            "{html}"
        );
    }

    #[test]
    fn a_findings_worker_is_shown_beside_its_message() {
        let mut f = finding("7", "worker 17 last beat at 14:02 (3h ago; limit 30m)");
        f.worker = Some(crate::core::detect::Owner {
            id: "<17>".into(),
            gone: Some(false),
            heartbeat_at: Some(1_767_225_600.0),
            host: Some("w-2".into()),
            pid: Some(42),
        });
        let mut gone = finding("8", "worker 19 is gone; no heartbeat for 40m (limit 30m)");
        gone.worker = Some(crate::core::detect::Owner {
            id: "19".into(),
            gone: Some(true),
            ..Default::default()
        });
        // A worker column alone (no `[workers]`), and the row's own host and pid.
        let mut held = finding("9", "no heartbeat for 40m (limit 30m)");
        held.worker = Some(crate::core::detect::Owner {
            id: "worker-3".into(),
            ..Default::default()
        });
        (held.host, held.pid) = (Some("web-1".into()), Some(4242));
        let html = status_page(
            &Health::default(),
            Some(&Published::new(report(vec![f, gone, held]))),
            &Selection::default(),
        )
        .into_string();
        assert!(
            html.contains("worker &lt;17&gt; on w-2, pid 42, last beat 2026-01-01T00:00:00Z"),
            "{html}"
        );
        assert!(html.contains("worker 19 (its row is gone)"), "{html}");
        assert!(
            html.contains("worker worker-3; the row's host web-1, pid 4242"),
            "{html}"
        );
    }

    #[test]
    fn links_and_assets_honour_the_base_path() {
        let health = Health {
            base: "/jobwarden".into(),
            ..Health::default()
        };
        let html = status_page(
            &health,
            Some(&Published::new(report(vec![finding("7", "m")]))),
            &Selection::default(),
        )
        .into_string();
        for link in [
            "href=\"/jobwarden/metrics\"",
            "href=\"/jobwarden/api/v1/findings\"",
            "href=\"/jobwarden/assets/console.css\"",
            "src=\"/jobwarden/assets/console.js\"",
            "href=\"/jobwarden/jobs/7\"",
        ] {
            assert!(html.contains(link), "{link} in {html}");
        }
        assert!(!html.contains("href=\"/metrics\""));
    }

    #[test]
    fn nothing_wrong_is_one_line_with_the_counts() {
        let html = status_page(
            &Health::default(),
            Some(&Published::new(report(vec![]))),
            &Selection::default(),
        )
        .into_string();
        assert!(
            html.contains("Nothing is stuck. 3 active jobs · running 3."),
            "{html}"
        );
        let html = status_page(&Health::default(), None, &Selection::default()).into_string();
        assert!(html.contains("No scan has completed yet."));
    }

    #[test]
    fn ages_read_as_the_findings_messages_write_them() {
        assert_eq!(format_age(42.0), "42s");
        assert_eq!(format_age(125.0), "2m 5s");
        assert_eq!(format_age(1800.0), "30m");
        assert_eq!(format_age(7200.0), "2h");
        assert_eq!(format_age(3900.0), "1h 5m");
        assert_eq!(format_age(90_000.0), "1day 1h");
    }

    #[test]
    fn a_job_page_shows_its_row_files_and_timeline_in_order() {
        use crate::core::job::{JobRow, Stamp};
        let mut row = JobRow::new("7", "running");
        row.created_at = Stamp::At(1_000.0);
        row.heartbeat_at = Stamp::At(3_000.0);
        row.progress = Some(format!(
            "{{\"steps\": [\"<script>alert(1)</script>{}\"]}}",
            "x".repeat(300)
        ));
        row.phase = Some("<i>p</i>".into());
        let columns: Vec<(String, String)> = [
            ("jobs.id", "id"),
            ("jobs.status", "state"),
            ("jobs.created_at", "created_at"),
            ("jobs.heartbeat_at", "updated_at"),
            ("jobs.progress", "meta->steps"),
            ("jobs.phase", "phase"),
        ]
        .iter()
        .map(|(k, c)| (k.to_string(), c.to_string()))
        .collect();
        let f = finding("7", "no heartbeat");
        let history = vec![Change {
            at: 2_000.0,
            key: f.key(),
            what: What::Appeared("no heartbeat for 30m".into()),
        }];
        let files = vec![(
            "reports".to_string(),
            vec![ArtifactFile {
                path: "7/report.md".into(),
                size: 12,
                age: 60.0,
                partial: true,
                required: vec![],
            }],
        )];
        let view = JobView {
            job_id: "7",
            row: &RowRead::Row(Box::new(row), Box::default()),
            columns: &columns,
            findings: &[&f],
            files: &files,
            alerts: &[],
            history: &history,
            trail: &[],
            holds: &[],
        };
        let html = job_page(&Health::default(), &view).into_string();
        assert!(
            html.contains("<code>state</code>"),
            "the column's own name: {html}"
        );
        assert!(html.contains("&lt;i&gt;p&lt;/i&gt;"), "escaped");
        assert!(
            !html.contains("<script>alert") && html.contains("&lt;script&gt;alert(1)"),
            "a metadata value is text, never markup"
        );
        assert!(html.contains("<details>"), "a long JSON value is folded");
        assert!(html.contains("7/report.md") && html.contains("partial"));
        let (created, appeared, beat) = (
            html.find("row: created"),
            html.find("finding appeared"),
            html.find("row: last heartbeat"),
        );
        assert!(
            created.is_some() && created < appeared && appeared < beat,
            "oldest first: {html}"
        );
        let missing = job_page(
            &Health::default(),
            &JobView {
                row: &RowRead::Missing,
                findings: &[],
                files: &[],
                history: &[],
                ..view
            },
        )
        .into_string();
        assert!(missing.contains("The table has no row with this id"));
    }

    #[test]
    fn a_failed_jobs_page_opens_with_who_failed_it() {
        let row = crate::core::job::JobRow {
            id: "7".into(),
            status: "failed".into(),
            created_at: crate::core::job::Stamp::At(1_000.0),
            heartbeat_at: crate::core::job::Stamp::At(1_500.0),
            status_since: crate::core::job::Stamp::Missing,
            progress: None,
            phase: None,
            parent_id: None,
            pid: None,
            bad_pid: None,
            host: None,
            worker: None,
            guard: Default::default(),
        };
        let write = audit::Entry {
            id: "w1".into(),
            stage: audit::Stage::Outcome,
            time: "2026-12-03T15:34:00Z".into(),
            environment: None,
            job_id: "7".into(),
            status_before: "running".into(),
            status_after: "failed".into(),
            action: Action::Fail,
            kind: Kind::Stalled,
            rule: "stalled-heartbeat".into(),
            age_seconds: 4000,
            threshold_seconds: 3600,
            outcome: audit::Recorded::Applied,
            replica: "host-1".into(),
            forced: false,
            recovered: false,
            requested_by: Some("alice (http 10.0.0.5:51234)".into()),
            batch: None,
            reason: None,
            statement: None,
        };
        let view = JobView {
            job_id: "7",
            row: &RowRead::Row(Box::new(row), Box::default()),
            columns: &[],
            findings: &[],
            files: &[],
            alerts: &[],
            history: &[],
            trail: &[write],
            holds: &[],
        };
        assert!(!unknown_job(&view));
        let html = job_page(&Health::default(), &view).into_string();
        assert!(
            html.contains("<p class=\"headline\">failed · failed by jobwarden at 2026-12-03T15:34:00Z (running → failed), rule stalled-heartbeat, asked by alice (http 10.0.0.5:51234)</p>"),
            "{html}"
        );
        assert!(!html.contains("Nothing is wrong"), "{html}");
        let nobody = JobView {
            row: &RowRead::Missing,
            trail: &[],
            ..view
        };
        assert!(unknown_job(&nobody));
    }

    #[test]
    fn buttons_only_with_a_token_hidden_and_carrying_the_row() {
        let mut f = finding("7", "m");
        f.guard.heartbeat = Some("2026-01-01 00:00:00".into());
        let r = report(vec![f]);
        let without = status_page(
            &Health::default(),
            Some(&Published::new(r.clone())),
            &Selection::default(),
        )
        .into_string();
        assert!(!without.contains("data-act") && !without.contains("id=\"unlock\""));
        let mut health = Health {
            actions: true,
            offers: offers(),
            ..Health::default()
        };
        health.snoozes.insert(
            "8".into(),
            Snooze {
                until: 0.0,
                reason: "<b>why</b>".into(),
                by: "http 127.0.0.1:1".into(),
            },
        );
        let with = status_page(
            &health,
            Some(&Published::new(r.clone())),
            &Selection::default(),
        )
        .into_string();
        assert!(
            with.contains("<div class=\"actions\" hidden data-job=\"7\" data-seen=\"{&quot;status&quot;:&quot;running&quot;,&quot;heartbeat&quot;:&quot;2026-01-01 00:00:00&quot;"),
            "hidden, with the row it was drawn from: {with}"
        );
        assert!(with.contains("data-act=\"fail\"") && with.contains("data-act=\"unsnooze\""));
        assert!(
            with.contains("&lt;b&gt;why&lt;/b&gt;"),
            "a snooze's reason is text"
        );
        assert!(!with.contains("fail all") && with.matches("data-act=\"fail\"").count() == 1);
    }

    #[test]
    fn only_the_buttons_that_can_work() {
        let mut pending = finding("queued-1", "m");
        pending.status = "queued".into();
        let mut finished = finding("done-1", "m");
        finished.status = "succeeded".into();
        finished.kind = Kind::MissingArtifact;
        let mut young = finding("young-1", "m");
        young.age_seconds = 30;
        let r = report(vec![finding("running-1", "m"), pending, finished, young]);
        let health = Health {
            actions: true,
            offers: offers(),
            ..Health::default()
        };
        let html =
            status_page(&health, Some(&Published::new(r)), &Selection::default()).into_string();
        let buttons = |job: &str| -> Vec<String> {
            let at = html
                .find(&format!("data-job=\"{job}\""))
                .unwrap_or_else(|| panic!("{job}'s actions: {html}"));
            let end = at + html[at..].find("</div>").expect("end of the actions");
            html[at..end]
                .match_indices("data-act=\"")
                .map(|(i, m)| {
                    let v = &html[at + i + m.len()..end];
                    v[..v.find('"').expect("quote")].to_string()
                })
                .collect()
        };
        assert_eq!(buttons("running-1"), ["fail", "requeue", "snooze"]);
        assert_eq!(buttons("queued-1"), ["fail", "snooze"], "already pending");
        assert_eq!(buttons("done-1"), ["snooze"], "a finished job");
        assert_eq!(buttons("young-1"), ["snooze"], "younger than min_age");
    }

    /// A mass stall of `n` jobs (critical, ages spread) held back by the guard, its
    /// incident, and a few warnings of another rule outside it.
    fn mass_stall(n: usize) -> Report {
        let held = format!("{n} of {} active jobs look stuck at once", n + 10);
        let mut findings: Vec<Finding> = (0..n)
            .map(|i| {
                let mut f = finding(&format!("job-{i:05}"), "no heartbeat for a while");
                f.age_seconds = 2820 + i as u64;
                f.held = Some(held.clone());
                f.incident = Some("i-1".into());
                f.guard.heartbeat = Some("2026-01-01 00:00:00".into());
                f
            })
            .collect();
        let mut stall = finding("", &held);
        stall.kind = Kind::MassStall;
        stall.rule = "safety".into();
        stall.age_seconds = 0;
        findings.push(stall);
        for i in 0..3 {
            let mut f = finding(&format!("queued-{i}"), "queued too long");
            f.kind = Kind::Overdue;
            f.rule = "queue".into();
            f.status = "queued".into();
            f.severity = Severity::Warning;
            f.age_seconds = 90_000;
            findings.push(f);
        }
        let mut r = report(findings);
        r.incidents = vec![View {
            id: "i-1".into(),
            cause: "most active jobs look stuck at once".into(),
            opened_at: -600.0,
            ended_at: None,
            jobs: n,
            held_back: Some(held),
            message: "most active jobs look stuck at once: many jobs".into(),
            ending: None,
        }];
        r
    }

    fn page_of(report: &Report, query: &[(&str, &str)]) -> String {
        let mut sel = Selection::default();
        for (k, v) in query {
            let v = Some(v.to_string());
            match *k {
                "kind" => sel.kind = v,
                "rule" => sel.rule = v,
                "status" => sel.status = v,
                "phase" => sel.phase = v,
                "incident" => sel.incident = v,
                "q" => sel.q = v,
                _ => sel.page = v,
            }
        }
        let health = Health {
            actions: true,
            offers: offers(),
            ..Health::default()
        };
        status_page(&health, Some(&Published::new(report.clone())), &sel).into_string()
    }

    /// The job ids of a page's rows, in order.
    fn rows_of(html: &str) -> Vec<&str> {
        html.split("data-job=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect()
    }

    #[test]
    fn ten_thousand_findings_make_one_light_page_incident_first_held_back_once() {
        let r = mass_stall(10_000);
        let html = page_of(&r, &[]);
        assert!(html.len() < 250_000, "{} bytes", html.len());
        assert_eq!(
            html.matches("<tr class=\"severity-").count(),
            PAGE_ROWS,
            "one page of rows"
        );
        assert_eq!(
            rows_of(&html).len(),
            PAGE_ROWS - 1,
            "the mass stall has no job"
        );
        let (incident, table) = (html.find("Incident <code>i-1</code>"), html.find("<table>"));
        assert!(
            incident.is_some() && incident < table,
            "the incident on top"
        );
        assert_eq!(
            html.matches("10000 of 10010 active jobs look stuck at once")
                .count(),
            1,
            "what holds it back, said once"
        );
        assert!(html.contains("data-incident=\"i-1\"") && html.contains(">Fail all<"));
        assert!(html.contains("10004 findings among 3 active jobs; rows 1–100 shown"));
        // Critical first, the mass stall first of them, then the oldest.
        let first = html
            .find("writes held back: see incident")
            .unwrap_or(usize::MAX);
        assert!(first < html.find("job-09999").unwrap_or(0), "{html}");
        assert_eq!(rows_of(&html)[..2], ["job-09999", "job-09998"]);
        assert!(
            html.contains("stalled 10000") && html.contains("queue 3"),
            "counts"
        );
        assert!(html.contains("href=\"/?page=2\""), "the next page");
    }

    #[test]
    fn pages_filters_and_search_choose_the_rows() {
        let r = mass_stall(250);
        let last = page_of(&r, &[("page", "3")]);
        assert_eq!(rows_of(&last).len(), 54, "251 of the stall, 3 queued: 254");
        assert!(last.contains("page 3 of 3") && last.contains("href=\"/?page=2\""));
        assert_eq!(rows_of(&last).last(), Some(&"queued-2"), "warnings last");
        // Past the end: the last page; not a number: the first.
        assert_eq!(rows_of(&page_of(&r, &[("page", "99")])), rows_of(&last));
        assert_eq!(rows_of(&page_of(&r, &[("page", "x")]))[0], "job-00249");
        let queue = page_of(&r, &[("rule", "queue")]);
        assert_eq!(rows_of(&queue), ["queued-0", "queued-1", "queued-2"]);
        assert!(
            queue.contains("<strong>queue 3</strong>"),
            "the current filter"
        );
        let overdue = page_of(&r, &[("kind", "overdue"), ("status", "queued")]);
        assert_eq!(rows_of(&overdue).len(), 3);
        let found = page_of(&r, &[("q", "job-0012")]);
        assert_eq!(rows_of(&found).len(), 10, "job-00120 to job-00129");
        let linked = page_of(&r, &[("q", "job-0"), ("page", "2")]);
        assert!(
            linked.contains("href=\"/?q=job-0\""),
            "the filter kept: {linked}"
        );
        assert!(page_of(&r, &[("incident", "i-2")]).contains("No finding matches."));
        assert_eq!(rows_of(&page_of(&r, &[("incident", "i-1")])).len(), 100);
        assert!(page_of(&r, &[("phase", "<b>phase</b>")]).contains("254 match"));
    }
}
