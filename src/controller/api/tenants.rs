//! Tenants and keys over the API (`/v1/tenants`, `/v1/keys`), for admin
//! keys only (the auth layer refuses the rest with 403). An admin of the
//! default tenant is the operator: every tenant and key. An admin of
//! another tenant manages its own tenant's keys, and sees no other tenant.

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use schemars::{schema_for, Schema};
use serde::Deserialize;
use std::sync::Arc;

use super::{ApiError, ApiJson, AppState};
use crate::controller::tenancy::audit::Event;
use crate::controller::tenancy::keys::KeyError;
use crate::controller::tenancy::{Principal, Role, DEFAULT_TENANT};
use crate::wire::api::{AddTenant, CreateKey, KeyInfo, KeyRole, NewKey, TenantInfo};

pub(super) fn tenants_schema() -> (&'static str, Schema) {
    ("TenantInfoList", schema_for!(Vec<TenantInfo>))
}

pub(super) fn keys_schema() -> (&'static str, Schema) {
    ("KeyInfoList", schema_for!(Vec<KeyInfo>))
}

/// The operator: may see and change every tenant.
fn operator(p: &Principal) -> bool {
    p.role == Role::Admin && p.tenant == DEFAULT_TENANT
}

fn answer(e: KeyError) -> ApiError {
    match e {
        KeyError::BadName(_) => ApiError::bad_request(e.to_string()),
        KeyError::TenantExists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        KeyError::NoTenant(_) | KeyError::NoKey(_) => {
            ApiError::new(StatusCode::NOT_FOUND, e.to_string())
        }
        KeyError::Db(_) => ApiError::logged(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the controller could not use its tenants database",
            &e,
        ),
    }
}

pub(super) async fn list_tenants(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
) -> Json<Vec<TenantInfo>> {
    let all = s.keys.tenants();
    Json(if operator(&p) {
        all
    } else {
        all.into_iter().filter(|t| t.name == p.tenant).collect()
    })
}

pub(super) async fn add_tenant(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<AddTenant>,
) -> Result<(StatusCode, Json<TenantInfo>), ApiError> {
    if !operator(&p) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only an admin of the default tenant adds tenants",
        ));
    }
    let info = s.keys.add_tenant(&req.name).map_err(answer)?;
    s.audit.record(&p, Event::TenantAdded, &info.name, "");
    tracing::info!(tenant = %info.name, "tenant added");
    Ok((StatusCode::CREATED, Json(info)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeysQuery {
    tenant: Option<String>,
}

pub(super) async fn list_keys(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    query: Result<Query<KeysQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let tenant = match (operator(&p), q.tenant) {
        (true, t) => t,
        // Another tenant's keys are simply not there.
        (false, Some(t)) if t != p.tenant => return Ok(Json(Vec::new())),
        (false, _) => Some(p.tenant.clone()),
    };
    Ok(Json(s.keys.keys(tenant.as_deref())))
}

pub(super) async fn create_key(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    if !operator(&p) && req.tenant != p.tenant {
        // As for a tenant that does not exist.
        return Err(answer(KeyError::NoTenant(req.tenant)));
    }
    let role = Role::from_wire(req.role.unwrap_or(KeyRole::User));
    let made = s.keys.create_key(&req.tenant, role).map_err(answer)?;
    s.audit
        .record(&p, Event::KeyCreated, &made.info.id, &made.info.tenant);
    tracing::info!(key = %made.info.id, tenant = %made.info.tenant, %role, "key created");
    Ok((StatusCode::CREATED, Json(made)))
}

pub(super) async fn revoke_key(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<KeyInfo>, ApiError> {
    let visible = s
        .keys
        .key(&id)
        .is_some_and(|k| operator(&p) || k.tenant == p.tenant);
    if !visible {
        return Err(answer(KeyError::NoKey(id)));
    }
    let info = s.keys.revoke(&id).map_err(answer)?;
    s.audit
        .record(&p, Event::KeyRevoked, &info.id, &info.tenant);
    tracing::info!(key = %info.id, tenant = %info.tenant, "key revoked");
    Ok(Json(info))
}
