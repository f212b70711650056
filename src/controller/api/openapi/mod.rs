//! The OpenAPI description of the HTTP API, served at `/openapi.json`.
//!
//! It is generated from [`ROUTES`], the same table the router is built
//! from, and its schemas are derived from the Rust types the handlers use,
//! so the document cannot drift from the code.

use axum::routing::MethodRouter;
use schemars::{schema_for, JsonSchema, Schema};
use serde_json::{json, Map, Value};
use std::sync::Arc;

use super::AppState;
use crate::wire::api::{
    AddTenant, CreateKey, CreateSession, ErrorBody, ExtendSession, ForkSession, FunctionInfo,
    HistoryPage, HistoryRecord, KeyInfo, NewKey, OutputPage, SecretInfo, SessionCreated,
    SessionExtended, SessionInfo, SetSecret, SubmitFunction, TenantInfo,
};

/// Makes a named schema for a body.
pub type SchemaFn = fn() -> (&'static str, Schema);

/// One operation of a route.
pub struct Op {
    pub method: &'static str,
    pub summary: &'static str,
    /// Request body schema, if the operation takes one.
    pub request: Option<SchemaFn>,
    /// Success status and its body schema (`None`: no body).
    pub ok: (u16, Option<SchemaFn>),
    /// Error statuses it may answer with, each with an `ErrorBody`.
    pub errors: &'static [u16],
}

/// A path, its operations, and the handlers that serve them.
pub struct Route {
    pub path: &'static str,
    pub ops: &'static [Op],
    pub handler: fn() -> MethodRouter<Arc<AppState>>,
}

fn schema<T: JsonSchema>() -> (&'static str, Schema) {
    (
        std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("Body"),
        schema_for!(T),
    )
}

/// `schema` for a list of `T`.
fn list<T: JsonSchema>() -> (&'static str, Schema) {
    let name = std::any::type_name::<T>()
        .rsplit("::")
        .next()
        .unwrap_or("Body");
    let leaked: &'static str = match name {
        "FunctionInfo" => "FunctionInfoList",
        "SessionInfo" => "SessionInfoList",
        _ => "List",
    };
    (leaked, schema_for!(Vec<T>))
}

pub use super::ROUTES;

pub(crate) const SUBMIT: Option<SchemaFn> = Some(schema::<SubmitFunction>);
pub(crate) const FUNCTION: Option<SchemaFn> = Some(schema::<FunctionInfo>);
pub(crate) const FUNCTIONS: Option<SchemaFn> = Some(list::<FunctionInfo>);
pub(crate) const CREATE: Option<SchemaFn> = Some(schema::<CreateSession>);
pub(crate) const CREATED: Option<SchemaFn> = Some(schema::<SessionCreated>);
pub(crate) const FORK: Option<SchemaFn> = Some(schema::<ForkSession>);
pub(crate) const EXTEND: Option<SchemaFn> = Some(schema::<ExtendSession>);
pub(crate) const EXTENDED: Option<SchemaFn> = Some(schema::<SessionExtended>);
pub(crate) const SESSION: Option<SchemaFn> = Some(schema::<SessionInfo>);
pub(crate) const SESSIONS: Option<SchemaFn> = Some(list::<SessionInfo>);
pub(crate) const PAGE: Option<SchemaFn> = Some(schema::<OutputPage>);
pub(crate) const HISTORY: Option<SchemaFn> = Some(schema::<HistoryPage>);
pub(crate) const HISTORY_ONE: Option<SchemaFn> = Some(schema::<HistoryRecord>);
pub(crate) const SET_SECRET: Option<SchemaFn> = Some(schema::<SetSecret>);
pub(crate) const SECRET: Option<SchemaFn> = Some(schema::<SecretInfo>);
pub(crate) const ADD_TENANT: Option<SchemaFn> = Some(schema::<AddTenant>);
pub(crate) const TENANT: Option<SchemaFn> = Some(schema::<TenantInfo>);
pub(crate) const CREATE_KEY: Option<SchemaFn> = Some(schema::<CreateKey>);
pub(crate) const NEW_KEY: Option<SchemaFn> = Some(schema::<NewKey>);
pub(crate) const KEY: Option<SchemaFn> = Some(schema::<KeyInfo>);

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        101 => "Switching Protocols (WebSocket; see docs/api.md)",
        400 => "Bad request",
        401 => "Missing or wrong API key",
        403 => "Forbidden: the key's role, or the tenant's images, do not allow it",
        404 => "Not found",
        409 => "Conflict: the image is not built, or the session still runs (see the message)",
        413 => "Too large",
        415 => "Not JSON",
        429 => "At capacity",
        502 => "Docker engine failed",
        503 => "Docker engine unreachable",
        _ => "See docs/api.md",
    }
}

/// Points schemars' `#/$defs/NAME` references at `#/components/schemas/NAME`.
fn to_components(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match x {
                    Value::String(r) if k == "$ref" => {
                        if let Some(name) = r.strip_prefix("#/$defs/") {
                            *r = format!("#/components/schemas/{name}");
                        }
                    }
                    _ => to_components(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(to_components),
        _ => {}
    }
}

/// `s` as it goes into a document whose schemas live in
/// `components/schemas` (this one and the AsyncAPI document): without
/// `$schema`, its `$defs` moved into `schemas` and every reference pointed
/// there. Types nested in a body (ExitInfo in SessionInfo, SyntaxProblem in
/// ErrorBody) so become components of their own: a `#/$defs/` reference
/// would be resolved against the whole document, where there is none.
pub(crate) fn componentize(s: Schema, schemas: &mut Map<String, Value>) -> Value {
    let mut v = s.to_value();
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        if let Some(Value::Object(defs)) = o.remove("$defs") {
            for (def, mut d) in defs {
                to_components(&mut d);
                schemas.insert(def, d);
            }
        }
    }
    to_components(&mut v);
    v
}

/// A stable `operationId`: the method and the path's segments, e.g.
/// `get_v1_sessions_token_output`. Derived, so a new route cannot lack one.
pub fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_string();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(seg.chars().filter(|c| !matches!(c, '{' | '}')).map(|c| {
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '_'
            }
        }));
    }
    id
}

/// Second success statuses: a `PUT` that creates (201) or replaces (200).
const EXTRA_OK: &[(&str, &str, u16)] = &[("put", "/v1/secrets/{name}", 200)];

/// What a path parameter may be: what the server could ever find, so that
/// anything else is plainly invalid rather than a 404 a tester must guess.
fn path_param(name: &str) -> Value {
    match name {
        // 256 random bits as hex (`controller::create::new_token`).
        // Or the session's `s-…` id, which viewers' listings carry instead.
        "token" => json!({"type": "string", "pattern": "^([0-9a-f]{64}|s-[0-9a-f]{10})$"}),
        // `controller::secrets::valid_secret_name`.
        "name" => json!({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"}),
        // A function's id (`fn-` and hex) or name (`config::valid_name`).
        "id" => json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"}),
        // An API key's public id (`controller::tenancy::keys`).
        "key" => json!({"type": "string", "pattern": "^k-[0-9a-f]{12}$"}),
        _ => json!({"type": "string"}),
    }
}

/// Routes anyone may call without the key (see `auth::require_key`).
const OPEN_PATHS: &[&str] = &["/healthz"];

/// OpenAPI links from an operation's success answer: a created session's
/// token leads to every `/v1/sessions/{token}` operation, a stored
/// function's id to its own routes and to starting it, so stateful testers
/// and generated clients can follow them.
fn links(method: &str, path: &str) -> Option<Value> {
    let (prefix, param, field) = match (method, path) {
        ("post", "/v1/sessions") | ("post", "/v1/sessions/{token}/fork") => {
            ("/v1/sessions/{token}", "token", "token")
        }
        ("post", "/v1/functions") => ("/v1/functions/{id}", "id", "id"),
        // The key's public id, never the key itself (also in the answer).
        ("post", "/v1/keys") => ("/v1/keys/{key}", "key", "id"),
        _ => return None,
    };
    let mut out = Map::new();
    for route in ROUTES.iter().filter(|r| r.path.starts_with(prefix)) {
        for op in route.ops {
            out.insert(
                operation_id(op.method, route.path),
                json!({
                    "operationId": operation_id(op.method, route.path),
                    "parameters": { param: format!("$response.body#/{field}") },
                }),
            );
        }
    }
    if path == "/v1/functions" {
        out.insert(
            "post_v1_sessions".into(),
            json!({
                "operationId": "post_v1_sessions",
                "requestBody": { "function": "$response.body#/id" },
            }),
        );
    }
    Some(Value::Object(out))
}

/// The document as a controller serves it: the images it knows are the
/// only ones a function may name.
pub fn document_for(config: &crate::config::Config) -> Value {
    let mut doc = document();
    let mut images: Vec<Value> = config.images.keys().map(|k| json!(k)).collect();
    images.push(Value::Null);
    if let Some(image) = doc
        .pointer_mut("/components/schemas/SubmitFunction/properties/image")
        .and_then(Value::as_object_mut)
    {
        image.insert("enum".into(), Value::Array(images));
    }
    doc
}

/// The query parameters of an operation that takes some (the history's
/// filters and pages).
fn query_params(method: &str, path: &str) -> Vec<Value> {
    let q = |name: &str, schema: Value, what: &str| {
        json!({"name": name, "in": "query", "required": false,
               "schema": schema, "description": what})
    };
    let time = json!({"type": "integer", "minimum": 0, "maximum": 9_007_199_254_740_991_u64});
    match (method, path) {
        ("get", "/v1/history") => vec![
            q(
                "state",
                json!({"type": "string", "enum": ["starting", "resuming", "running", "ended", "reaped"]}),
                "Only `reaped` is kept here; another state gives an empty page",
            ),
            q(
                "function",
                json!({"type": "string"}),
                "A function's id or name",
            ),
            q(
                "since",
                time.clone(),
                "Sessions created at or after, seconds since the epoch",
            ),
            q(
                "until",
                time,
                "Sessions created at or before, seconds since the epoch",
            ),
            q(
                "limit",
                json!({"type": "integer", "minimum": 1, "maximum": 500}),
                "Page size: 100 by default, at most 500",
            ),
            q(
                "cursor",
                json!({"type": "string", "pattern": "^r[1-9][0-9]{0,17}$"}),
                "The `next` of the previous page",
            ),
        ],
        ("get", "/v1/keys") => vec![q(
            "tenant",
            json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}),
            "Only this tenant's keys",
        )],
        _ => Vec::new(),
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let mut add_schema = |f: SchemaFn| -> Value {
        let (name, s) = f();
        let v = componentize(s, &mut schemas);
        schemas.insert(name.to_string(), v);
        json!({ "$ref": format!("#/components/schemas/{name}") })
    };
    let error_ref = add_schema(schema::<ErrorBody>);
    for route in ROUTES {
        let mut item = Map::new();
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": path_param(name)}))
            .collect();
        for op in route.ops {
            let mut params = params.clone();
            params.extend(query_params(op.method, route.path));
            let mut responses = Map::new();
            let (status, body) = op.ok;
            let mut ok = json!({ "description": reason(status) });
            if let Some(b) = body {
                ok["content"] = json!({"application/json": {"schema": add_schema(b)}});
            }
            if let Some(l) = links(op.method, route.path) {
                ok["links"] = l;
            }
            responses.insert(status.to_string(), ok.clone());
            for &(method, path, status) in EXTRA_OK {
                if (method, path) == (op.method, route.path) {
                    responses.insert(status.to_string(), ok.clone());
                }
            }
            // Every body is JSON of a bounded size: the router answers 413
            // and 415 before any handler runs.
            let body_errors: &[u16] = if op.request.is_some() {
                &[413, 415]
            } else {
                &[]
            };
            for e in op.errors.iter().chain(body_errors) {
                responses.insert(
                    e.to_string(),
                    json!({"description": reason(*e), "content": {"application/json": {"schema": error_ref.clone()}}}),
                );
            }
            let mut o = json!({
                "operationId": operation_id(op.method, route.path),
                "summary": op.summary,
                "parameters": params,
                "responses": responses,
            });
            // Declared on each operation, not only as the document's
            // default, so that a tool reading one operation sees it.
            o["security"] = if OPEN_PATHS.contains(&route.path) {
                json!([])
            } else {
                json!([{"bearer": []}])
            };
            if let Some(r) = op.request {
                o["requestBody"] = json!({
                    "required": true,
                    "content": {"application/json": {"schema": add_schema(r)}}
                });
            }
            item.insert(op.method.to_string(), o);
        }
        // OpenAPI writes path parameters the way axum does: `{token}`.
        paths.insert(route.path.to_string(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Bento",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Run untrusted Python functions in sandboxed containers, as sessions that outlive the connection. The attach WebSocket protocol is described in docs/api.md. Every operation but /healthz needs the API key as a bearer token, except on a controller started without a key: that one listens on loopback only and takes every request without one (docs/security.md)."
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The controller's API key (api_key in bento.yaml, or BENTO_API_KEY). A controller without one listens on loopback only and ignores this header."
            }}
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

/// Every `$ref` in `v`, for the tests of this document and the AsyncAPI one.
#[cfg(test)]
pub(crate) fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match x {
                    Value::String(r) if k == "$ref" => out.push(r.clone()),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
