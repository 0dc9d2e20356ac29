//! The OpenAPI 3.1 document: well-formed, complete, every `$ref` resolves,
//! and the same bytes every time.

use std::collections::BTreeSet;

use serde_json::Value;
use treven_transcode::{OpenApiInfo, Transcoder};

use crate::support::{shapes, treven};

fn document(transcoder: &Transcoder) -> Value {
    transcoder.openapi(&OpenApiInfo::default())
}

/// Every `$ref` value anywhere in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => refs(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

/// Follows a local JSON pointer such as `#/components/schemas/a.b.C`.
fn resolve<'a>(document: &'a Value, target: &str) -> Option<&'a Value> {
    let pointer = target.strip_prefix('#')?;
    document.pointer(pointer)
}

fn check_document(transcoder: &Transcoder) -> Value {
    let doc = document(transcoder);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"],
        serde_json::json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    );

    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in &targets {
        let found = resolve(&doc, target);
        assert!(
            found.is_some_and(|v| v.is_object()),
            "unresolved $ref {target}"
        );
    }

    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let mut operation_ids = BTreeSet::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        assert!(path.starts_with('/'), "{path}");
        let in_path: BTreeSet<String> = path
            .split('{')
            .skip(1)
            .filter_map(|p| p.split_once('}').map(|(name, _)| name.to_owned()))
            .collect();
        for (method, operation) in item.as_object().expect("path item") {
            operations += 1;
            assert!(
                [
                    "get", "put", "post", "delete", "patch", "head", "options", "trace"
                ]
                .contains(&method.as_str()),
                "{method}"
            );
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(
                operation_ids.insert(id.to_owned()),
                "duplicate operationId {id}"
            );
            for tag in operation["tags"].as_array().expect("tags") {
                assert!(tags.contains(tag.as_str().unwrap_or_default()), "{tag}");
            }
            let declared: BTreeSet<String> = operation["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true);
                    p["name"].as_str().unwrap_or_default().to_owned()
                })
                .collect();
            assert_eq!(declared, in_path, "{method} {path}: path parameters");
            let responses = operation["responses"].as_object().expect("responses");
            for status in [
                "200", "400", "401", "403", "404", "409", "422", "429", "500", "503",
            ] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
    assert_eq!(
        operations,
        transcoder.routes().routes().len(),
        "every route is documented"
    );
    doc
}

#[test]
fn the_treven_document_is_complete_and_resolvable() {
    let doc = check_document(treven());
    let me = &doc["paths"]["/api/me"]["get"];
    assert_eq!(me["operationId"], "TenantsService_GetMe");
    assert_eq!(me["tags"], serde_json::json!(["TenantsService"]));
    assert_eq!(
        me["summary"],
        "The caller: their user record, organisation and role."
    );
    assert_eq!(
        me["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/treven.tenants.v1.GetMeResponse"
    );

    let audit = &doc["paths"]["/api/audit"]["get"]["parameters"];
    let names: Vec<&str> = audit
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "limit",
            "cursor",
            "resourceType",
            "resourceId",
            "since",
            "until"
        ]
    );
    assert_eq!(audit[4]["schema"]["anyOf"][0]["format"], "date-time");

    let update = &doc["paths"]["/api/users/{id}"]["patch"];
    assert_eq!(
        update["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/treven.tenants.v1.User"
    );
    let user = &doc["components"]["schemas"]["treven.tenants.v1.User"];
    // Proto3 JSON reads `null` as the default, so optional fields say so;
    // unknown members are refused, so the objects say that too.
    assert_eq!(
        user["properties"]["role"]["anyOf"],
        serde_json::json!([
            {"$ref": "#/components/schemas/treven.tenants.v1.Role"},
            {"type": "null"},
        ])
    );
    assert_eq!(user["additionalProperties"], false);
    // The body's members are the update: the mask is not a REST parameter,
    // and the members carry their rules when set.
    let names: Vec<&str> = update["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["id"]);
    assert!(
        update["description"]
            .as_str()
            .is_some_and(|d| d.contains("present, not null and not their default")),
        "{update}"
    );
    assert_eq!(
        user["properties"]["email"]["anyOf"][1]["format"], "email",
        "{}",
        user["properties"]["email"]
    );

    // The buf.validate rules become JSON Schema keywords.
    let limit = &audit[0]["schema"]["anyOf"][0];
    assert_eq!(
        (limit["minimum"].as_i64(), limit["maximum"].as_i64()),
        (Some(0), Some(100))
    );
    let get_user = &doc["paths"]["/api/users/{id}"]["get"]["parameters"][0]["schema"];
    assert_eq!(get_user["format"], "uuid");
    assert!(
        get_user["pattern"]
            .as_str()
            .is_some_and(|p| p.contains("[0-9a-fA-F]{8}"))
    );
    let create = &doc["components"]["schemas"]["treven.tenants.v1.CreateUserRequest"];
    assert_eq!(
        create["required"],
        serde_json::json!(["email", "name", "role"])
    );
    assert_eq!(create["properties"]["email"]["format"], "email");
    assert_eq!(create["properties"]["name"]["maxLength"], 200);
    assert_eq!(
        create["properties"]["role"]["not"]["enum"],
        serde_json::json!(["ROLE_UNSPECIFIED", 0])
    );
    // An optional UUID filter: empty, or a UUID.
    let access = doc["paths"]["/api/report-access"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "reportId")
        .expect("reportId")
        .clone();
    assert_eq!(
        access["schema"]["anyOf"][0],
        serde_json::json!({"const": ""})
    );
    assert_eq!(access["schema"]["anyOf"][1]["format"], "uuid");

    // Creates link to the operations on the created id.
    let links = &doc["paths"]["/api/users"]["post"]["responses"]["200"]["links"];
    assert_eq!(
        links["TenantsService_GetUser"]["parameters"],
        serde_json::json!({"id": "$response.body#/id"})
    );
    assert!(links.get("TenantsService_DeleteUser").is_some());
    let links = &doc["paths"]["/api/conversations"]["post"]["responses"]["200"]["links"];
    assert_eq!(
        links["AgentsService_ListMessages"]["parameters"],
        serde_json::json!({"conversationId": "$response.body#/id"})
    );
    assert_eq!(
        doc["components"]["schemas"]["treven.tenants.v1.Role"]["enum"][1],
        "ROLE_ADMIN"
    );
    let usage = &doc["components"]["schemas"]["treven.common.v1.TokenUsage"];
    assert_eq!(
        usage["properties"]["inputTokens"]["type"],
        serde_json::json!(["string", "null"])
    );
    assert_eq!(usage["properties"]["inputTokens"]["format"], "int64");

    // `body: "*"` with a path variable: the body schema leaves the id out.
    let submit = &doc["paths"]["/api/reports/{id}/submit"]["post"];
    let body = &submit["requestBody"]["content"]["application/json"]["schema"];
    assert!(body["properties"].get("id").is_none());
    assert!(body["properties"].get("version").is_some());

    // Unary writes take an Idempotency-Key; reads and streams do not.
    let key = serde_json::json!({"$ref": "#/components/parameters/IdempotencyKey"});
    let takes_key = |method: &str, path: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .is_some_and(|p| p.contains(&key))
    };
    assert!(takes_key("post", "/api/partners"));
    assert!(takes_key("delete", "/api/partners/{id}"));
    assert!(takes_key("patch", "/api/users/{id}"));
    assert!(!takes_key("get", "/api/partners"));
    assert!(!takes_key(
        "post",
        "/api/conversations/{conversationId}/messages"
    ));
    assert_eq!(
        doc["components"]["parameters"]["IdempotencyKey"]["in"],
        "header"
    );
    let codes = &doc["components"]["schemas"]["ErrorResponse"]["properties"]["error"]["properties"]
        ["code"]["enum"];
    assert!(
        codes
            .as_array()
            .expect("present")
            .contains(&"IDEMPOTENCY_KEY_REUSED".into())
    );
    assert!(
        doc["components"]["responses"]["Error409"]["description"]
            .as_str()
            .expect("present")
            .contains("IDEMPOTENCY_KEY_REUSED")
    );

    // The streamed reply is documented as NDJSON and SSE.
    let send = &doc["paths"]["/api/conversations/{conversationId}/messages"]["post"];
    let content = &send["responses"]["200"]["content"];
    assert!(content.get("application/x-ndjson").is_some());
    assert!(content.get("text/event-stream").is_some());
}

#[test]
fn the_shapes_document_covers_every_rule_shape() {
    let doc = check_document(shapes());
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/v1/orgs/{name}",
        "/v1/orgs/{name}/alias",
        "/v1/orgs/special",
        "/v1/files/{path}",
        "/v1/jobs/{name}",
        "/v1/jobs/{name}:cancel",
        "/v1/notes/{note.id}",
        "/v1/search",
        "/v1/blobs/{key}",
        "/v1/ping",
        "/v1/topics/{topic}/events",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    assert!(doc["paths"]["/v1/ping"].get("head").is_some());
    let search = &doc["paths"]["/v1/search"];
    assert_eq!(search["get"]["operationId"], "ShapesService_Search");
    assert_eq!(search["post"]["operationId"], "ShapesService_Search_2");
    let names: Vec<&str> = search["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in [
        "query",
        "tags",
        "filter.minScore",
        "filter.range.after",
        "filter.next.minScore",
        "pageSize",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("labels")),
        "maps are not query parameters"
    );
    let page_size = search["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "pageSize"))
        .expect("pageSize");
    // An empty query value leaves the field unset, so "" is accepted too.
    assert_eq!(
        page_size["schema"]["anyOf"][0]["type"],
        serde_json::json!(["integer", "null"])
    );
    assert_eq!(
        page_size["schema"]["anyOf"][1],
        serde_json::json!({"const": ""})
    );
    // A whole-body POST has no query parameters, only the idempotency key.
    assert_eq!(
        search["post"]["parameters"],
        serde_json::json!([{"$ref": "#/components/parameters/IdempotencyKey"}])
    );
    // The note route binds `note.id` and takes the note as body.
    let note = &doc["paths"]["/v1/notes/{note.id}"]["patch"];
    assert_eq!(
        note["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/shapes.v1.Note"
    );
}

#[test]
fn the_document_is_deterministic() {
    let first = serde_json::to_string(&document(treven())).expect("json");
    let again =
        serde_json::to_string(&document(&Transcoder::builtin().expect("routes"))).expect("json");
    assert_eq!(first, again);
}
