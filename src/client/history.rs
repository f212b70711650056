//! The history of reaped sessions (`GET /v1/history`).

use reqwest::Method;

use super::{Client, ClientError};
use crate::wire::api::{HistoryPage, HistoryRecord};

/// What to list of the history; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// A function's id or name.
    pub function: Option<String>,
    /// Sessions created at or after, seconds since the epoch.
    pub since: Option<u64>,
    /// Sessions created at or before, seconds since the epoch.
    pub until: Option<u64>,
    /// Page size (the server caps it).
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

impl Client {
    /// One page of reaped sessions' records, newest first.
    pub async fn history_page(&self, f: &HistoryFilter) -> Result<HistoryPage, ClientError> {
        let mut url = self.url_for(&["v1", "history"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(v) = &f.function {
                q.append_pair("function", v);
            }
            if let Some(v) = f.since {
                q.append_pair("since", &v.to_string());
            }
            if let Some(v) = f.until {
                q.append_pair("until", &v.to_string());
            }
            if let Some(v) = f.limit {
                q.append_pair("limit", &v.to_string());
            }
            if let Some(v) = &f.cursor {
                q.append_pair("cursor", v);
            }
        }
        self.json_at(Method::GET, url, None::<&()>).await
    }

    /// Every record that matches, page after page, up to `max` of them.
    pub async fn history(
        &self,
        filter: &HistoryFilter,
        max: usize,
    ) -> Result<Vec<HistoryRecord>, ClientError> {
        let mut f = filter.clone();
        let mut out = Vec::new();
        loop {
            let page = self.history_page(&f).await?;
            out.extend(page.sessions);
            match page.next {
                Some(next) if out.len() < max => f.cursor = Some(next),
                _ => break,
            }
        }
        out.truncate(max);
        Ok(out)
    }

    /// A reaped session's record, by its token or its `s-…` id.
    pub async fn history_record(&self, reference: &str) -> Result<HistoryRecord, ClientError> {
        self.json(Method::GET, &["v1", "history", reference], None::<&()>)
            .await
    }
}
