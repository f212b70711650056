//! Tenants and API keys (docs/tenants.md): the bodies of `/v1/tenants` and
//! `/v1/keys`. A key's secret is in [`NewKey`] only, once.

use serde::{Deserialize, Serialize};

/// `POST /v1/tenants`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTenant {
    /// 1-32 of a-z, 0-9, `-` and `_`, starting with a letter or digit.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]{0,31}$"))]
    pub name: String,
}

/// A tenant, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TenantInfo {
    pub name: String,
    pub created_at: u64,
}

/// What a key may do; every role sees only its own tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Lists and watches only.
    Viewer,
    /// Everything within the tenant.
    User,
    /// A user that also manages keys (and, in the default tenant, tenants
    /// and `/metrics`).
    Admin,
}

/// `POST /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]{0,31}$"))]
    pub tenant: String,
    /// `user` when not given.
    #[serde(default)]
    pub role: Option<KeyRole>,
}

/// A key, as listed: never the key itself, nor its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeyInfo {
    /// The key's public id (`k-…`), as `bento keys revoke` takes it.
    pub id: String,
    pub tenant: String,
    pub role: KeyRole,
    pub created_at: u64,
    /// When it was revoked; it opens nothing since.
    pub revoked_at: Option<u64>,
}

/// A key just made: the only time its secret is ever shown.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewKey {
    #[serde(flatten)]
    pub info: KeyInfo,
    /// The key. Shown once; only its hash is kept.
    pub key: String,
}
