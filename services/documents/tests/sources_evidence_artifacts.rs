//! Sources and trust scores, evidence packs, and report artifacts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read as _;

use support::{TestApp, assert_code, authed, curl_get, org, violated_fields};
use tonic::Code;
use treven_mesh::{Principal, Role};
use treven_proto::treven::documents::v1 as pb;

fn url_source(
    url: &str,
    title: &str,
    kind: pb::PublisherKind,
    days_old: i64,
    primary: bool,
    countries: &[&str],
) -> pb::UpsertSourceRequest {
    let published = chrono::Utc::now() - chrono::Duration::days(days_old);
    pb::UpsertSourceRequest {
        locator: Some(pb::upsert_source_request::Locator::Url(url.into())),
        title: title.into(),
        publisher: "Publisher".into(),
        publisher_kind: kind.into(),
        published_at: Some(prost_types::Timestamp {
            seconds: published.timestamp(),
            nanos: 0,
        }),
        summary: "Forced labour in agriculture and debt bondage.".into(),
        tags: vec!["agriculture".into()],
        countries: countries.iter().map(|c| (*c).to_owned()).collect(),
        sectors: vec!["Agriculture".into()],
        primary_data: primary,
        methodology_documented: primary,
    }
}

#[tokio::test]
async fn sources_are_scored_upserted_refused_and_ranked() {
    let app = TestApp::spawn().await;
    let analyst = app.token(org(), Role::Analyst);
    let mut client = app.client().await;

    let unodc = client
        .upsert_source(authed(
            &analyst,
            url_source(
                "https://www.unodc.org/glotip",
                "Global report",
                pb::PublisherKind::Intergovernmental,
                30,
                true,
                &["GB"],
            ),
        ))
        .await
        .expect("upsert")
        .into_inner()
        .source
        .unwrap();
    let trust = unodc.trust.unwrap();
    assert_eq!(
        (
            trust.total,
            trust.publisher_tier,
            trust.recency,
            trust.primary_data,
            trust.methodology,
            trust.geographic_match
        ),
        (100, 30, 25, 20, 15, 10)
    );
    assert_eq!(
        unodc.publisher_tier,
        pb::PublisherTier::PublisherTier1 as i32
    );

    // The same URL (other case, trailing slash, fragment) updates the same source.
    let again = client
        .upsert_source(authed(
            &analyst,
            url_source(
                "HTTPS://WWW.UNODC.ORG/glotip/#top",
                "Global report 2026",
                pb::PublisherKind::Intergovernmental,
                30,
                true,
                &["GB"],
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    assert_eq!(again.id, unodc.id);
    assert_eq!(again.title, "Global report 2026");
    assert_eq!(
        again.created_at, unodc.created_at,
        "an update keeps the creation time"
    );

    for kind in [
        pb::PublisherKind::AnonymousBlog,
        pb::PublisherKind::UnverifiedSocial,
    ] {
        let status = assert_code(
            client
                .upsert_source(authed(
                    &analyst,
                    url_source("https://blog.example/x", "Rumours", kind, 1, false, &[]),
                ))
                .await,
            Code::InvalidArgument,
        );
        // Refused by the proto's rule (`not_in`), which the OpenAPI
        // document states too.
        assert_eq!(violated_fields(&status), vec!["publisher_kind".to_owned()]);
        assert!(
            status
                .message()
                .contains("must not be PUBLISHER_KIND_ANONYMOUS_BLOG"),
            "{}",
            status.message()
        );
    }
    for (bad, field) in [
        (
            pb::UpsertSourceRequest {
                locator: None,
                ..url_source(
                    "https://x.example",
                    "T",
                    pb::PublisherKind::Ngo,
                    1,
                    false,
                    &[],
                )
            },
            // Neither a URL nor a dataset: the oneof's own rule.
            "locator",
        ),
        (
            url_source(
                "ftp://x.example",
                "T",
                pb::PublisherKind::Ngo,
                1,
                false,
                &[],
            ),
            "url",
        ),
        (
            url_source(
                "https://x.example",
                "",
                pb::PublisherKind::Ngo,
                1,
                false,
                &[],
            ),
            "title",
        ),
        (
            url_source(
                "https://x.example",
                "T",
                pb::PublisherKind::Ngo,
                1,
                false,
                &["United Kingdom"],
            ),
            "countries[0]",
        ),
    ] {
        let status = assert_code(
            client.upsert_source(authed(&analyst, bad)).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec![field.to_owned()]);
    }

    client
        .upsert_source(authed(
            &analyst,
            url_source(
                "https://ngo.example/a",
                "NGO field study",
                pb::PublisherKind::Ngo,
                30,
                true,
                &["GB"],
            ),
        ))
        .await
        .unwrap();
    client
        .upsert_source(authed(
            &analyst,
            url_source(
                "https://news.example/b",
                "Newer news piece",
                pb::PublisherKind::Journalism,
                10,
                false,
                &["GB"],
            ),
        ))
        .await
        .unwrap();
    client
        .upsert_source(authed(
            &analyst,
            url_source(
                "https://news.example/c",
                "Older news piece",
                pb::PublisherKind::Journalism,
                100,
                false,
                &["GB"],
            ),
        ))
        .await
        .unwrap();
    client
        .upsert_source(authed(
            &analyst,
            url_source(
                "https://gov.fr/d",
                "French report",
                pb::PublisherKind::Government,
                10,
                true,
                &["FR"],
            ),
        ))
        .await
        .unwrap();

    // Ranked by trust, then recency; paged without repeats.
    let mut titles = Vec::new();
    let mut cursor = String::new();
    loop {
        let request = pb::SearchSourcesRequest {
            limit: 2,
            cursor: cursor.clone(),
            country: "gb".into(),
            ..Default::default()
        };
        let page = client
            .search_sources(authed(&analyst, request))
            .await
            .expect("search")
            .into_inner();
        titles.extend(page.items.into_iter().map(|s| s.title));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(
        titles,
        [
            "Global report 2026",
            "NGO field study",
            "Newer news piece",
            "Older news piece"
        ]
    );
    let text = pb::SearchSourcesRequest {
        text: "FIELD study".into(),
        ..Default::default()
    };
    let found = client
        .search_sources(authed(&analyst, text))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(
        found.iter().map(|s| s.title.as_str()).collect::<Vec<_>>(),
        ["NGO field study"]
    );
    let strong = pb::SearchSourcesRequest {
        min_trust_score: 95,
        ..Default::default()
    };
    assert_eq!(
        client
            .search_sources(authed(&analyst, strong))
            .await
            .unwrap()
            .into_inner()
            .items
            .len(),
        2
    );
}

#[tokio::test]
async fn an_evidence_pack_zips_the_sources_of_a_report_version() {
    let app = TestApp::spawn().await;
    let org = org();
    let analyst = app.token(org, Role::Analyst);
    let mut client = app.client().await;
    let mut ids = Vec::new();
    for (i, kind) in [pb::PublisherKind::Government, pb::PublisherKind::Ngo]
        .into_iter()
        .enumerate()
    {
        let source = client
            .upsert_source(authed(
                &analyst,
                url_source(
                    &format!("https://s{i}.example"),
                    &format!("Source {i}"),
                    kind,
                    5,
                    true,
                    &["GB"],
                ),
            ))
            .await
            .unwrap();
        ids.push(source.into_inner().source.unwrap().id);
    }
    let report = uuid::Uuid::now_v7().to_string();
    let stored = client
        .store_evidence(authed(
            &app.via(Principal::Reports, &analyst),
            pb::StoreEvidenceRequest {
                report_id: report.clone(),
                version: 1,
                source_ids: ids.clone(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(stored.into_inner().source_count, 2);
    client
        .store_evidence(authed(
            &app.via(Principal::Reports, &analyst),
            pb::StoreEvidenceRequest {
                report_id: report.clone(),
                version: 2,
                source_ids: ids[..1].to_vec(),
            },
        ))
        .await
        .unwrap();
    let key = format!("{org}/reports/{report}/evidence/{}.json", ids[0]);
    app.s3()
        .head_object()
        .bucket(support::BUCKET)
        .key(&key)
        .send()
        .await
        .expect("evidence stored under the DOMAIN key");

    let unknown = pb::StoreEvidenceRequest {
        report_id: report.clone(),
        version: 3,
        source_ids: vec!["0".repeat(32)],
    };
    let status = assert_code(
        client
            .store_evidence(authed(&app.via(Principal::Reports, &analyst), unknown))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["source_ids[0]".to_owned()]);

    let viewer = app.token(org, Role::Viewer);
    let pack = client
        .get_evidence_pack(authed(
            &viewer,
            pb::GetEvidencePackRequest {
                report_id: report.clone(),
                version: 1,
            },
        ))
        .await
        .expect("pack")
        .into_inner();
    assert_eq!((pack.version, pack.source_count), (1, 2));
    let (status, headers, body) = curl_get(&pack.url);
    assert_eq!(status, 200);
    assert!(headers.to_lowercase().contains("application/zip"));
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(body)).expect("a zip");
    let mut names: Vec<String> = archive
        .file_names()
        .map(|name| name.expect("utf-8 name").into_owned())
        .collect();
    names.sort();
    let mut expected = vec!["manifest.json".to_owned()];
    expected.extend(ids.iter().map(|id| format!("sources/{id}.json")));
    expected.sort();
    assert_eq!(names, expected);
    let mut manifest = String::new();
    archive
        .by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    assert!(manifest.contains(&report));

    let newest = client
        .get_evidence_pack(authed(
            &viewer,
            pb::GetEvidencePackRequest {
                report_id: report,
                version: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (newest.version, newest.source_count),
        (2, 1),
        "version 0 means the newest"
    );
}

fn header(
    report: &str,
    version: i32,
    format: pb::ArtifactFormat,
    sha256: &str,
) -> pb::PutArtifactRequest {
    pb::PutArtifactRequest {
        part: Some(pb::put_artifact_request::Part::Header(pb::ArtifactHeader {
            report_id: report.into(),
            version,
            format: format.into(),
            content_type: String::new(),
            sha256: sha256.into(),
        })),
    }
}

fn chunk(bytes: &[u8]) -> pb::PutArtifactRequest {
    pb::PutArtifactRequest {
        part: Some(pb::put_artifact_request::Part::Chunk(bytes.to_vec())),
    }
}

#[tokio::test]
async fn artifacts_stream_in_bounded_and_download_through_a_presigned_url() {
    let app = TestApp::spawn().await;
    let org = org();
    let analyst = app.token(org, Role::Analyst);
    let mut client = app.client().await;
    let report = uuid::Uuid::now_v7().to_string();
    let pdf: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = support::sha256_hex(&pdf);

    let mut messages = vec![header(&report, 2, pb::ArtifactFormat::Pdf, &digest)];
    messages.extend(pdf.chunks(16 * 1024).map(chunk));
    let stored = client
        .put_artifact(authed(
            &app.via(Principal::Reports, &analyst),
            tokio_stream::iter(messages.clone()),
        ))
        .await
        .expect("stored")
        .into_inner();
    assert_eq!(
        (stored.size_bytes, stored.sha256.as_str()),
        (pdf.len() as i64, digest.as_str())
    );
    // A retry with the same bytes is accepted; different bytes for the same version are not.
    client
        .put_artifact(authed(
            &app.via(Principal::Reports, &analyst),
            tokio_stream::iter(messages),
        ))
        .await
        .expect("idempotent retry");
    let other = vec![
        header(&report, 2, pb::ArtifactFormat::Pdf, ""),
        chunk(b"%PDF other"),
    ];
    assert_code(
        client
            .put_artifact(authed(
                &app.via(Principal::Reports, &analyst),
                tokio_stream::iter(other),
            ))
            .await,
        Code::AlreadyExists,
    );

    let link = client
        .presign_artifact(authed(
            &app.token_from(Principal::Reports, org, Role::Viewer),
            pb::PresignArtifactRequest {
                report_id: report.clone(),
                version: 2,
                format: pb::ArtifactFormat::Pdf.into(),
                download_name: "KJ Report – UK.pdf".into(),
            },
        ))
        .await
        .expect("presign")
        .into_inner();
    let (status, headers, body) = curl_get(&link.url);
    assert_eq!(status, 200);
    assert_eq!(body, pdf);
    assert!(headers.contains("application/pdf"), "{headers}");

    let bad_cases: Vec<(Vec<pb::PutArtifactRequest>, &str)> = vec![
        (vec![chunk(b"no header first")], "header"),
        (
            vec![header("nope", 1, pb::ArtifactFormat::Pdf, "")],
            "header.report_id",
        ),
        (
            vec![header(&report, 0, pb::ArtifactFormat::Pdf, "")],
            "header.version",
        ),
        (
            vec![header(&report, 1, pb::ArtifactFormat::Unspecified, "")],
            "header.format",
        ),
        (
            vec![header(&report, 1, pb::ArtifactFormat::Markdown, "")],
            "chunk",
        ),
        (
            vec![
                header(&report, 1, pb::ArtifactFormat::Markdown, &"0".repeat(64)),
                chunk(b"# x"),
            ],
            "header.sha256",
        ),
        (
            vec![
                header(&report, 1, pb::ArtifactFormat::Markdown, ""),
                chunk(&vec![b'x'; 150_000]),
                chunk(&vec![b'x'; 60_000]),
            ],
            "chunk",
        ),
        (
            vec![
                header(&report, 1, pb::ArtifactFormat::Markdown, ""),
                chunk(b"# x"),
                header(&report, 1, pb::ArtifactFormat::Markdown, ""),
            ],
            "header",
        ),
    ];
    for (messages, field) in bad_cases {
        let status = assert_code(
            client
                .put_artifact(authed(
                    &app.via(Principal::Reports, &analyst),
                    tokio_stream::iter(messages),
                ))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(
            violated_fields(&status),
            vec![field.to_owned()],
            "{status:?}"
        );
    }
    let viewer = app.token(org, Role::Viewer);
    let denied = vec![
        header(&report, 3, pb::ArtifactFormat::Markdown, ""),
        chunk(b"# x"),
    ];
    assert_code(
        client
            .put_artifact(authed(
                &app.via(Principal::Reports, &viewer),
                tokio_stream::iter(denied),
            ))
            .await,
        Code::PermissionDenied,
    );
}
