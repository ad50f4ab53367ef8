//! A job as jobwarden sees it: one active row of the jobs table, reduced to the values the
//! rules look at, plus what a guarded write must compare to be sure the row has not moved.
//!
//! The store fills these from any table shape; the detection core reads them. Timestamps are
//! Unix seconds on the database's clock; a NULL or unparsable one is kept as such, so the core
//! can warn about it instead of guessing.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use crate::core::zone::Zone;

/// A point in time read from a row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stamp {
    /// NULL, or the column is not configured.
    Missing,
    /// Unix seconds.
    At(f64),
    /// A value that is not a timestamp jobwarden can read; kept for the warning.
    Invalid(String),
}

/// One active row.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// The id as text, whatever its SQL type.
    pub id: String,
    /// The table's own status word.
    pub status: String,
    pub created_at: Stamp,
    pub heartbeat_at: Stamp,
    /// When the row entered its current status, from `status_since` (else `Missing`).
    pub status_since: Stamp,
    /// The progress value as text (a counter, a JSON array...), compared for change only.
    pub progress: Option<String>,
    pub phase: Option<String>,
    pub parent_id: Option<String>,
    pub pid: Option<i64>,
    /// A `pid` value that is not a number, kept for the warning.
    pub bad_pid: Option<String>,
    pub host: Option<String>,
    /// The id of the job's worker (`[jobs] worker`), as text; `None`: NULL or not configured.
    pub worker: Option<String>,
    /// What the row looked like, for the guarded write.
    pub guard: Guard,
}

/// One row of `[workers]`: a worker process's own heartbeat, and where it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerBeat {
    pub heartbeat_at: Stamp,
    /// The heartbeat in the text form the database gives, for the guarded write.
    pub heartbeat_text: Option<String>,
    pub host: Option<String>,
    pub pid: Option<String>,
}

/// The values a guarded write requires to be unchanged, in the text form the database gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guard {
    pub heartbeat: Option<String>,
    pub progress: Option<String>,
    /// The `attempts` counter, when configured.
    pub attempts: Option<String>,
    /// The job's `worker` column, when configured: the job was not handed to another worker.
    pub worker: Option<String>,
    /// The job's worker in `[workers]` as the judgement saw it, when configured and the row
    /// names one: a worker that beat again (or came back) since is alive, its job untouched.
    pub worker_row: Option<WorkerSeen>,
}

/// A job's worker row in `[workers]` as read, for the guarded write: the worker's id (the
/// text of the job's `worker` column) and what its row showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerSeen {
    /// The workers table had no row with this id.
    Gone { id: String },
    /// Its row, with its heartbeat's text (`None`: NULL, the worker has not beaten yet).
    Beat {
        id: String,
        heartbeat: Option<String>,
    },
}

/// A parent or child of an active row, for the parent/child rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relative {
    pub id: String,
    pub status: String,
    pub parent_id: Option<String>,
}

impl JobRow {
    /// A row with only an id and a status: every timestamp missing, nothing else set.
    pub fn new(id: &str, status: &str) -> JobRow {
        JobRow {
            id: id.to_string(),
            status: status.to_string(),
            created_at: Stamp::Missing,
            heartbeat_at: Stamp::Missing,
            status_since: Stamp::Missing,
            progress: None,
            phase: None,
            parent_id: None,
            pid: None,
            bad_pid: None,
            host: None,
            worker: None,
            guard: Guard::default(),
        }
    }

    /// When the job was created, or why that cannot be told.
    pub fn created_since(&self) -> Result<f64, String> {
        match &self.created_at {
            Stamp::At(t) => Ok(*t),
            Stamp::Missing => Err("created_at is NULL".into()),
            Stamp::Invalid(v) => Err(format!("created_at `{v}` is not a timestamp")),
        }
    }

    /// The last heartbeat; before the first one, `created_at`.
    pub fn heartbeat_since(&self) -> Result<f64, String> {
        match &self.heartbeat_at {
            Stamp::At(t) => Ok(*t),
            Stamp::Missing => self
                .created_since()
                .map_err(|m| format!("no heartbeat yet and {m}")),
            Stamp::Invalid(v) => Err(format!("heartbeat `{v}` is not a timestamp")),
        }
    }
}

/// Above this a number is taken as milliseconds, not seconds (1e11 s is the year 5138).
pub const MILLIS_THRESHOLD: f64 = 1e11;

/// How the values of one timestamp column are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The database's number is a wall-clock reading in this zone (a naive native column,
    /// converted by a UTC session as if it were UTC); `None`: the number is an instant.
    pub native_zone: Option<Zone>,
    /// The zone of text values that carry no offset.
    pub text_zone: Zone,
}

impl Default for Reading {
    fn default() -> Self {
        Reading {
            native_zone: None,
            text_zone: Zone::Utc,
        }
    }
}

impl Stamp {
    /// Builds a stamp from what the database returned: a number it computed (native timestamp
    /// or numeric column), else the text form, parsed here. Naive values in UTC.
    pub fn from_parts(epoch: Option<f64>, text: Option<&str>) -> Stamp {
        Stamp::read(epoch, text, Reading::default())
    }

    /// [`Stamp::from_parts`], with naive values read in the zones `reading` names.
    pub fn read(epoch: Option<f64>, text: Option<&str>, reading: Reading) -> Stamp {
        match (epoch, text) {
            (Some(e), _) if e.is_finite() => match reading.native_zone {
                Some(zone) => Stamp::At(zone.local_to_utc(e)),
                None => Stamp::At(from_number(e)),
            },
            (Some(e), _) => Stamp::Invalid(e.to_string()),
            (None, None) => Stamp::Missing,
            (None, Some(t)) => parse_stamp_in(t, reading.text_zone),
        }
    }

    /// The time, if there is a valid one.
    pub fn at(&self) -> Option<f64> {
        match self {
            Stamp::At(t) => Some(*t),
            _ => None,
        }
    }
}

fn from_number(n: f64) -> f64 {
    if n.abs() >= MILLIS_THRESHOLD {
        n / 1000.0
    } else {
        n
    }
}

/// Parses a timestamp written as text: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff][+zz[:zz]]`, the
/// same with a `T`, a bare date, or Unix seconds (milliseconds above 1e11). A text without an
/// offset is read in `zone` (UTC, as SQLite's own `CURRENT_TIMESTAMP` writes it, unless the
/// config says otherwise).
pub fn parse_stamp_in(text: &str, zone: Zone) -> Stamp {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("null") {
        return Stamp::Missing;
    }
    if let Ok(n) = t.parse::<f64>() {
        if n.is_finite() {
            return Stamp::At(from_number(n));
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Stamp::At(epoch_of(&dt.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(dt) = DateTime::parse_from_str(t, format) {
            return Stamp::At(epoch_of(&dt.with_timezone(&Utc)));
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            return Stamp::At(zone.local_to_utc(epoch_of(&Utc.from_utc_datetime(&naive))));
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let naive = date.and_time(chrono::NaiveTime::MIN);
        return Stamp::At(zone.local_to_utc(epoch_of(&Utc.from_utc_datetime(&naive))));
    }
    Stamp::Invalid(t.chars().take(64).collect())
}

fn epoch_of(dt: &DateTime<Utc>) -> f64 {
    dt.timestamp() as f64 + f64::from(dt.timestamp_subsec_micros()) / 1e6
}

/// Formats Unix seconds as RFC 3339 UTC, to the second.
pub fn rfc3339(epoch: f64) -> String {
    match DateTime::<Utc>::from_timestamp(epoch.floor() as i64, 0) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => String::from("invalid"),
    }
}

/// Serializes Unix seconds as an RFC 3339 string.
pub fn serialize_epoch<S: serde::Serializer>(epoch: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*epoch))
}

/// A job id as one URL path segment (`/jobs/{id}`): every byte but the unreserved ones
/// percent-encoded, and the dots of `.` and `..` too (see [`job_link`] for why that is not
/// enough on its own).
pub fn url_segment(id: &str) -> String {
    let dots = id == "." || id == "..";
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if !dots && (b.is_ascii_alphanumeric() || b"-_.~".contains(&b)) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path segment that stands for a job named by `?id=` (see [`job_link`]).
pub const ID_IN_QUERY: &str = "_";

/// The link to a job's page or action: `{prefix}{id}{suffix}` with the id as one path
/// segment. The ids `.` and `..` cannot be a path segment: browsers and HTTP libraries
/// resolve them away even percent-encoded (`%2E%2E` is `..` to the URL standard), so theirs
/// is `{prefix}_{suffix}?id=%2E%2E`, and a request's `?id=` wins over its path's id.
pub fn job_link(prefix: &str, id: &str, suffix: &str) -> String {
    if id == "." || id == ".." {
        format!("{prefix}{ID_IN_QUERY}{suffix}?id={}", url_segment(id))
    } else {
        format!("{prefix}{}{suffix}", url_segment(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_id_has_a_link_that_survives_url_normalisation() {
        assert_eq!(job_link("/jw/jobs/", "7", ""), "/jw/jobs/7");
        assert_eq!(job_link("/jobs/", "a b/c", "/fail"), "/jobs/a%20b%2Fc/fail");
        assert_eq!(job_link("/jobs/", "...", ""), "/jobs/...");
        assert_eq!(job_link("/jobs/", ".", ""), "/jobs/_?id=%2E");
        assert_eq!(
            job_link("/api/v1/jobs/", "..", "/snooze"),
            "/api/v1/jobs/_/snooze?id=%2E%2E"
        );
        assert_eq!(url_segment(".."), "%2E%2E");
    }

    fn parse_stamp(text: &str) -> Stamp {
        parse_stamp_in(text, Zone::Utc)
    }

    const T: f64 = 1_767_225_600.0; // 2026-01-01T00:00:00Z

    #[test]
    fn text_shapes_parse() {
        for text in [
            "2026-01-01T00:00:00Z",
            "2026-01-01T01:00:00+01:00",
            "2026-01-01 00:00:00",
            "2026-01-01T00:00:00",
            "2026-01-01 00:00:00+00",
            "2026-01-01 02:00:00+02:00",
            "2026-01-01 00:00:00.000",
            "2026-01-01 00:00",
            "1767225600",
            "1767225600000",
            " 2026-01-01T00:00:00.000Z ",
        ] {
            assert_eq!(parse_stamp_in(text, Zone::Utc), Stamp::At(T), "{text}");
        }
        assert_eq!(
            parse_stamp_in("2026-01-01T00:00:00.5Z", Zone::Utc),
            Stamp::At(T + 0.5)
        );
        assert_eq!(parse_stamp_in("2026-01-01", Zone::Utc), Stamp::At(T));
    }

    #[test]
    fn naive_values_are_read_in_their_zone() {
        let ny = Zone::parse("America/New_York").unwrap();
        // Midnight UTC is 19:00 the evening before on a New York wall.
        assert_eq!(
            parse_stamp_in("2025-12-31 19:00:00", ny),
            Stamp::At(T),
            "text without an offset"
        );
        assert_eq!(
            parse_stamp_in("2026-01-01T00:00:00Z", ny),
            Stamp::At(T),
            "an offset wins over the zone"
        );
        let naive = Reading {
            native_zone: Some(ny),
            text_zone: Zone::Utc,
        };
        assert_eq!(
            Stamp::read(Some(T - 5.0 * 3600.0), None, naive),
            Stamp::At(T)
        );
        assert_eq!(
            Stamp::read(Some(T), None, Reading::default()),
            Stamp::At(T),
            "an aware column's number is the instant"
        );
    }

    #[test]
    fn nulls_and_garbage() {
        assert_eq!(parse_stamp(""), Stamp::Missing);
        assert_eq!(parse_stamp("null"), Stamp::Missing);
        assert_eq!(parse_stamp("yesterday"), Stamp::Invalid("yesterday".into()));
        assert_eq!(
            parse_stamp("2026-13-45 99:00:00"),
            Stamp::Invalid("2026-13-45 99:00:00".into())
        );
    }

    #[test]
    fn numbers_from_the_database() {
        assert_eq!(Stamp::from_parts(Some(T), Some("ignored")), Stamp::At(T));
        assert_eq!(Stamp::from_parts(Some(T * 1000.0), None), Stamp::At(T));
        assert_eq!(Stamp::from_parts(None, None), Stamp::Missing);
        assert!(matches!(
            Stamp::from_parts(Some(f64::INFINITY), None),
            Stamp::Invalid(_)
        ));
        assert_eq!(rfc3339(T + 0.9), "2026-01-01T00:00:00Z");
    }
}
