//! Rows back into the core's values: every query converts its columns in SQL to text, a
//! double or an integer, and [`Cells`] reads them from whichever driver's row type holds
//! them, without a copy.

use super::*;

/// The values of one result row, read from whichever driver's row type holds it. Every
/// query converts its columns in SQL to text, a double or an integer; these read them back.
pub(super) trait Cells {
    /// A text column. MySQL reports long text (`JSON_UNQUOTE`, a cast `TEXT`) as a BLOB,
    /// which is read as bytes and decoded as UTF-8.
    fn text(&self, index: usize, what: &'static str) -> Result<Option<String>, StoreError>;
    /// A double column; an integer one is widened (SQLite keeps whole numbers as integers).
    fn float(&self, index: usize, what: &'static str) -> Result<Option<f64>, StoreError>;
    /// An integer column, of either width.
    fn int(&self, index: usize, what: &'static str) -> Result<Option<i64>, StoreError>;
}

impl<R> Cells for R
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn text(&self, index: usize, what: &'static str) -> Result<Option<String>, StoreError> {
        self.try_get::<Option<String>, _>(index).or_else(|_| {
            decoded(self.try_get::<Option<Vec<u8>>, _>(index), what)
                .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
        })
    }

    fn float(&self, index: usize, what: &'static str) -> Result<Option<f64>, StoreError> {
        self.try_get::<Option<f64>, _>(index).or_else(|_| {
            decoded(self.try_get::<Option<i64>, _>(index), what).map(|n| n.map(|n| n as f64))
        })
    }

    fn int(&self, index: usize, what: &'static str) -> Result<Option<i64>, StoreError> {
        self.try_get::<Option<i64>, _>(index).or_else(|_| {
            decoded(self.try_get::<Option<i32>, _>(index), what).map(|n| n.map(i64::from))
        })
    }
}

/// A decoding error, named by the value it was for.
pub(super) fn decoded<T>(
    result: Result<T, sqlx::Error>,
    what: &'static str,
) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Query {
        what: "decoding a row",
        message: format!("{what}: {e}"),
    })
}

/// The light read's row seen with the scan's column numbers: a column it does not read is
/// NULL, and costs nothing to decode.
pub(super) struct Placed<'a> {
    pub row: &'a dyn Cells,
    pub at: &'a [Option<usize>; super::col::COUNT],
}

impl Cells for Placed<'_> {
    fn text(&self, index: usize, what: &'static str) -> Result<Option<String>, StoreError> {
        match self.at.get(index).copied().flatten() {
            Some(place) => self.row.text(place, what),
            None => Ok(None),
        }
    }

    fn float(&self, index: usize, what: &'static str) -> Result<Option<f64>, StoreError> {
        match self.at.get(index).copied().flatten() {
            Some(place) => self.row.float(place, what),
            None => Ok(None),
        }
    }

    fn int(&self, index: usize, what: &'static str) -> Result<Option<i64>, StoreError> {
        match self.at.get(index).copied().flatten() {
            Some(place) => self.row.int(place, what),
            None => Ok(None),
        }
    }
}

pub(super) fn job_from_row(row: &dyn Cells, readings: &Readings) -> Result<JobRow, StoreError> {
    let text = |i: usize, what: &'static str| row.text(i, what);
    let num = |i: usize, what: &'static str| row.float(i, what);
    let heartbeat_text = text(col::HEARTBEAT_TXT, "heartbeat")?;
    let progress = text(col::PROGRESS, "progress")?;
    let pid = text(col::PID, "pid")?;
    let worker = text(col::WORKER, "worker")?;
    Ok(JobRow {
        id: text(col::ID, "id")?.unwrap_or_default(),
        status: text(col::STATUS, "status")?.unwrap_or_default(),
        created_at: Stamp::read(
            num(col::CREATED_NUM, "created_at")?,
            text(col::CREATED_TXT, "created_at")?.as_deref(),
            readings.created,
        ),
        heartbeat_at: Stamp::read(
            num(col::HEARTBEAT_NUM, "heartbeat")?,
            heartbeat_text.as_deref(),
            readings.heartbeat,
        ),
        status_since: Stamp::read(
            num(col::STATUS_SINCE_NUM, "status_since")?,
            text(col::STATUS_SINCE_TXT, "status_since")?.as_deref(),
            readings.status_since,
        ),
        phase: text(col::PHASE, "phase")?,
        parent_id: text(col::PARENT, "parent id")?,
        pid: pid.as_deref().and_then(|p| p.trim().parse().ok()),
        bad_pid: pid.filter(|p| p.trim().parse::<i64>().is_err()),
        host: text(col::HOST, "host")?,
        worker: worker.clone(),
        guard: Guard {
            heartbeat: heartbeat_text,
            progress: progress.clone(),
            attempts: text(col::ATTEMPTS, "attempts")?,
            worker,
            // Set by the judgement, which reads `[workers]` with the rows.
            worker_row: None,
        },
        progress,
    })
}
