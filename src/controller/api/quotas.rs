//! Tenant quotas at the API: what a tenant holds, the check before a
//! session starts or a function is stored, the 429 answer, and the quota
//! lines of `/metrics`. The bookkeeping is `tenancy::quota`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{ApiError, AppState};
use crate::controller::tenancy::audit::Event;
use crate::controller::tenancy::quota::{Ask, Held, Refusal, Reservation};
use crate::controller::tenancy::Principal;
use axum::http::StatusCode;

/// What `tenant` holds now: its sessions that have not ended (resuming
/// ones included, each once) and their limits, with `spool_bytes` as
/// given. Synchronous, so that the tracker can count under its lock.
fn held(s: &AppState, tenant: &str, spool_bytes: u64) -> Held {
    let mut h = Held {
        spool_bytes,
        ..Held::default()
    };
    let live = s.sessions.of_tenant(tenant);
    for handle in &live {
        if !handle.ended.load(Ordering::Acquire) {
            h.sessions += 1;
            h.memory += handle.memory;
            h.cpus += handle.cpus;
        }
    }
    // A session is launched before it leaves the resuming set: one in both
    // is counted as live.
    for info in s.sessions.resuming_infos_of(tenant) {
        if live.iter().any(|l| l.id == info.id) {
            continue;
        }
        h.sessions += 1;
        if let Some(l) = &info.limits {
            h.memory += l.memory;
            h.cpus += l.cpus;
        }
    }
    h
}

/// The output spooled for all of `tenant`'s sessions: a round trip to each
/// of them, so only asked when a quota or `/metrics` needs it.
async fn spooled(s: &AppState, tenant: &str) -> u64 {
    let mut bytes = 0;
    for handle in s.sessions.of_tenant(tenant) {
        if let Ok(i) = handle.info().await {
            bytes += i.spooled_bytes;
        }
    }
    bytes
}

/// The answer to a refusal, which is also audited and counted.
pub(super) fn refused(s: &AppState, p: &Principal, r: &Refusal) -> ApiError {
    s.audit.record(p, Event::QuotaRefused, r.quota, &r.tenant);
    crate::metrics::quota_refused(&r.tenant, r.quota);
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, r.message());
    e.quota = Some(Box::new(super::error::QuotaAnswer {
        quota: r.quota.to_string(),
        headers: r.headers(),
    }));
    e
}

/// Checks a new session of `p`'s tenant asking for `ask`, and holds its
/// share until the reservation is dropped.
pub(super) async fn reserve(
    s: &AppState,
    p: &Principal,
    ask: Ask,
) -> Result<Reservation, ApiError> {
    let q = s.config.tenant(&p.tenant).quotas;
    let spool = match q.spool_bytes {
        Some(_) => spooled(s, &p.tenant).await,
        None => 0,
    };
    // Counted under the tracker's lock: a session that registers and
    // gives up its reservation meanwhile is seen in one or the other.
    s.quotas
        .reserve(&p.tenant, &q, || held(s, &p.tenant, spool), ask)
        .map_err(|r| refused(s, p, &r))
}

/// Checks storing a function of `size` bytes, and holds its place until
/// the reservation is dropped (stored, or refused later).
pub(super) fn reserve_function(
    s: &AppState,
    p: &Principal,
    size: u64,
) -> Result<Reservation, ApiError> {
    let q = s.config.tenant(&p.tenant).quotas;
    s.quotas
        .reserve_function(&p.tenant, &q, || s.functions.usage(&p.tenant), size)
        .map_err(|r| refused(s, p, &r))
}

/// `bento_tenant_quota_limit` and `bento_tenant_quota_used`, per tenant
/// and quota, for every tenant known to the store or the config, given
/// the output each tenant's sessions have spooled.
pub(super) fn render(s: &AppState, spooled: &HashMap<String, u64>) -> String {
    let mut tenants: Vec<String> = s.keys.tenants().into_iter().map(|t| t.name).collect();
    for name in s.config.tenants.keys() {
        if !tenants.contains(name) {
            tenants.push(name.clone());
        }
    }
    let mut limits = String::new();
    let mut used = String::new();
    for t in &tenants {
        let q = s.config.tenant(t).quotas;
        let h = held(s, t, spooled.get(t).copied().unwrap_or(0));
        let (functions, function_bytes) = s.functions.usage(t);
        let rows: [(&str, Option<f64>, f64); 7] = [
            ("sessions", q.sessions.map(|v| v as f64), h.sessions as f64),
            (
                "starts_per_minute",
                q.starts_per_minute.map(|v| v as f64),
                s.quotas.starts_last_minute(t) as f64,
            ),
            ("memory", q.memory.map(|v| v as f64), h.memory as f64),
            ("cpus", q.cpus, h.cpus),
            ("functions", q.functions.map(|v| v as f64), functions as f64),
            (
                "function_bytes",
                q.function_bytes.map(|v| v as f64),
                function_bytes as f64,
            ),
            (
                "spool_bytes",
                q.spool_bytes.map(|v| v as f64),
                h.spool_bytes as f64,
            ),
        ];
        for (name, limit, value) in rows {
            let labels = format!("{{tenant=\"{t}\",quota=\"{name}\"}}");
            if let Some(l) = limit {
                let _ = writeln!(limits, "bento_tenant_quota_limit{labels} {l}");
            }
            let _ = writeln!(used, "bento_tenant_quota_used{labels} {value}");
        }
    }
    format!(
        "# HELP bento_tenant_quota_limit A tenant's quota (unset quotas are not listed).\n\
         # TYPE bento_tenant_quota_limit gauge\n{limits}\
         # HELP bento_tenant_quota_used What a tenant holds against each quota.\n\
         # TYPE bento_tenant_quota_used gauge\n{used}{}",
        crate::metrics::render_quota_refusals()
    )
}
