//! The console's list of jobs (`GET /jobs`): one page of one status class's rows, newest
//! first, searched by part of an id, read on demand by a bounded statement (`LIMIT`), never
//! by the scan. It reads the scan's columns, so a row decodes as the scan's rows do.

use super::{job_from_row, Queries, Store, StoreError};
use crate::core::job::JobRow;

impl Queries {
    /// One page of the rows whose status is one of `words` (within `[jobs] where`), newest
    /// first by `created_at`, the id containing `q` when given: `limit` rows from `offset`.
    pub fn list(&self, words: &[String], q: Option<&str>, limit: usize, offset: usize) -> String {
        let d = self.dialect;
        let j = &self.jobs;
        let mut sql = format!(
            "SELECT {} FROM {} WHERE {} IN ({})",
            self.scan_columns
                .iter()
                .map(|(_, c)| c.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            d.table(&j.table),
            d.quote(&j.status.column),
            d.literal_list(words.iter().map(String::as_str)),
        );
        if let Some(w) = &j.where_sql {
            sql.push_str(&format!(" AND ({w})"));
        }
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

impl Store {
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
