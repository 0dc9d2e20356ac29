//! The analyst journey's steps, shared by the development-shape mesh
//! (`journey.rs`) and the production shape (`prodlike.rs`): everything goes
//! through the gateway of a [`Stack`], as the frontend drives it. The
//! report is written and submitted by one analyst, sent back with a comment
//! by a second analyst, revised and submitted again, and approved by the
//! second (four-eyes; self-approval is refused); a partner downloads the
//! export through a link that is refused once the grant is revoked.

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::time::Duration;

use super::Stack;
use super::client::{Api, Socket};
use super::mesh::User;

/// What one organisation's journey made, for the cross-organisation checks.
#[derive(Debug)]
pub struct Made {
    pub analyst: User,
    pub reviewer: User,
    pub report_id: String,
    pub document_id: String,
    pub conversation_id: String,
}

pub const CHAT_REPLY: [&str; 3] = ["Recruitment ", "moved to closed ", "messaging groups."];

/// One organisation's whole journey through `stack`'s gateway.
pub async fn journey(mesh: &(impl Stack + ?Sized), org: &str) -> Made {
    let admin = mesh.sign_in(org, "ngo", &format!("admin@{org}.test"), "admin");
    let analyst = mesh.sign_in(org, "ngo", &format!("analyst@{org}.test"), "analyst");
    // Four-eyes: a second analyst approves what the first wrote and submitted.
    let reviewer = mesh.sign_in(org, "ngo", &format!("reviewer@{org}.test"), "analyst");
    let api = Api::new(mesh, &analyst);
    let reviewer_api = Api::new(mesh, &reviewer);
    let admin_api = Api::new(mesh, &admin);

    // Signed in: the gateway knows who and in which organisation.
    let me = api.ok(reqwest::Method::GET, "/api/me", None).await;
    assert_eq!(me["organisation"]["id"], analyst.org_id.as_str(), "{me}");

    // A source document through the presigned URL.
    let bytes = format!("Field notes on seasonal agriculture recruitment in {org}.").into_bytes();
    let created = api
        .ok(
            reqwest::Method::POST,
            "/api/documents/uploads",
            Some(json!({
                "fileName": "field-notes.txt",
                "contentType": "text/plain",
                "sizeBytes": bytes.len(),
                "sha256": hex(&Sha256::digest(&bytes)),
            })),
        )
        .await;
    let document_id = created["document"]["id"].as_str().unwrap().to_owned();
    let mut put = reqwest::Client::new().put(created["uploadUrl"].as_str().unwrap());
    for (name, value) in created["uploadHeaders"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let stored = put.body(bytes).send().await.unwrap();
    assert!(stored.status().is_success(), "PUT {}", stored.status());
    let completed = api
        .ok(
            reqwest::Method::POST,
            &format!("/api/documents/{document_id}/complete"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        completed["status"], "DOCUMENT_STATUS_AVAILABLE",
        "{completed}"
    );

    // A trusted source.
    let source = api
        .ok(
            reqwest::Method::POST,
            "/api/sources",
            Some(json!({
                "url": format!("https://www.unodc.org/glotip-{org}"),
                "title": "Global Report on Trafficking in Persons",
                "publisher": "UNODC",
                "publisherKind": "PUBLISHER_KIND_INTERGOVERNMENTAL",
                "publishedAt": "2026-06-01T00:00:00Z",
                "summary": "Detected victims of trafficking for forced labour rose in Western Europe.",
                "countries": ["GB"],
                "sectors": ["agriculture"],
                "primaryData": true,
                "methodologyDocumented": true,
            })),
        )
        .await;
    assert!(int(&source["trust"]["total"]) > 50, "{source}");

    // Chat, streamed over the WebSocket.
    let conversation = api
        .ok(
            reqwest::Method::POST,
            "/api/conversations",
            Some(json!({"title": "UK agriculture", "context": {"country": "GB", "sector": "agriculture"}})),
        )
        .await;
    let conversation_id = conversation["id"].as_str().unwrap().to_owned();
    let mut socket = Socket::connect(mesh, &analyst).await;
    mesh.before_chat(&CHAT_REPLY);
    socket
        .send(json!({"type": "chat", "conversationId": conversation_id, "content": "What changed in recruitment?"}))
        .await;
    let reply = socket
        .until(Duration::from_secs(60), |m| {
            m["type"] == "error"
                || m["data"].get("done").is_some()
                || m["data"].get("error").is_some()
        })
        .await;
    let text: String = reply
        .iter()
        .filter_map(|m| m["data"]["textDelta"]["text"].as_str())
        .collect();
    assert_eq!(text, CHAT_REPLY.concat(), "{reply:#?}");
    assert!(
        reply.last().unwrap()["data"].get("done").is_some(),
        "{reply:#?}"
    );

    // A report, its generation watched over the WebSocket.
    mesh.before_generation(source["id"].as_str().unwrap());
    let report = api
        .ok(
            reqwest::Method::POST,
            "/api/reports",
            Some(json!({
                "scope": {
                    "country": "GB",
                    "sector": "agriculture",
                    "exploitationType": "EXPLOITATION_TYPE_LABOUR",
                    "clientType": "ORGANISATION_KIND_FI",
                },
                "documentIds": [document_id],
            })),
        )
        .await;
    let report_id = report["id"].as_str().unwrap().to_owned();
    assert_eq!(report["status"], "REPORT_STATUS_GENERATING", "{report}");
    socket
        .send(json!({"type": "subscribe", "channel": format!("report:{report_id}"), "lastEventId": "0-0"}))
        .await;
    let progress = socket
        .until(Duration::from_secs(180), |m| {
            m["type"] == "report:update" && m["data"]["status"] == "draft"
        })
        .await;
    let updates = progress
        .iter()
        .filter(|m| m["type"] == "report:update")
        .count();
    assert!(
        updates >= 2,
        "progress and the final status arrive as events: {progress:#?}"
    );

    let got = api
        .ok(
            reqwest::Method::GET,
            &format!("/api/reports/{report_id}"),
            None,
        )
        .await;
    assert_eq!(got["report"]["status"], "REPORT_STATUS_DRAFT", "{got}");
    let version = got["version"]["number"].as_i64().unwrap();
    let key_judgements = got["content"]["keyJudgements"]
        .as_array()
        .map_or(0, Vec::len);
    assert!((5..=10).contains(&key_judgements), "{got}");
    // Generated from the organisation's own source, and citing it.
    let cited: Vec<&str> = got["content"]["citations"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["source"]["sourceId"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        cited.contains(&source["id"].as_str().unwrap()),
        "cites {cited:?}; {}",
        got["version"]
    );
    // The generated draft passes every blocking quality check.
    let checks = got["version"]["qualityChecks"].as_array().unwrap();
    let blocking: Vec<&Value> = checks.iter().filter(|c| c["blocking"] == true).collect();
    assert_eq!(blocking.len(), 5, "{checks:?}");
    assert!(
        blocking.iter().all(|c| c["passed"] == true),
        "blocking checks fail: {checks:#?}"
    );

    // The edit keeps the generated introduction (and its citations) and adds
    // a cited paragraph, so the report still passes its checks.
    let introduction_citations: Vec<Value> = got["content"]["citations"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter(|c| c["section"] == "introduction")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let marker = introduction_citations
        .first()
        .and_then(|c| c["id"].as_str())
        .expect("the generated introduction cites a source")
        .to_owned();
    let generated_introduction = got["content"]["introduction"].as_str().unwrap().to_owned();

    // An edit with personal data is blocked, then saved once redacted.
    let edit = |decisions: Value| {
        json!({
            "content": {
                "introduction": format!(
                    "{generated_introduction}\n\nRecruiters used jane.doe@example.com to contact workers [{marker}]."
                ),
                "citations": introduction_citations,
            },
            "reason": "add the recruiter contact",
            "baseVersion": version,
            "piiDecisions": decisions,
        })
    };
    let path = format!("/api/reports/{report_id}/sections/introduction");
    let (status, blocked) = api.patch(&path, edit(json!([]))).await;
    assert_eq!(status, 422, "{blocked}");
    assert_eq!(blocked["error"]["code"], "PII_DETECTED", "{blocked}");
    let finding = find_finding_id(&blocked).expect("the error names the finding");
    let saved = api
        .ok(
            reqwest::Method::PATCH,
            &path,
            Some(edit(
                json!([{"findingId": finding, "action": "PII_ACTION_REDACT"}]),
            )),
        )
        .await;
    let introduction = saved["content"]["introduction"].as_str().unwrap();
    assert!(
        introduction.contains("[EMAIL]") && !introduction.contains("jane.doe"),
        "{saved}"
    );
    let version = saved["version"]["number"].as_i64().unwrap();

    // No export before approval; then submit, approve, export, download.
    let (status, refused) = api
        .post(
            &format!("/api/reports/{report_id}/export"),
            json!({"format": "EXPORT_FORMAT_PDF"}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "FAILED_PRECONDITION", "{refused}");
    let submitted = api
        .ok(
            reqwest::Method::POST,
            &format!("/api/reports/{report_id}/submit"),
            Some(json!({"version": version})),
        )
        .await;
    assert_eq!(
        submitted["submission"]["submittedBy"], analyst.sub,
        "{submitted}"
    );
    let (status, refused) = api
        .post(
            &format!("/api/reports/{report_id}/approve"),
            json!({"version": version}),
        )
        .await;
    assert_eq!(status, 403, "self-approval: {refused}");
    assert_eq!(refused["error"]["code"], "FORBIDDEN", "{refused}");

    // Review: the second analyst comments on the introduction and sends the
    // report back to draft; the author is told, revises and submits again.
    let comment = reviewer_api
        .ok(
            reqwest::Method::POST,
            &format!("/api/reports/{report_id}/comments"),
            Some(json!({
                "body": "Say which season the recruitment peaks in.",
                "version": version,
                "section": "introduction",
            })),
        )
        .await;
    let comment_id = comment["id"].as_str().expect("a comment id").to_owned();
    let sent_back = reviewer_api
        .ok(
            reqwest::Method::POST,
            &format!("/api/reports/{report_id}/request-changes"),
            Some(json!({
                "version": version,
                "reason": "One open comment on the introduction.",
                "commentIds": [comment_id],
            })),
        )
        .await;
    assert_eq!(sent_back["status"], "REPORT_STATUS_DRAFT", "{sent_back}");
    let inbox = api
        .ok(reqwest::Method::GET, "/api/notifications", None)
        .await;
    let kinds: Vec<&str> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["reportId"] == report_id.as_str())
        .filter_map(|n| n["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"NOTIFICATION_KIND_CHANGES_REQUESTED"),
        "the author is told: {inbox}"
    );
    assert!(
        kinds.contains(&"NOTIFICATION_KIND_COMMENT_ADDED"),
        "the author is told of the comment: {inbox}"
    );
    let revised_introduction = format!(
        "{}\n\nRecruitment peaks before the summer harvest [{marker}].",
        saved["content"]["introduction"].as_str().unwrap()
    );
    let revised = api
        .ok(
            reqwest::Method::PATCH,
            &path,
            Some(json!({
                "content": {
                    "introduction": revised_introduction,
                    "citations": introduction_citations,
                },
                "reason": "answer the review",
                "baseVersion": version,
            })),
        )
        .await;
    let version = revised["version"]["number"].as_i64().unwrap();
    api.ok(
        reqwest::Method::POST,
        &format!("/api/reports/{report_id}/comments/{comment_id}/resolve"),
        Some(json!({})),
    )
    .await;
    api.ok(
        reqwest::Method::POST,
        &format!("/api/reports/{report_id}/submit"),
        Some(json!({"version": version})),
    )
    .await;
    let approved = reviewer_api
        .ok(
            reqwest::Method::POST,
            &format!("/api/reports/{report_id}/approve"),
            Some(json!({"version": version})),
        )
        .await;
    assert_eq!(approved["status"], "REPORT_STATUS_APPROVED", "{approved}");
    assert_eq!(
        approved["approval"]["approvedBy"], reviewer.sub,
        "{approved}"
    );

    // The approved version's evidence pack holds the source it cites.
    let pack = api
        .ok(
            reqwest::Method::GET,
            &format!("/api/reports/{report_id}/evidence"),
            None,
        )
        .await;
    assert_eq!(pack["version"], version, "{pack}");
    assert!(int(&pack["sourceCount"]) >= 1, "{pack}");
    let zip = reqwest::get(pack["url"].as_str().unwrap()).await.unwrap();
    assert!(
        zip.status().is_success(),
        "evidence download {}",
        zip.status()
    );
    let zip = zip.bytes().await.unwrap();
    assert!(zip.starts_with(b"PK"), "a zip");
    let source_id = source["id"].as_str().unwrap();
    assert!(
        zip.windows(source_id.len())
            .any(|w| w == source_id.as_bytes()),
        "the pack names the cited source"
    );
    let export = api
        .ok(
            reqwest::Method::POST,
            &format!("/api/reports/{report_id}/export"),
            Some(json!({"format": "EXPORT_FORMAT_PDF"})),
        )
        .await;
    let pdf = reqwest::get(export["url"].as_str().unwrap()).await.unwrap();
    assert!(pdf.status().is_success(), "download {}", pdf.status());
    let pdf = pdf.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF"), "a PDF");

    // Shared with a partner (partners are managed by admins).
    let partner = admin_api
        .ok(
            reqwest::Method::POST,
            "/api/partners",
            Some(json!({"name": format!("{org} bank"), "kind": "ORGANISATION_KIND_FI", "contactEmail": "fiu@bank.test"})),
        )
        .await;
    let access = api
        .ok(
            reqwest::Method::POST,
            &format!("/api/reports/{report_id}/share"),
            Some(json!({"partnerId": partner["id"], "permission": "REPORT_PERMISSION_DOWNLOAD"})),
        )
        .await;
    assert_eq!(access["partnerId"], partner["id"], "{access}");

    // The partner opens the shared export through its link, without an
    // account; once the grant is revoked the same link is refused.
    let grant_id = access["id"].as_str().unwrap();
    let link = api
        .ok(
            reqwest::Method::POST,
            &format!("/api/reports/{report_id}/access/{grant_id}/links"),
            Some(json!({"expiresInDays": 7})),
        )
        .await;
    let link_url = format!("{}{}", mesh.gateway_url(), link["url"].as_str().unwrap());
    let partner_pdf = reqwest::get(&link_url).await.unwrap();
    assert!(
        partner_pdf.status().is_success(),
        "the partner's download {}",
        partner_pdf.status()
    );
    assert!(
        partner_pdf.bytes().await.unwrap().starts_with(b"%PDF"),
        "the partner gets the exported PDF"
    );
    admin_api
        .ok(
            reqwest::Method::DELETE,
            &format!("/api/report-access/{grant_id}"),
            None,
        )
        .await;
    let refused_link = reqwest::get(&link_url).await.unwrap();
    assert_eq!(
        refused_link.status().as_u16(),
        403,
        "a revoked grant's link"
    );

    // The audit trail has every step (reports relays its entries from its
    // outbox right after each commit: wait for the last ones).
    let needed = [
        "report.create",
        "report.generate",
        "report.pii_blocked",
        "report.pii_decision",
        "report.section.update",
        "report.submit",
        "report.comment.add",
        "report.changes_requested",
        "report.comment.resolve",
        "report.approve",
        "report.export",
        "report_access.grant",
        "report.link.create",
        "report.link.open",
        "report.link.refused",
    ];
    let mut actions: Vec<String> = Vec::new();
    for _ in 0..100 {
        let audit = admin_api
            .ok(
                reqwest::Method::GET,
                &format!("/api/audit?resourceType=report&resourceId={report_id}&limit=100"),
                None,
            )
            .await;
        actions = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["action"].as_str().map(str::to_owned))
            .collect();
        if needed.iter().all(|n| actions.iter().any(|a| a == n)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for needed in needed {
        assert!(
            actions.iter().any(|a| a == needed),
            "no audit entry {needed}: {actions:?}"
        );
    }

    // The admin exports the last hour of the log as JSON Lines: the same
    // steps, oldest first, and the export itself is audited.
    let stamp =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let now = chrono::Utc::now();
    let (status, body) = admin_api
        .get(&format!(
            "/api/audit/export?since={}&until={}&resourceType=report&resourceId={report_id}",
            stamp(now - chrono::TimeDelta::hours(1)),
            stamp(now + chrono::TimeDelta::minutes(1)),
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let lines: Vec<Value> = match body {
        Value::String(text) => text
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON entry per line"))
            .collect(),
        one => vec![one],
    };
    let exported: Vec<&str> = lines
        .iter()
        .map(|line| {
            line["event"]["action"]
                .as_str()
                .expect("an entry, not an error")
        })
        .collect();
    assert_eq!(exported.first(), Some(&"report.create"), "{exported:?}");
    assert!(exported.contains(&"report.approve"), "{exported:?}");
    assert_eq!(exported.len(), actions.len(), "{exported:?} vs {actions:?}");
    let audited = admin_api
        .ok(
            reqwest::Method::GET,
            "/api/audit?resourceType=audit_log",
            None,
        )
        .await;
    assert_eq!(audited["items"][0]["action"], "audit.export", "{audited}");

    Made {
        analyst,
        reviewer,
        report_id,
        document_id,
        conversation_id,
    }
}

/// The id of the first PII finding in an error body, wherever the details
/// put it.
fn find_finding_id(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(id)), Some(_)) = (map.get("id"), map.get("placeholder")) {
                return Some(id.clone());
            }
            map.values().find_map(find_finding_id)
        }
        Value::Array(items) => items.iter().find_map(find_finding_id),
        Value::String(text) if text.starts_with('[') || text.starts_with('{') => {
            serde_json::from_str(text)
                .ok()
                .as_ref()
                .and_then(find_finding_id)
        }
        _ => None,
    }
}

/// A proto3 JSON integer: a number, or a string for 64-bit fields.
fn int(value: &Value) -> i64 {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What each organisation must not see of the other's, and what it sees of
/// its own: the other's report, versions, document and conversation are 404,
/// approving the other's report is 404, it lists only its own report, and has
/// its own token usage.
pub async fn never_see_each_other(mesh: &(impl Stack + ?Sized), a: &Made, b: &Made) {
    for (me, other) in [(&a, &b), (&b, &a)] {
        let api = Api::new(mesh, &me.analyst);
        for path in [
            format!("/api/reports/{}", other.report_id),
            format!("/api/reports/{}/versions", other.report_id),
            format!("/api/documents/{}", other.document_id),
            format!("/api/conversations/{}/messages", other.conversation_id),
        ] {
            let (status, body) = api.get(&path).await;
            assert_eq!(status, 404, "{path}: {body}");
        }
        let (status, body) = api
            .post(
                &format!("/api/reports/{}/approve", other.report_id),
                json!({"version": 1}),
            )
            .await;
        assert_eq!(status, 404, "approve another organisation's report: {body}");
        let reports = api.ok(reqwest::Method::GET, "/api/reports", None).await;
        let ids: Vec<&str> = reports["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(
            ids,
            vec![me.report_id.as_str()],
            "only its own report is listed"
        );
        // Search finds its own report by a word of its content, never the
        // other's (whose generated content has the same words).
        let own = api
            .ok(
                reqwest::Method::GET,
                &format!("/api/reports/{}", me.report_id),
                None,
            )
            .await;
        let word = content_word(&own["content"]).expect("a word of the content");
        let found = api
            .ok(
                reqwest::Method::GET,
                &format!("/api/reports?q={word}"),
                None,
            )
            .await;
        let ids: Vec<&str> = found["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(ids, vec![me.report_id.as_str()], "search for {word:?}");
        let usage = api.ok(reqwest::Method::GET, "/api/usage", None).await;
        assert!(int(&usage["total"]["inputTokens"]) > 0, "{usage}");
    }
}

/// A plain word (8+ ASCII letters) of a report's first key judgement.
fn content_word(content: &Value) -> Option<String> {
    content["keyJudgements"][0]["text"]
        .as_str()?
        .split(|c: char| !c.is_ascii_alphabetic())
        .find(|w| w.len() >= 8)
        .map(str::to_lowercase)
}
