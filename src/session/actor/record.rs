//! The history record a reaped session leaves (see `session::history`).

use std::sync::atomic::Ordering;

use super::shared::Core;
use crate::session::record::now_secs;
use crate::wire::api::{HistoryRecord, HistoryState};

impl Core {
    /// What is kept of this session once it is reaped: no output, no token.
    pub(super) fn history_record(&self, why: &str) -> HistoryRecord {
        let meta = &self.env.meta;
        let now = now_secs();
        let exit = self.life.exit().cloned();
        let input = &self.env.input;
        // `next` is the seq expected next; end of input takes a seq too.
        let mut messages_in = input.next.load(Ordering::Acquire).saturating_sub(1);
        if input.closed.load(Ordering::Acquire) {
            messages_in = messages_in.saturating_sub(1);
        }
        HistoryRecord {
            id: meta.id.clone(),
            state: HistoryState::Reaped,
            function: meta.function.clone(),
            function_name: meta.function_name.clone(),
            image: meta.image.clone(),
            kind: if meta.transient {
                "transient"
            } else {
                "persistent"
            }
            .into(),
            limits: meta.limits.clone(),
            created_at: meta.created_at,
            started_at: now
                .saturating_sub(self.env.usage.since_start().as_secs())
                .max(meta.created_at),
            ended_at: self.life.ended_at(),
            reaped_at: now,
            reaped_why: why.to_string(),
            usage: exit.as_ref().and_then(|e| e.usage.clone()),
            exit,
            bytes_in: input.bytes.load(Ordering::Relaxed),
            messages_in,
            bytes_out: self.counts.bytes_out,
            messages_out: self.counts.messages_out,
            reconnects: self.counts.reconnects,
        }
    }
}
