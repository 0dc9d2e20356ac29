//! The OpenAPI 3.1 document of a route table, from the same descriptors.
//!
//! Paths come from the templates (`{name=orgs/*}` is written
//! `/orgs/{name}`; a variable over several wildcards gets `_1`, `_2`
//! parameters); query parameters are the fields neither in the path nor in
//! the body, flattened with dotted lowerCamelCase names; bodies and
//! responses are proto3 JSON schemas; every operation lists the error
//! responses of the mesh error table; security is a bearer JWT. Unary
//! writes take the gateway's `Idempotency-Key` header.
//! Operation ids are `Service_Method`, tags the services, summaries and
//! descriptions the proto comments. Object keys are sorted, so the same
//! descriptors always give the same bytes. Routes with an HTTP method that
//! OpenAPI cannot express (a `custom` kind such as `PURGE`) are left out.

mod comments;
mod schema;

use std::collections::BTreeMap;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};
use treven_mesh::ErrorCode;

use crate::fields::{FieldPath, well_known};
use crate::routes::{Route, RouteBody, RouteTable};
use crate::template::Segment;
use comments::summary;
use schema::{Schemas, component_ref};

/// Name of the error body schema in `components.schemas`.
pub const ERROR_SCHEMA: &str = "ErrorResponse";

/// Name of the `Idempotency-Key` header in `components.parameters`, taken
/// by every unary `POST`, `PATCH` and `DELETE`.
pub const IDEMPOTENCY_KEY_PARAMETER: &str = "IdempotencyKey";

/// The code the gateway answers (409) when an `Idempotency-Key` comes back
/// with another request. It is the edge's own: services never return it, so
/// it is not in the mesh error table, but it is in the documented codes.
pub const IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";

/// Codes answered by the gateway itself, outside the mesh error table, with
/// their HTTP status.
const EDGE_CODES: [(&str, u16); 1] = [(IDEMPOTENCY_KEY_REUSED, 409)];

/// The document's `info` and `servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenApiInfo {
    /// `info.title`.
    pub title: String,
    /// `info.version`.
    pub version: String,
    /// `info.description`, when set.
    pub description: Option<String>,
    /// `servers[].url`, e.g. `https://api.example.com`.
    pub servers: Vec<String>,
}

impl Default for OpenApiInfo {
    /// "Treven API" at this crate's version, no servers.
    fn default() -> Self {
        Self {
            title: "Treven API".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: None,
            servers: Vec::new(),
        }
    }
}

/// The OpenAPI 3.1 document of every route in `table`.
pub fn openapi_document(table: &RouteTable, info: &OpenApiInfo) -> Value {
    let mut schemas = Schemas::default();
    let mut routes: Vec<(String, &Route, Vec<Piece>)> = table
        .routes()
        .iter()
        .filter(|route| openapi_method(route).is_some())
        .map(|route| {
            let pieces = render(route, &mut schemas);
            (shape(route, &pieces), route.as_ref(), pieces)
        })
        .collect();
    routes.sort_by(|a, b| (&a.0, a.1.method().as_str()).cmp(&(&b.0, b.1.method().as_str())));

    // One path item per shape; parameter names from its first route, so
    // `/x/{id}` and `/x/{name}` never appear as two "identical" paths.
    let mut paths: BTreeMap<String, (String, Map<String, Value>)> = BTreeMap::new();
    let mut tags: BTreeMap<String, Value> = BTreeMap::new();
    for (shape_key, route, pieces) in &routes {
        let item = paths
            .entry(shape_key.clone())
            .or_insert_with(|| (path_string(route, pieces), Map::new()));
        let names: Vec<String> = item_param_names(&item.0);
        let operation = operation(route, pieces, &names, &mut schemas);
        if let Some(method) = openapi_method(route) {
            item.1.insert(method.to_owned(), operation);
        }
        let service = route.rpc().parent_service();
        let description = schemas
            .comments
            .of(&service.parent_file(), service.path())
            .unwrap_or_default();
        tags.entry(service.name().to_owned())
            .or_insert_with(|| json!({ "name": service.name(), "description": description }));
    }

    add_links(&mut paths, &routes);

    let mut info_json = json!({ "title": info.title, "version": info.version });
    if let Some(description) = &info.description {
        info_json["description"] = description.clone().into();
    }
    let mut document = json!({
        "openapi": "3.1.0",
        "info": info_json,
        "paths": paths.into_values().map(|(path, item)| (path, Value::Object(item))).collect::<Map<_, _>>(),
        "tags": tags.into_values().collect::<Vec<_>>(),
        "security": [{ "bearerAuth": [] }],
        "components": {
            "securitySchemes": {
                "bearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
            },
            "responses": error_responses(),
            "parameters": { IDEMPOTENCY_KEY_PARAMETER: idempotency_key_parameter() },
        },
    });
    if !info.servers.is_empty() {
        document["servers"] = info
            .servers
            .iter()
            .map(|url| json!({ "url": url }))
            .collect();
    }
    let mut components: Map<String, Value> = schemas.components.into_iter().collect();
    components.insert(ERROR_SCHEMA.to_owned(), error_schema());
    document["components"]["schemas"] = Value::Object(components);
    sorted(document)
}

/// OpenAPI `links` from each create operation (a unary `POST` whose answer
/// carries an `id`) to every operation under the created resource's path
/// (`POST /api/users` → `/api/users/{id}`, `POST /api/conversations` →
/// `/api/conversations/{conversationId}/messages`), so clients and stateful
/// fuzzers can follow a created id.
fn add_links(
    paths: &mut BTreeMap<String, (String, Map<String, Value>)>,
    routes: &[(String, &Route, Vec<Piece>)],
) {
    let mut creates = Vec::new();
    for (shape_key, route, _) in routes {
        if route.method().as_str() != "POST" || route.is_server_streaming() {
            continue;
        }
        if let Some(pointer) = created_id_pointer(route)
            && let Some((path, _)) = paths.get(shape_key)
            && !path.contains(':')
        {
            creates.push((shape_key.clone(), path.clone(), pointer));
        }
    }
    for (create_key, create_path, pointer) in creates {
        let prefix = format!("{create_path}/{{");
        let mut links = Map::new();
        for (path, operations) in paths.values() {
            let Some(rest) = path.strip_prefix(&prefix) else {
                continue;
            };
            let Some((parameter, _)) = rest.split_once('}') else {
                continue;
            };
            for (method, operation) in operations {
                let Some(id) = operation.get("operationId").and_then(Value::as_str) else {
                    continue;
                };
                links.insert(
                    id.to_owned(),
                    json!({
                        "operationId": id,
                        "parameters": { parameter: format!("$response.body#{pointer}") },
                        "description": format!("The created resource's id as `{parameter}` of {} {path}.", method.to_uppercase()),
                    }),
                );
            }
        }
        if links.is_empty() {
            continue;
        }
        if let Some((_, operations)) = paths.get_mut(&create_key)
            && let Some(ok) = operations
                .get_mut("post")
                .and_then(|op| op.get_mut("responses"))
                .and_then(|responses| responses.get_mut("200"))
        {
            ok["links"] = Value::Object(links);
        }
    }
}

/// The JSON pointer of the created resource's `id` in a create's answer:
/// `/id` when the answer is the resource, `/<field>/id` when it holds it.
fn created_id_pointer(route: &Route) -> Option<String> {
    let has_id = |message: &MessageDescriptor| {
        message
            .get_field_by_name("id")
            .is_some_and(|f| f.kind() == Kind::String && !f.is_list())
    };
    let output = match route.response_body() {
        Some(field) => match field.kind() {
            Kind::Message(message) if !field.is_list() => message,
            _ => return None,
        },
        None => route.rpc().output(),
    };
    if has_id(&output) {
        return Some("/id".to_owned());
    }
    output.fields().find_map(|field| match field.kind() {
        Kind::Message(message) if !field.is_list() && has_id(&message) => {
            Some(format!("/{}/id", field.json_name()))
        }
        _ => None,
    })
}

/// A piece of a rendered path: a literal or a parameter.
enum Piece {
    Literal(String),
    Param {
        name: String,
        field: Option<FieldPath>,
        description: String,
    },
}

fn openapi_method(route: &Route) -> Option<&'static str> {
    Some(match route.method().as_str() {
        "GET" => "get",
        "PUT" => "put",
        "POST" => "post",
        "DELETE" => "delete",
        "PATCH" => "patch",
        "HEAD" => "head",
        "OPTIONS" => "options",
        "TRACE" => "trace",
        _ => return None,
    })
}

fn render(route: &Route, schemas: &mut Schemas) -> Vec<Piece> {
    let template = route.template();
    let segments = template.segments();
    let mut pieces = Vec::new();
    let mut unnamed = 0;
    let mut index = 0;
    while index < segments.len() {
        let variable = template
            .variables()
            .iter()
            .zip(route.path_fields())
            .find(|(variable, _)| variable.segments().start == index);
        let Some((variable, path)) = variable else {
            pieces.push(match &segments[index] {
                Segment::Literal(text) => Piece::Literal(text.clone()),
                _ => {
                    unnamed += 1;
                    Piece::Param {
                        name: format!("segment{unnamed}"),
                        field: None,
                        description: "A path segment that binds no field.".to_owned(),
                    }
                }
            });
            index += 1;
            continue;
        };
        let leaf = path.leaf();
        let comment = schemas
            .comments
            .of(&leaf.parent_file(), leaf.path())
            .unwrap_or_default();
        let range = variable.segments();
        if variable.is_single_segment() {
            pieces.push(Piece::Param {
                name: path.json_path(),
                field: Some(path.clone()),
                description: comment,
            });
        } else {
            let pattern: Vec<&str> = segments[range.clone()]
                .iter()
                .map(|s| match s {
                    Segment::Literal(text) => text.as_str(),
                    Segment::Wildcard => "*",
                    Segment::CatchAll => "**",
                })
                .collect();
            let wildcards = pattern.iter().filter(|p| p.starts_with('*')).count();
            let mut k = 0;
            for segment in &segments[range.clone()] {
                match segment {
                    Segment::Literal(text) => pieces.push(Piece::Literal(text.clone())),
                    wildcard => {
                        k += 1;
                        let name = if wildcards == 1 {
                            path.json_path()
                        } else {
                            format!("{}_{k}", path.json_path())
                        };
                        let spans = if *wildcard == Segment::CatchAll {
                            " Spans segments: `/` is sent as is, `%2F` stays encoded."
                        } else {
                            ""
                        };
                        pieces.push(Piece::Param {
                            name,
                            field: None,
                            description: format!(
                                "Part of `{path}`, which is `{}`.{spans} {comment}",
                                pattern.join("/")
                            )
                            .trim_end()
                            .to_owned(),
                        });
                    }
                }
            }
        }
        index = range.end.max(index + 1);
    }
    pieces
}

/// The shape of a path: literals, `{}` for parameters, and the verb.
fn shape(route: &Route, pieces: &[Piece]) -> String {
    let mut key = String::new();
    for piece in pieces {
        key.push('/');
        match piece {
            Piece::Literal(text) => key.push_str(text),
            Piece::Param { .. } => key.push_str("{}"),
        }
    }
    if let Some(verb) = route.template().verb() {
        key.push(':');
        key.push_str(verb);
    }
    key
}

fn path_string(route: &Route, pieces: &[Piece]) -> String {
    let mut path = String::new();
    for piece in pieces {
        path.push('/');
        match piece {
            Piece::Literal(text) => path.push_str(text),
            Piece::Param { name, .. } => {
                path.push('{');
                path.push_str(name);
                path.push('}');
            }
        }
    }
    if let Some(verb) = route.template().verb() {
        path.push(':');
        path.push_str(verb);
    }
    path
}

/// The `{names}` of a path string, in order.
fn item_param_names(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

fn operation(route: &Route, pieces: &[Piece], names: &[String], schemas: &mut Schemas) -> Value {
    let rpc = route.rpc();
    let mut parameters = Vec::new();
    let params = pieces.iter().filter_map(|piece| match piece {
        Piece::Param {
            field, description, ..
        } => Some((field, description)),
        Piece::Literal(_) => None,
    });
    for ((field, description), name) in params.zip(names) {
        let schema = match field {
            Some(path) => schemas.bound(path.leaf()),
            None => json!({ "type": "string" }),
        };
        let mut parameter =
            json!({ "name": name, "in": "path", "required": true, "schema": schema });
        if !description.is_empty() {
            parameter["description"] = description.clone().into();
        }
        parameters.push(parameter);
    }
    if !matches!(route.body(), RouteBody::Whole) {
        query_parameters(route, &rpc.input(), &[], schemas, &mut parameters);
    }
    let idempotent = takes_idempotency_key(route);
    if idempotent {
        parameters.push(
            json!({ "$ref": format!("#/components/parameters/{IDEMPOTENCY_KEY_PARAMETER}") }),
        );
    }
    let mut op = json!({
        "operationId": route.operation_id(),
        "tags": [rpc.parent_service().name()],
        "x-rpc": rpc.full_name(),
        "parameters": parameters,
        "responses": responses(route, schemas),
    });
    if idempotent {
        op["responses"]["200"]["headers"] = json!({
            "Idempotent-Replayed": {
                "description": "`true` when this is the stored answer of an earlier request with the same `Idempotency-Key`.",
                "schema": { "type": "string", "enum": ["true"] },
            },
        });
    }
    if let Some(comment) = schemas.comments.of(&rpc.parent_file(), rpc.path()) {
        op["summary"] = summary(&comment).into();
        op["description"] = comment.into();
    }
    if crate::request::body_derived_mask(route).is_some() {
        let note = "The body's members that are present, not null and not their \
                    default are the fields updated; the others keep their values.";
        op["description"] = match op["description"].as_str() {
            Some(text) => format!("{text}\n\n{note}").into(),
            None => note.into(),
        };
    }
    if let Some(body) = request_body(route, schemas) {
        // Required when an empty body (every field at its default) breaks a rule.
        let required = schemas.refuses_empty(&body);
        op["requestBody"] = json!({
            "content": { "application/json": { "schema": body } },
            "required": required,
        });
    }
    op
}

/// Query parameters for every field under `message` that the path and body
/// leave free, at most 4 fields deep (which also ends recursive messages).
fn query_parameters(
    route: &Route,
    message: &MessageDescriptor,
    prefix: &[FieldDescriptor],
    schemas: &mut Schemas,
    out: &mut Vec<Value>,
) {
    let derived_mask = crate::request::body_derived_mask(route);
    for field in message.fields() {
        if prefix.is_empty() && derived_mask.as_ref() == Some(&field) {
            // Filled from the body's members (see `body_derived_mask`).
            continue;
        }
        let mut fields = prefix.to_vec();
        fields.push(field.clone());
        let top = &fields[0];
        if matches!(route.body(), RouteBody::Field(body) if body == top)
            || route
                .path_fields()
                .iter()
                .any(|bound| bound.fields() == fields.as_slice())
            || field.is_map()
        {
            continue;
        }
        let name = fields
            .iter()
            .map(|f| f.json_name())
            .collect::<Vec<_>>()
            .join(".");
        let kind = field.kind();
        if let Kind::Message(inner) = &kind
            && well_known(inner).is_none()
        {
            if !field.is_list() && fields.len() < 4 {
                query_parameters(route, inner, &fields, schemas, out);
            }
            continue;
        }
        let mut parameter = json!({ "name": name, "in": "query", "schema": schemas.field(&field) });
        if schemas
            .rules_of(&field)
            .is_some_and(|rules| !rules.accepts_zero(&field))
        {
            parameter["required"] = true.into();
        }
        if !matches!(kind, Kind::String | Kind::Bytes)
            && schemas
                .rules_of(&field)
                .is_none_or(|rules| rules.accepts_zero(&field))
        {
            // `?limit=` (an empty value) leaves the field unset.
            let schema = parameter["schema"].take();
            parameter["schema"] = json!({ "anyOf": [schema, { "const": "" }] });
        }
        if field.is_list() {
            parameter["style"] = "form".into();
            parameter["explode"] = true.into();
        }
        if let Some(description) = parameter["schema"]
            .as_object_mut()
            .and_then(|schema| schema.remove("description"))
        {
            parameter["description"] = description;
        }
        out.push(parameter);
    }
}

fn request_body(route: &Route, schemas: &mut Schemas) -> Option<Value> {
    match route.body() {
        RouteBody::None => None,
        RouteBody::Field(field) => Some(schemas.field(field)),
        RouteBody::Whole => {
            let input = route.rpc().input();
            let top_bound: Vec<&FieldDescriptor> = route
                .path_fields()
                .iter()
                .filter(|p| p.fields().len() == 1)
                .map(|p| p.leaf())
                .collect();
            if top_bound.is_empty() {
                Some(schemas.message(&input))
            } else {
                Some(schemas.object(&input, &|field| top_bound.contains(&field)))
            }
        }
    }
}

fn responses(route: &Route, schemas: &mut Schemas) -> Value {
    let schema = match route.response_body() {
        Some(field) => schemas.field(field),
        None => schemas.message(&route.rpc().output()),
    };
    let ok = if route.is_server_streaming() {
        json!({
            "description": "A stream of events: one JSON object per line (NDJSON), or one per `data:` line with `Accept: text/event-stream`. A failure after the stream started arrives as a last `{\"error\": {...}}` event.",
            "content": {
                "application/x-ndjson": { "schema": schema.clone() },
                "text/event-stream": { "schema": schema },
            },
        })
    } else {
        json!({ "description": "OK", "content": { "application/json": { "schema": schema } } })
    };
    let mut responses = Map::new();
    responses.insert("200".to_owned(), ok);
    for status in error_statuses().keys() {
        responses.insert(
            status.to_string(),
            json!({ "$ref": format!("#/components/responses/Error{status}") }),
        );
    }
    Value::Object(responses)
}

/// Whether `route` takes an `Idempotency-Key`: a unary write.
fn takes_idempotency_key(route: &Route) -> bool {
    matches!(route.method().as_str(), "POST" | "PATCH" | "DELETE") && !route.is_server_streaming()
}

/// The `Idempotency-Key` header parameter.
fn idempotency_key_parameter() -> Value {
    json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "Makes a write safe to retry: the first answer (2xx, or 4xx other than 408 and 429) is kept for 24 hours per organisation and key and sent again, with `Idempotent-Replayed: true`, for a repeat of the same request by the same user. The same key with another method, path, body or user is 409 `IDEMPOTENCY_KEY_REUSED`; a repeat while the first is still running is 409 `CONFLICT` with `Retry-After`. An invalid key is 400.",
        "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7E]+$" },
    })
}

/// The error codes of each HTTP status, from the mesh error table and the
/// gateway's own codes.
fn error_statuses() -> BTreeMap<u16, Vec<&'static str>> {
    let mut statuses: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for code in ErrorCode::ALL {
        statuses
            .entry(code.http_status())
            .or_default()
            .push(code.as_str());
    }
    for (code, status) in EDGE_CODES {
        statuses.entry(status).or_default().push(code);
    }
    statuses
}

fn error_responses() -> Value {
    let mut responses = Map::new();
    for (status, codes) in error_statuses() {
        let mut response = json!({
            "description": format!("Error: {}.", codes.join(" or ")),
            "content": { "application/json": { "schema": component_ref(ERROR_SCHEMA) } },
        });
        if status == 429 {
            response["headers"] = json!({
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": { "type": "integer" },
                },
            });
        }
        responses.insert(format!("Error{status}"), response);
    }
    Value::Object(responses)
}

fn error_schema() -> Value {
    let codes: Vec<&str> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .chain(EDGE_CODES.iter().map(|(code, _)| *code))
        .collect();
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": { "type": "string", "enum": codes },
                    "message": { "type": "string" },
                    "details": {
                        "type": "object",
                        "properties": {
                            "fields": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["field", "description"],
                                    "properties": {
                                        "field": { "type": "string" },
                                        "description": { "type": "string" },
                                    },
                                },
                            },
                            "retryAfterSeconds": { "type": "integer" },
                        },
                        "additionalProperties": true,
                    },
                },
            },
        },
    })
}

/// `value` with every object's keys in order, whatever map serde_json uses.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let entries: BTreeMap<String, Value> =
                object.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
