//! The interactive API console at `/docs`: Swagger UI (from the npm package
//! `swagger-ui-dist`, vendored in `gateway/assets/swagger-ui` and embedded at
//! build time, so no CDN is involved) over `/openapi.json`. "Authorize"
//! takes a bearer token, which "Try it out" sends with each call; the token
//! stays in the page (not persisted).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const BUNDLE: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const STYLES: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");
const LICENSE: &[u8] = include_bytes!("../assets/swagger-ui/LICENSE");

/// The console page: assets and the initialiser from this origin only.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Treven API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head><body><noscript>The console needs JavaScript; the OpenAPI 3.1 document is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>"#;

/// Starts Swagger UI on `/openapi.json`: no validator badge (it would call
/// swagger.io), "Try it out" on, request durations shown.
const INIT: &str = r#"window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  validatorUrl: null,
  tryItOutEnabled: true,
  displayRequestDuration: true,
  persistAuthorization: false,
  defaultModelsExpandDepth: 1,
});
"#;

/// The routes of the console: `/docs` and its assets.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/docs",
            get(|| async { asset("text/html; charset=utf-8", PAGE.as_bytes(), false) }),
        )
        .route(
            "/docs/",
            get(|| async { asset("text/html; charset=utf-8", PAGE.as_bytes(), false) }),
        )
        .route(
            "/docs/init.js",
            get(|| async { asset("text/javascript; charset=utf-8", INIT.as_bytes(), false) }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async { asset("text/javascript; charset=utf-8", BUNDLE, true) }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| async { asset("text/css; charset=utf-8", STYLES, true) }),
        )
        .route(
            "/docs/LICENSE",
            get(|| async { asset("text/plain; charset=utf-8", LICENSE, true) }),
        )
}

fn asset(content_type: &'static str, body: &'static [u8], immutable: bool) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=86400"
        } else {
            "no-cache"
        }),
    );
    // Only this origin's scripts, styles and calls; Swagger UI inlines
    // styles and images as data: URLs.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_assets_are_the_real_swagger_ui() {
        assert!(BUNDLE.len() > 500_000, "the bundle is vendored whole");
        assert!(
            std::str::from_utf8(BUNDLE)
                .expect("utf-8")
                .contains("SwaggerUIBundle"),
            "the bundle defines SwaggerUIBundle"
        );
        assert!(
            std::str::from_utf8(STYLES)
                .expect("utf-8")
                .contains(".swagger-ui")
        );
        assert!(!PAGE.contains("http"), "no asset comes from another origin");
    }
}
