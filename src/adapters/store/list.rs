//! The console's list of jobs (`GET /jobs`): one page of one status class's rows, newest
//! first, searched by part of an id, read on demand by a bounded statement (`LIMIT`), never
//! by the scan. It reads the scan's columns, so a row decodes as the scan's rows do.

use super::{job_from_row, Queries, Store, StoreError};
use crate::core::job::JobRow;

/// What a job's page shows of its row beyond what a scan reads, as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detail {
    pub error: Option<String>,
    pub finished_at: Option<String>,
    pub payload: Option<String>,
}

impl Queries {
    /// One page of the rows whose status is one of `words` (within `[jobs] where`), newest
    /// first by `created_at`, the id containing `q` when given: `limit` rows from `offset`.
    pub fn list(&self, words: &[String], q: Option<&str>, limit: usize, offset: usize) -> String {
        let d = self.dialect;
        let j = &self.jobs;
        let in_class = format!(
            "{} IN ({})",
            d.quote(&j.status.column),
            d.literal_list(words.iter().map(String::as_str)),
        );
        let mut sql = self.rows_where(&[], &in_class);
        if let Some(q) = q.filter(|q| !q.is_empty()) {
            // `%`, `_` and the escape itself are literal in a search.
            let escaped: String = q
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '!' => vec!['!', c],
                    c => vec![c],
                })
                .collect();
            sql.push_str(&format!(
                " AND {} LIKE {} ESCAPE '!'",
                d.text(&d.quote(&j.id.column)),
                d.literal(&format!("%{escaped}%"))
            ));
        }
        sql.push_str(&format!(
            " ORDER BY {} DESC, {} DESC LIMIT {limit} OFFSET {offset}",
            d.value(&j.created_at),
            d.quote(&j.id.column)
        ));
        sql
    }
}

impl Queries {
    /// [`Queries::one`] with, after the scan's columns, the row's `error`, `finished_at` and
    /// `payload` as text (NULL where not configured), for the job's page.
    pub fn one_detail(&self, id: &str) -> String {
        let d = self.dialect;
        let j = &self.jobs;
        let extra: Vec<String> = [&j.error, &j.finished_at, &j.payload]
            .into_iter()
            .map(|f| match f {
                Some(f) => d.value_text(f),
                None => d.null_text().to_string(),
            })
            .collect();
        self.one_with(id, &extra)
    }
}

impl Store {
    /// One job's row for its page: as [`Store::job`] reads it, with its `error`,
    /// `finished_at` and `payload` as text.
    pub async fn job_detail(&self, id: &str) -> Result<Option<(JobRow, Detail)>, StoreError> {
        if !self.valid_id(id) {
            return Ok(None);
        }
        let readings = self.info.time.readings;
        let extra = self.queries.scan_columns.len();
        let rows = self
            .fetch("reading one job", &self.queries.one_detail(id), |row| {
                Ok((
                    job_from_row(row, &readings)?,
                    Detail {
                        error: row.text(extra, "error")?,
                        finished_at: row.text(extra + 1, "finished_at")?,
                        payload: row.text(extra + 2, "payload")?,
                    },
                ))
            })
            .await?;
        Ok(rows.into_iter().next())
    }

    /// One page of the jobs whose status is one of `words` (see [`Queries::list`]): at most
    /// `limit` rows.
    pub async fn list_jobs(
        &self,
        words: &[String],
        q: Option<&str>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<JobRow>, StoreError> {
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let readings = self.info.time.readings;
        let sql = self.queries.list(words, q, limit, offset);
        self.fetch("listing jobs", &sql, |row| job_from_row(row, &readings))
            .await
    }
}
