//! The OpenAPI document's own checks: ids, links, security, references
//! and the constraints the server enforces.

use super::*;

#[test]
fn operation_ids_are_unique_links_name_real_operations_and_health_is_open() {
    let doc = document();
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert_eq!(id, operation_id(method, path));
            assert!(ids.insert(id), "{method} {path}: operationId repeated");
            let open = op.get("security") == Some(&json!([]));
            assert_eq!(open, path == "/healthz", "{method} {path}");
        }
    }
    let created = &doc["paths"]["/v1/sessions"]["post"]["responses"]["201"]["links"];
    let links = created.as_object().map(|l| l.len()).unwrap_or(0);
    assert!(
        links >= 5,
        "session creation links to the token routes: {created}"
    );
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            for (_, resp) in op["responses"].as_object().into_iter().flatten() {
                for (_, link) in resp["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"].as_str().unwrap_or_default();
                    assert!(ids.contains(target), "{method} {path} links to {target}");
                }
            }
        }
    }
}

#[test]
fn constraints_the_server_enforces_are_in_the_schemas() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let name = &schemas["SubmitFunction"]["properties"]["name"];
    assert_eq!(name["maxLength"], 64, "{name}");
    assert!(name["pattern"].is_string(), "{name}");
    let limits = &schemas["LimitsRequest"]["properties"];
    assert_eq!(limits["pids"]["minimum"], 1, "{limits}");
    assert_eq!(limits["memory"]["minimum"], 8388608, "{limits}");
    let create = &schemas["CreateSession"]["properties"];
    assert_eq!(create["args"]["maxItems"], 256, "{create}");
    assert_eq!(create["env"]["maxProperties"], 256, "{create}");
    // Plain enums of strings, as generated clients expect them.
    for name in [
        "SessionState",
        "ForkState",
        "OnDivergence",
        "Stream",
        "ErrorCode",
    ] {
        assert!(
            schemas[name]["enum"].is_array(),
            "{name}: {}",
            schemas[name]
        );
    }
}

#[test]
fn every_reference_resolves_within_the_document() {
    let doc = document();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all
        .iter()
        .any(|r| r == "#/components/schemas/SyntaxProblem"));
    for r in all {
        let name = r.strip_prefix("#/components/schemas/");
        let found = name.map(|n| doc["components"]["schemas"].get(n).is_some());
        assert_eq!(found, Some(true), "dangling $ref {r}");
    }
}
