//! `GET /shared/{token}`: a partner link, opened without an account.
//!
//! The gateway does not read the token: it checks its shape, rate-limits
//! it, and hands it to the reports service (`OpenPartnerLink`, an internal
//! RPC) in a context of no organisation and no role
//! ([`crate::identity::ContextMinter::mint_anonymous`]) — the gateway gets
//! no power over any organisation's data from a link. Reports verifies the
//! signature and the grant on every access and audits it.
//!
//! Answers: `view` → the report version inline (HTML, or markdown with
//! `Accept: text/markdown`); `download` → `303 See Other` to a short-lived
//! presigned URL of the exported file (`?file=evidence` for the evidence
//! pack, `?file=view` to read it inline, `?format=pdf|docx|markdown`).
//! A token that does not verify is 404, an expired or revoked link 403,
//! in the usual error body. Every answer carries `Cache-Control: no-store`
//! and `Referrer-Policy: no-referrer` (the token must not travel on), and the
//! URL is never logged: spans and metrics name the route template only.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use tonic::metadata::{MetadataMap, MetadataValue};
use tracing::Instrument as _;
use treven_mesh::context::CONTEXT_HEADER;
use treven_mesh::{ErrorCode, OrgId, Principal, ServiceError};
use treven_proto::treven::reports::v1 as reports;
use treven_proto::treven::reports::v1::reports_service_client::ReportsServiceClient;

use crate::caller::request_id;
use crate::error::ApiError;
use crate::state::Gateway;

/// The route.
pub const ROUTE: &str = "/shared/{token}";
/// Longest token accepted (the reports service's own limit).
const MAX_TOKEN_LEN: usize = 2048;
const REPORTS: &str = "treven.reports.v1.ReportsService";

/// The query of a shared link.
#[derive(Debug, serde::Deserialize)]
pub struct SharedQuery {
    /// `view`, `report` or `evidence`; the link's default when absent.
    file: Option<String>,
    /// `pdf`, `docx` or `markdown` (with `file=report`).
    format: Option<String>,
}

fn refuse(code: ErrorCode, message: &str) -> Response {
    ApiError::new(code, message).into_response()
}

/// The handler of [`ROUTE`].
pub async fn open(
    State(gateway): State<Gateway>,
    Path(token): Path<String>,
    query: Result<Query<SharedQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let id = request_id(&headers);
    let span = tracing::info_span!(
        "http",
        otel.name = "GET /shared/{token}",
        otel.kind = "server",
        http.request.method = "GET",
        http.route = ROUTE,
        request_id = %id,
        http.response.status_code = tracing::field::Empty,
    );
    let mut response = answer(&gateway, &token, query.map(|q| q.0).ok(), &headers, &id)
        .instrument(span.clone())
        .await;
    crate::server::record_status(&span, response.status());
    let fixed = response.headers_mut();
    fixed.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    fixed.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    fixed.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        fixed.insert("x-request-id", value);
    }
    response
        .extensions_mut()
        .insert(crate::metrics::HttpRoute(ROUTE.to_owned()));
    response
}

async fn answer(
    gateway: &Gateway,
    token: &str,
    query: Option<SharedQuery>,
    headers: &HeaderMap,
    request_id: &str,
) -> Response {
    let shaped = !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !shaped {
        return refuse(ErrorCode::NotFound, "no such link");
    }
    let Some(query) = query else {
        return refuse(ErrorCode::ValidationError, "the query is not valid");
    };
    let file = match query.file.as_deref() {
        None | Some("") => reports::SharedFile::Unspecified,
        Some("view") => reports::SharedFile::View,
        Some("report") => reports::SharedFile::Report,
        Some("evidence") => reports::SharedFile::Evidence,
        Some(_) => {
            return refuse(
                ErrorCode::ValidationError,
                "file must be view, report or evidence",
            );
        }
    };
    let format = match query.format.as_deref() {
        None | Some("") => reports::ExportFormat::Unspecified,
        Some("pdf") => reports::ExportFormat::Pdf,
        Some("docx") => reports::ExportFormat::Docx,
        Some("markdown" | "md") => reports::ExportFormat::Markdown,
        Some(_) => {
            return refuse(
                ErrorCode::ValidationError,
                "format must be pdf, docx or markdown",
            );
        }
    };
    // Links share the limiter's buckets: one per link (the "user": a hash
    // of the token, never the token) inside one for every link (the nil
    // organisation), so a flood of guesses is capped as a whole.
    let link_key: String = Sha256::digest(token.as_bytes())
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    if let crate::ratelimit::Verdict::Limited(retry) = gateway
        .limiter
        .check(OrgId::new(uuid::Uuid::nil()), &format!("shared:{link_key}"))
        .await
    {
        return ApiError::rate_limited(retry.as_secs_f64().ceil().max(1.0) as u64).into_response();
    }
    let Some(channel) = gateway.upstreams.get(REPORTS).cloned() else {
        return refuse(ErrorCode::Unavailable, "the service is unavailable");
    };
    let mut metadata = MetadataMap::new();
    let Ok(context) = MetadataValue::try_from(
        gateway
            .minter
            .mint_anonymous(request_id, Principal::Reports),
    ) else {
        return refuse(ErrorCode::Internal, "internal error");
    };
    metadata.insert(CONTEXT_HEADER, context);
    if let Ok(value) = MetadataValue::try_from(request_id) {
        metadata.insert("x-request-id", value);
    }
    treven_mesh::trace::inject_metadata(&mut metadata);
    let mut request = tonic::Request::from_parts(
        metadata,
        tonic::Extensions::default(),
        reports::OpenPartnerLinkRequest {
            token: token.to_owned(),
            file: file.into(),
            format: format.into(),
        },
    );
    request.set_timeout(gateway.config.upstream_timeout);
    let opened = match ReportsServiceClient::new(channel)
        .open_partner_link(request)
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => {
            let error = ServiceError::from_remote("reports", &status);
            tracing::info!(code = %error.code().as_str(), "partner link not opened");
            return ApiError::from(error).into_response();
        }
    };
    match opened.opened {
        Some(reports::open_partner_link_response::Opened::DownloadUrl(url)) => {
            match HeaderValue::from_str(&url) {
                Ok(location) => {
                    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
                }
                Err(_) => refuse(ErrorCode::Internal, "internal error"),
            }
        }
        Some(reports::open_partner_link_response::Opened::Markdown(markdown)) => {
            let wants_markdown = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|accept| accept.contains("text/markdown"));
            if wants_markdown {
                (
                    [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
                    markdown,
                )
                    .into_response()
            } else {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (
                            header::CONTENT_SECURITY_POLICY,
                            "default-src 'none'; style-src 'unsafe-inline'",
                        ),
                    ],
                    page(&opened.title, opened.version, &markdown),
                )
                    .into_response()
            }
        }
        None => refuse(ErrorCode::Internal, "internal error"),
    }
}

/// A minimal page around the markdown (escaped: nothing in a report is
/// markup for the browser).
fn page(title: &str, version: i32, markdown: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"robots\" content=\"noindex\"><title>{} (version {version})</title>\
         <style>body{{max-width:50rem;margin:2rem auto;font-family:sans-serif}}\
         pre{{white-space:pre-wrap;font-family:inherit;line-height:1.5}}</style></head>\
         <body><pre>{}</pre></body></html>",
        escape(title),
        escape(markdown)
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_the_report() {
        let html = page("A <b>", 2, "<script>alert(1)</script> & 'x'");
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#39;x&#39;"));
        assert!(html.contains("A &lt;b&gt; (version 2)"));
    }
}
