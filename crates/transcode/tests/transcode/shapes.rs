//! Every google.api.http shape, on the test-only `shapes.v1` proto.

use prost_reflect::DescriptorPool;
use serde_json::json;
use treven_transcode::rules::http_bindings;
use treven_transcode::{
    BodyRule, HttpBinding, MatchError, RequestLimits, RouteError, RouteTable, response_json,
};

use crate::support::{
    rejected_field, request, request_json, request_with, rpc_of, shapes, shapes_pool,
};

const SERVICE: &str = "shapes.v1.ShapesService";

fn rpc(name: &str) -> Result<String, MatchError> {
    Ok(format!("{SERVICE}.{name}"))
}

#[test]
fn resource_name_templates_keep_their_literal_prefix() {
    assert_eq!(rpc_of(shapes(), "GET", "/v1/orgs/acme"), rpc("GetOrg"));
    assert_eq!(
        request_json(shapes(), "GET", "/v1/orgs/acme", ""),
        json!({"name": "orgs/acme"})
    );
    // A multi-segment variable keeps `%2F` encoded (reserved expansion) and
    // decodes the rest.
    assert_eq!(
        request_json(shapes(), "GET", "/v1/orgs/a%2Fb%20c", "")["name"],
        "orgs/a%2Fb c"
    );
    // The additional binding: a single-segment variable decodes `%2F` too.
    assert_eq!(
        rpc_of(shapes(), "GET", "/v1/orgs/a%2Fb/alias"),
        rpc("GetOrg")
    );
    assert_eq!(
        request_json(shapes(), "GET", "/v1/orgs/a%2Fb/alias", "")["name"],
        "a/b"
    );
}

#[test]
fn literals_beat_variables() {
    assert_eq!(
        rpc_of(shapes(), "GET", "/v1/orgs/special"),
        rpc("GetSpecialOrg")
    );
    assert_eq!(
        rpc_of(shapes(), "GET", "/v1/orgs/specia%6C"),
        rpc("GetSpecialOrg")
    );
    assert_eq!(rpc_of(shapes(), "GET", "/v1/orgs/specials"), rpc("GetOrg"));
}

#[test]
fn a_literal_wins_over_a_template_of_another_method() {
    // `GET /v1/orgs/special` is a literal; `{name=orgs/*}` is GET only too,
    // so other methods on the literal path are 405 naming GET.
    assert_eq!(
        rpc_of(shapes(), "DELETE", "/v1/orgs/special"),
        Err(MatchError::MethodNotAllowed {
            allowed: vec![http::Method::GET]
        })
    );
    // Across methods: a POST-only literal shadows a GET template.
    let pool = shapes_pool();
    let with_method =
        |method: http::Method, binding: HttpBinding| HttpBinding { method, ..binding };
    let table = RouteTable::from_bindings(&[
        binding(&pool, "GetJob", "/v1/items/{name}", BodyRule::None, None),
        with_method(
            http::Method::POST,
            binding(
                &pool,
                "CancelJob",
                "/v1/items/uploads",
                BodyRule::Whole,
                None,
            ),
        ),
        with_method(
            http::Method::DELETE,
            binding(&pool, "GetOrg", "/v1/items/{name}", BodyRule::None, None),
        ),
    ])
    .expect("one shape may have a route per method");
    let find = |method: http::Method, path: &str| {
        table
            .find(&method, path)
            .map(|m| (m.route().method().clone(), m.raw_values().to_vec()))
    };
    assert_eq!(
        find(http::Method::GET, "/v1/items/uploads"),
        Err(MatchError::MethodNotAllowed {
            allowed: vec![http::Method::POST]
        })
    );
    assert_eq!(
        find(http::Method::DELETE, "/v1/items/uploads"),
        Err(MatchError::MethodNotAllowed {
            allowed: vec![http::Method::POST]
        })
    );
    assert_eq!(
        find(http::Method::POST, "/v1/items/uploads"),
        Ok((http::Method::POST, vec![]))
    );
    // Another value of the variable is the template's, with its methods.
    assert_eq!(
        find(http::Method::GET, "/v1/items/u1"),
        Ok((http::Method::GET, vec!["u1".to_owned()]))
    );
    assert_eq!(
        find(http::Method::PUT, "/v1/items/u1"),
        Err(MatchError::MethodNotAllowed {
            allowed: vec![http::Method::DELETE, http::Method::GET]
        })
    );
    // A percent-encoded literal is the literal.
    assert_eq!(
        find(http::Method::GET, "/v1/items/upload%73"),
        Err(MatchError::MethodNotAllowed {
            allowed: vec![http::Method::POST]
        })
    );
    assert_eq!(
        find(http::Method::GET, "/v1/items/uploads/x"),
        Err(MatchError::NotFound)
    );
}

#[test]
fn catch_all_takes_the_rest_of_the_path() {
    assert_eq!(
        request_json(shapes(), "GET", "/v1/files/a/b%20c/d%2Fe.txt?offset=7", ""),
        json!({"path": "a/b c/d%2Fe.txt", "offset": "7"})
    );
    assert_eq!(request_json(shapes(), "GET", "/v1/files", "")["path"], "");
    assert_eq!(request_json(shapes(), "GET", "/v1/files/", "")["path"], "");
}

#[test]
fn custom_verbs_win_over_verbless_routes() {
    assert_eq!(
        rpc_of(shapes(), "POST", "/v1/jobs/42:cancel"),
        rpc("CancelJob")
    );
    assert_eq!(
        request_json(
            shapes(),
            "POST",
            "/v1/jobs/42:cancel",
            r#"{"reason": "late"}"#
        ),
        json!({"name": "jobs/42", "reason": "late"})
    );
    // The verb shape wins whatever the method: GET is not allowed there
    // (the document lists only POST for `/v1/jobs/{name}:cancel`), even
    // though `GET /v1/{name=jobs/*}` could read the colon as text.
    assert_eq!(
        rpc_of(shapes(), "GET", "/v1/jobs/42:cancel"),
        Err(MatchError::MethodNotAllowed {
            allowed: vec![http::Method::POST]
        })
    );
    // A colon that names no verb route is text in the variable.
    assert_eq!(rpc_of(shapes(), "GET", "/v1/jobs/42:pause"), rpc("GetJob"));
    assert_eq!(
        request_json(shapes(), "GET", "/v1/jobs/42:pause", "")["name"],
        "jobs/42:pause"
    );
    assert_eq!(
        rpc_of(shapes(), "POST", "/v1/jobs/42"),
        Err(MatchError::MethodNotAllowed {
            allowed: vec![http::Method::GET]
        })
    );
    // An unknown verb is just text in the GET route's variable.
    assert_eq!(
        rpc_of(shapes(), "POST", "/v1/jobs/42:pause"),
        Err(MatchError::MethodNotAllowed {
            allowed: vec![http::Method::GET]
        })
    );
    assert_eq!(
        rpc_of(shapes(), "GET", "/v1/nothing:here"),
        Err(MatchError::NotFound)
    );
}

#[test]
fn body_field_with_a_nested_path_variable_and_update_mask() {
    let (route, message) = request(
        shapes(),
        "PATCH",
        "/v1/notes/n1",
        r#"{"title": "T", "labels": {"k": "v"}}"#,
    )
    .expect("transcodes");
    assert_eq!(route.rpc().name(), "UpdateNote");
    let json = treven_transcode::message_json(&message).expect("json");
    assert_eq!(
        json,
        json!({
            "note": {"id": "n1", "title": "T", "text": "", "labels": {"k": "v"}},
            "updateMask": "labels,title",
        })
    );
    let result = request(shapes(), "PATCH", "/v1/notes/n1", r#"{"id": "n2"}"#);
    assert_eq!(rejected_field(result), (400, "note.id".to_owned()));
}

#[test]
fn response_body_picks_one_field() {
    let (route, _) = request(shapes(), "PUT", "/v1/blobs/k", r#""aGVsbG8=""#).expect("transcodes");
    let output = route.rpc().output();
    let mut response = prost_reflect::DynamicMessage::new(output);
    response.set_field_by_name("size", prost_reflect::Value::I64(5));
    assert_eq!(response_json(&route, &response).expect("json"), json!("5"));
}

#[test]
fn a_bytes_body_field_is_base64() {
    assert_eq!(
        request_json(shapes(), "PUT", "/v1/blobs/k", r#""aGVsbG8=""#),
        json!({"key": "k", "data": "aGVsbG8="})
    );
    let result = request(shapes(), "PUT", "/v1/blobs/k", r#""not base64!""#);
    assert_eq!(rejected_field(result), (400, "data".to_owned()));
}

#[test]
fn every_kind_of_query_parameter() {
    let uri = concat!(
        "/v1/search?query=two+words&tags=a&tags=b",
        "&filter.minScore=5&filter.range.after=2026-01-01T00:00:00Z",
        "&filter.kinds=HIT_KIND_PERSON&filter.kinds=1&filter.next.min_score=6",
        "&pageSize=10&include_archived=true&token=aGk&maxAge=1.5s",
        "&fields=query,filter.minScore,page_size&kind=HIT_KIND_DOCUMENT",
        "&big=9007199254740993&small=4294967295&ratio=-0.25&weight=NaN",
        "&extra=%7B%22a%22%3A1%7D&note=hi&ids=1&ids=-2",
        "&anything=%5B1%2C%22x%22%5D&second=s&maybe="
    );
    let json = request_json(shapes(), "GET", uri, "");
    assert_eq!(
        json,
        json!({
            "query": "two words",
            "tags": ["a", "b"],
            "filter": {
                "minScore": 5,
                "range": {"after": "2026-01-01T00:00:00Z"},
                "kinds": ["HIT_KIND_PERSON", "HIT_KIND_DOCUMENT"],
                "next": {"minScore": 6, "kinds": []},
            },
            "pageSize": 10,
            "includeArchived": true,
            "token": "aGk=",
            "maxAge": "1.500s",
            "fields": "query,filter.minScore,pageSize",
            "kind": "HIT_KIND_DOCUMENT",
            "big": "9007199254740993",
            "small": 4294967295u32,
            "ratio": -0.25,
            "weight": "NaN",
            "extra": {"a": 1.0},
            "labels": {},
            "note": "hi",
            "ids": ["1", "-2"],
            "anything": [1.0, "x"],
            "second": "s",
        })
    );
}

#[test]
fn query_errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        ("/v1/search?pageSize=abc", "page_size"),
        ("/v1/search?small=-1", "small"),
        ("/v1/search?weight=1e39", "weight"),
        ("/v1/search?includeArchived=yes", "include_archived"),
        ("/v1/search?token=%%%", "token"),
        ("/v1/search?token=a*b", "token"),
        ("/v1/search?labels.k=v", "labels.k"),
        ("/v1/search?labels=x", "labels"),
        ("/v1/search?first=a&second=b", "second"),
        ("/v1/search?query=a&query=b", "query"),
        ("/v1/search?filter=x", "filter"),
        ("/v1/search?filter.range=x", "filter.range"),
        (
            "/v1/search?filter.range.after.seconds=1",
            "filter.range.after.seconds",
        ),
        ("/v1/search?maxAge=soon", "max_age"),
        ("/v1/search?fields=a-b", "fields"),
        ("/v1/search?extra=%5B1%5D", "extra"),
        ("/v1/search?kind=HIT_KIND_ROBOT", "kind"),
        ("/v1/search?ids=1&ids=x", "ids"),
        ("/v1/search?unknown=1", "unknown"),
    ];
    for (uri, field) in cases {
        let (status, named) = rejected_field(request(shapes(), "GET", uri, ""));
        assert_eq!((status, named.as_str()), (400, *field), "{uri}");
    }
    let limits = RequestLimits {
        max_repeated: 2,
        ..RequestLimits::default()
    };
    let result = request_with(
        shapes(),
        "GET",
        "/v1/search?tags=a&tags=b&tags=c",
        "",
        &limits,
    );
    assert_eq!(rejected_field(result), (400, "tags".to_owned()));
}

#[test]
fn additional_bindings_can_take_a_body_instead() {
    assert_eq!(rpc_of(shapes(), "POST", "/v1/search"), rpc("Search"));
    let json = request_json(
        shapes(),
        "POST",
        "/v1/search",
        r#"{"page_size": 3, "note": null, "anything": null, "labels": {"a": "b"}, "filter": {"kinds": [2]}}"#,
    );
    assert_eq!(json["pageSize"], 3);
    assert_eq!(json["anything"], serde_json::Value::Null);
    assert!(json.get("note").is_none(), "null leaves a wrapper unset");
    assert_eq!(json["labels"], json!({"a": "b"}));
    assert_eq!(json["filter"]["kinds"], json!(["HIT_KIND_PERSON"]));
    let result = request(shapes(), "POST", "/v1/search?query=x", "{}");
    assert_eq!(rejected_field(result), (400, "query".to_owned()));
    let result = request(
        shapes(),
        "POST",
        "/v1/search",
        r#"{"first": "a", "second": "b"}"#,
    );
    assert_eq!(rejected_field(result), (400, "second".to_owned()));
    let result = request(
        shapes(),
        "POST",
        "/v1/search",
        r#"{"filter": {"next": {"minScore": "x"}}}"#,
    );
    assert_eq!(
        rejected_field(result),
        (400, "filter.next.min_score".to_owned())
    );
    let result = request(shapes(), "POST", "/v1/search", r#"{"labels": {"a": 1}}"#);
    assert_eq!(rejected_field(result), (400, "labels[a]".to_owned()));
}

#[test]
fn custom_methods_and_streams_are_routes_too() {
    assert_eq!(rpc_of(shapes(), "HEAD", "/v1/ping"), rpc("Ping"));
    let found = shapes()
        .routes()
        .find(&http::Method::GET, "/v1/topics/t1/events")
        .expect("watch route");
    assert!(found.route().is_server_streaming());
}

fn binding(
    pool: &DescriptorPool,
    rpc: &str,
    template: &str,
    body: BodyRule,
    response: Option<&str>,
) -> HttpBinding {
    HttpBinding {
        rpc: pool
            .get_service_by_name(SERVICE)
            .and_then(|s| s.methods().find(|m| m.name() == rpc))
            .expect("rpc exists"),
        index: 0,
        method: http::Method::GET,
        template: template.to_owned(),
        body,
        response_body: response.map(str::to_owned),
    }
}

#[test]
fn ambiguous_and_invalid_rules_fail_at_load() {
    let pool = shapes_pool();
    let ambiguous = RouteTable::from_bindings(&[
        binding(&pool, "Search", "/v2/s/{query}", BodyRule::None, None),
        binding(&pool, "Search", "/v2/s/{second}", BodyRule::None, None),
    ]);
    assert!(
        matches!(ambiguous, Err(RouteError::Ambiguous { .. })),
        "{ambiguous:?}"
    );
    let same_shape = RouteTable::from_bindings(&[
        binding(&pool, "GetOrg", "/v2/{name=orgs/*}", BodyRule::None, None),
        binding(
            &pool,
            "GetSpecialOrg",
            "/v2/orgs/{name}",
            BodyRule::None,
            None,
        ),
    ]);
    assert!(
        matches!(same_shape, Err(RouteError::Ambiguous { .. })),
        "{same_shape:?}"
    );

    let invalid = [
        ("/v2/s/{nope}", BodyRule::None, None, "no field `nope`"),
        ("/v2/s/{tags}", BodyRule::None, None, "singular scalar"),
        ("/v2/s/{filter}", BodyRule::None, None, "singular scalar"),
        (
            "/v2/s/{filter.range.after.seconds}",
            BodyRule::None,
            None,
            "not a message field",
        ),
        ("/v2/s/{big=**}", BodyRule::None, None, "must be a string"),
        (
            "/v2/s",
            BodyRule::Field("nope".into()),
            None,
            "body field `nope`",
        ),
        (
            "/v2/s/{query}",
            BodyRule::Field("query".into()),
            None,
            "also bound by the path",
        ),
        (
            "/v2/s",
            BodyRule::None,
            Some("nope"),
            "response_body `nope`",
        ),
        (
            "/v2/**/s",
            BodyRule::None,
            None,
            "`**` must be the last segment",
        ),
    ];
    for (template, body, response, reason) in invalid {
        let result =
            RouteTable::from_bindings(&[binding(&pool, "Search", template, body, response)]);
        let error = result.expect_err(template).to_string();
        assert!(error.contains(reason), "{template}: {error}");
        assert!(error.contains("shapes.v1.ShapesService.Search"), "{error}");
    }
}

#[test]
fn the_shapes_proto_yields_every_binding() {
    let bindings = http_bindings(&shapes_pool()).expect("rules");
    let additional: Vec<_> = bindings.iter().filter(|b| b.index > 0).collect();
    assert_eq!(additional.len(), 2);
    assert_eq!(shapes().routes().routes().len(), 12);
}
