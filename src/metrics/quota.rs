//! `bento_tenant_quota_refused_total{tenant,quota}`: requests refused by a
//! tenant's quota. One counter per tenant and quota that refused anything,
//! so the map is bounded by the tenants an operator made times seven.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

static REFUSED: Mutex<BTreeMap<(String, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// Counts one refusal.
pub fn quota_refused(tenant: &str, quota: &'static str) {
    let mut m = REFUSED.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry((tenant.to_string(), quota)).or_default() += 1;
}

/// The counter's lines (its HELP and TYPE even when empty).
pub fn render_quota_refusals() -> String {
    let mut out = String::from(
        "# HELP bento_tenant_quota_refused_total Requests refused by a tenant's quota.\n\
         # TYPE bento_tenant_quota_refused_total counter\n",
    );
    let m = REFUSED.lock().unwrap_or_else(|p| p.into_inner());
    for ((tenant, quota), n) in m.iter() {
        let _ = writeln!(
            out,
            "bento_tenant_quota_refused_total{{tenant=\"{tenant}\",quota=\"{quota}\"}} {n}"
        );
    }
    out
}
