//! `GET /v1/images`: the function images this controller knows, with the
//! limits a run gets and may ask for, and their warm pools. Read-only; the
//! console's images view and its run form use it.

use axum::extract::{Extension, State};
use axum::Json;
use schemars::{schema_for, JsonSchema, Schema};
use serde::Serialize;
use std::sync::Arc;

use super::AppState;
use crate::controller::tenancy::Principal;
use crate::wire::api::Limits;

/// One function image, as `config/images/NAME.yaml` describes it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ImageInfo {
    pub name: String,
    /// The runtime inside the image (`python3`).
    pub runtime: String,
    /// The limits a run gets unless it asks for others.
    pub limits: Limits,
    /// The most a run may ask for; `null`: runs may only lower the defaults.
    pub max: Option<Limits>,
    /// The size of its warm pool (0: none).
    pub warm: usize,
    /// Warm containers ready now.
    pub warm_ready: u64,
    /// It is the server's `default_image`.
    pub default: bool,
}

/// The OpenAPI schema of the answer.
pub(super) fn list_schema() -> (&'static str, Schema) {
    ("ImageInfoList", schema_for!(Vec<ImageInfo>))
}

pub(super) async fn list_images(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
) -> Json<Vec<ImageInfo>> {
    let ready = s.launcher.pool.ready_all();
    // Only the images the tenant may use (`tenants: NAME: images:`).
    let tenant = s.config.tenant(&p.tenant);
    let out = s
        .config
        .images
        .values()
        .filter(|spec| tenant.may_use(&spec.name))
        .map(|spec| ImageInfo {
            name: spec.name.clone(),
            runtime: spec.runtime.clone(),
            limits: spec.limits.clone(),
            max: spec.max.clone(),
            warm: spec.warm,
            warm_ready: ready
                .iter()
                .find(|(n, _)| *n == spec.name)
                .map_or(0, |(_, r)| *r),
            default: spec.name == s.config.default_image,
        })
        .collect();
    Json(out)
}
