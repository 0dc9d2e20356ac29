//! Partner links and the report lifecycle through the gateway, as the
//! frontend and a partner's browser use them: a report is approved,
//! exported and shared; a link minted for the grant
//! (`POST /api/reports/{id}/access/{grantId}/links`) opens without any
//! token at `GET /shared/{token}` (download → 303 to the PDF,
//! `?file=evidence` → 303 to the evidence pack, `?file=view` → the report
//! inline); a tampered token is 404; once the grant is
//! revoked the link is 403; every access is in the organisation's audit
//! log. Then the report is archived (hidden from the list), and deleted by
//! an admin (404).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Stack as _;
use support::client::Api;
use support::mesh::Mesh;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partner_opens_the_shared_export_through_its_link_until_the_grant_is_revoked() {
    let mesh = Mesh::start("partner_links").await;
    let org = "linked";
    let admin = mesh.sign_in(org, "ngo", "admin@linked.test", "admin");
    let analyst = mesh.sign_in(org, "ngo", "analyst@linked.test", "analyst");
    let reviewer = mesh.sign_in(org, "ngo", "reviewer@linked.test", "analyst");
    let api = Api::new(&mesh, &analyst);
    let admin_api = Api::new(&mesh, &admin);
    let reviewer_api = Api::new(&mesh, &reviewer);
    let base = mesh.gateway_url().to_owned();

    // A source to cite, a generated report, four-eyes approval, a PDF.
    let source = api
        .ok(
            reqwest::Method::POST,
            "/api/sources",
            Some(json!({
                "url": "https://www.unodc.org/glotip-linked",
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
    mesh.before_generation(source["id"].as_str().unwrap());
    let report = api
        .ok(
            reqwest::Method::POST,
            "/api/reports",
            Some(json!({"scope": {
                "country": "GB",
                "sector": "agriculture",
                "exploitationType": "EXPLOITATION_TYPE_LABOUR",
                "clientType": "ORGANISATION_KIND_FI",
            }})),
        )
        .await;
    let id = report["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let version = loop {
        let got = api
            .ok(reqwest::Method::GET, &format!("/api/reports/{id}"), None)
            .await;
        if got["report"]["status"] == "REPORT_STATUS_DRAFT" {
            break got["version"]["number"].as_i64().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "still generating: {got}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    api.ok(
        reqwest::Method::POST,
        &format!("/api/reports/{id}/submit"),
        Some(json!({"version": version})),
    )
    .await;
    reviewer_api
        .ok(
            reqwest::Method::POST,
            &format!("/api/reports/{id}/approve"),
            Some(json!({"version": version})),
        )
        .await;
    api.ok(
        reqwest::Method::POST,
        &format!("/api/reports/{id}/export"),
        Some(json!({"format": "EXPORT_FORMAT_PDF"})),
    )
    .await;
    let partner = admin_api
        .ok(
            reqwest::Method::POST,
            "/api/partners",
            Some(json!({"name": "linked bank", "kind": "ORGANISATION_KIND_FI", "contactEmail": "fiu@bank.test"})),
        )
        .await;
    let access = api
        .ok(
            reqwest::Method::POST,
            &format!("/api/reports/{id}/share"),
            Some(json!({"partnerId": partner["id"], "permission": "REPORT_PERMISSION_DOWNLOAD"})),
        )
        .await;
    let grant = access["id"].as_str().unwrap().to_owned();

    // The link: bounded expiry, for this grant.
    let (status, refused) = api
        .post(
            &format!("/api/reports/{id}/access/{grant}/links"),
            json!({"expiresInDays": 31}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    let link = api
        .ok(
            reqwest::Method::POST,
            &format!("/api/reports/{id}/access/{grant}/links"),
            Some(json!({"expiresInDays": 2})),
        )
        .await;
    assert_eq!(link["version"], version, "{link}");
    assert_eq!(link["partnerId"], partner["id"], "{link}");
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/shared/"), "{link}");

    // Opened without any token: the PDF through a redirect, the report
    // inline on request.
    let http = http();
    let opened = http.get(format!("{base}{url}")).send().await.unwrap();
    assert_eq!(opened.status().as_u16(), 303);
    assert_eq!(opened.headers()["cache-control"], "no-store");
    assert_eq!(opened.headers()["referrer-policy"], "no-referrer");
    let location = opened.headers()["location"].to_str().unwrap().to_owned();
    let pdf = reqwest::get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(pdf.starts_with(b"%PDF"), "the exported PDF");
    let evidence = http
        .get(format!("{base}{url}?file=evidence"))
        .send()
        .await
        .unwrap();
    assert_eq!(evidence.status().as_u16(), 303);
    let location = evidence.headers()["location"].to_str().unwrap().to_owned();
    let zip = reqwest::get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(zip.starts_with(b"PK"), "the evidence pack");
    let page = http
        .get(format!("{base}{url}?file=view"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = page.text().await.unwrap();
    assert!(page.contains("KEY JUDGEMENTS"), "{page}");
    let markdown = http
        .get(format!("{base}{url}?file=view"))
        .header("accept", "text/markdown")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(markdown.contains("We assess as follows:"), "{markdown}");

    // Tampered or malformed: 404, no detail.
    let mut tampered = url.clone().into_bytes();
    let at = "/shared/".len() + 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(tampered).unwrap(),
        "/shared/x%3Cy".to_owned(),
    ] {
        let answer = http.get(format!("{base}{bad}")).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 404, "{bad}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
    }

    // Revoked: refused.
    api.ok(
        reqwest::Method::DELETE,
        &format!("/api/report-access/{grant}"),
        None,
    )
    .await;
    let answer = http.get(format!("{base}{url}")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "FORBIDDEN", "{body}");

    // The organisation sees every access and the refusal in its audit log.
    let started = Instant::now();
    loop {
        let audit = api
            .ok(
                reqwest::Method::GET,
                &format!("/api/audit?resourceType=report&resourceId={id}&limit=100"),
                None,
            )
            .await;
        let actions: Vec<&str> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["action"].as_str())
            .collect();
        let opens = actions.iter().filter(|a| **a == "report.link.open").count();
        if actions.contains(&"report.link.create")
            && opens == 4
            && actions.contains(&"report.link.refused")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "audit incomplete: {actions:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Archive hides it from the default list; delete (admins) removes it.
    let archived = api
        .ok(
            reqwest::Method::POST,
            &format!("/api/reports/{id}/archive"),
            Some(json!({})),
        )
        .await;
    assert_eq!(archived["archivedBy"], analyst.sub, "{archived}");
    let listed = api.ok(reqwest::Method::GET, "/api/reports", None).await;
    assert!(
        !listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{listed}"
    );
    let listed = api
        .ok(
            reqwest::Method::GET,
            "/api/reports?includeArchived=true",
            None,
        )
        .await;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{listed}"
    );
    let (status, _) = api
        .send(reqwest::Method::DELETE, &format!("/api/reports/{id}"), None)
        .await;
    assert_eq!(status, 403, "analysts do not delete");
    admin_api
        .ok(reqwest::Method::DELETE, &format!("/api/reports/{id}"), None)
        .await;
    let (status, _) = api.get(&format!("/api/reports/{id}")).await;
    assert_eq!(status, 404);
    mesh.stop().await;
}
