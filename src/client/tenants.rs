//! Tenants and API keys (`/v1/tenants`, `/v1/keys`), for admin keys.

use reqwest::Method;

use super::{Client, ClientError};
use crate::wire::api::{AddTenant, CreateKey, KeyInfo, KeyRole, NewKey, TenantInfo};

impl Client {
    pub async fn tenants(&self) -> Result<Vec<TenantInfo>, ClientError> {
        self.json(Method::GET, &["v1", "tenants"], None::<&()>)
            .await
    }

    pub async fn add_tenant(&self, name: &str) -> Result<TenantInfo, ClientError> {
        let body = AddTenant { name: name.into() };
        self.json(Method::POST, &["v1", "tenants"], Some(&body))
            .await
    }

    /// Keys, of one tenant or (for the operator) all.
    pub async fn keys(&self, tenant: Option<&str>) -> Result<Vec<KeyInfo>, ClientError> {
        let mut url = self.url_for(&["v1", "keys"]);
        if let Some(t) = tenant {
            url.query_pairs_mut().append_pair("tenant", t);
        }
        self.json_at(Method::GET, url, None::<&()>).await
    }

    /// Makes a key; the answer holds it, once.
    pub async fn create_key(&self, tenant: &str, role: KeyRole) -> Result<NewKey, ClientError> {
        let body = CreateKey {
            tenant: tenant.into(),
            role: Some(role),
        };
        self.json(Method::POST, &["v1", "keys"], Some(&body)).await
    }

    pub async fn revoke_key(&self, id: &str) -> Result<KeyInfo, ClientError> {
        self.json(Method::DELETE, &["v1", "keys", id], None::<&()>)
            .await
    }
}
