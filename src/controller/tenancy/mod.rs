//! Tenants: who a request speaks for, what its key lets it do, and the
//! audit log. Tenants and keys are kept in `DATA_DIR/tenants.db`
//! ([`keys::KeyStore`]); per-tenant settings and quotas are in the config
//! ([`crate::config::TenantSettings`]). docs/tenants.md has the model.

pub mod audit;
pub mod keys;
pub mod quota;

use std::fmt;
use std::net::IpAddr;
use tokio_util::sync::CancellationToken;

pub use crate::config::DEFAULT_TENANT;

/// The address a connection came from, put in each request's extensions
/// by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// What a key may do. Every role sees only its own tenant's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Lists and watches; never attaches, sends input, closes, kills or
    /// changes anything.
    Viewer,
    /// Everything within its tenant.
    User,
    /// A user that also manages tenants and keys, and reads `/metrics`.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn wire(self) -> crate::wire::api::KeyRole {
        match self {
            Role::Viewer => crate::wire::api::KeyRole::Viewer,
            Role::User => crate::wire::api::KeyRole::User,
            Role::Admin => crate::wire::api::KeyRole::Admin,
        }
    }

    pub fn from_wire(r: crate::wire::api::KeyRole) -> Role {
        match r {
            crate::wire::api::KeyRole::Viewer => Role::Viewer,
            crate::wire::api::KeyRole::User => Role::User,
            crate::wire::api::KeyRole::Admin => Role::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No key is needed: the controller has neither `api_key` nor any key
    /// (loopback only; see `controller::run`).
    Open,
    /// The single `api_key` of the config: an admin of the default tenant.
    LegacyKey,
    /// A key made with `bento keys create`, by its public id.
    Key(String),
    /// No key, on the attach route only: the session token is the
    /// capability (docs/tenants.md).
    TokenOnly,
}

/// Who a request speaks for; put in the request's extensions by the auth
/// layer, and read by every handler.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    pub role: Role,
    pub credential: Credential,
    /// Cancelled when the key is revoked: open attach connections made with
    /// it close at once.
    pub revoked: CancellationToken,
    /// The address the request came from, for the audit log.
    pub addr: Option<IpAddr>,
}

impl Principal {
    /// Whether an object of `tenant` is visible to this request. A token
    /// alone sees nothing by listing; the attach route checks it apart.
    pub fn sees(&self, tenant: &str) -> bool {
        self.credential != Credential::TokenOnly && self.tenant == tenant
    }

    /// The principal of keyless loopback use and of the legacy key.
    pub fn default_admin(credential: Credential) -> Principal {
        Principal {
            tenant: DEFAULT_TENANT.to_string(),
            role: Role::Admin,
            credential,
            revoked: CancellationToken::new(),
            addr: None,
        }
    }

    /// For the audit log: which key, never the key itself.
    pub fn key_label(&self) -> &str {
        match &self.credential {
            Credential::Open => "none",
            Credential::LegacyKey => "api_key",
            Credential::Key(id) => id,
            Credential::TokenOnly => "token",
        }
    }
}
