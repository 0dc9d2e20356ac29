//! The organisation's retention settings: `settings.retention` is validated
//! by UpdateOrganisation (admins only), stored in its canonical form, read
//! back by GetOrganisation, and listed for the retention job by the
//! operator's `admin_organisations`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use prost_types::FieldMask;
use serde_json::json;
use support::{TestApp, assert_code, authed, violated_fields};
use tonic::Code;
use treven_mesh::Role;
use treven_mesh::wire::{json_to_struct, struct_to_json};
use treven_proto::treven::tenants::v1 as pb;
use treven_tenants::model::RetentionSettings;

fn settings_update(settings: serde_json::Value) -> pb::UpdateOrganisationRequest {
    pb::UpdateOrganisationRequest {
        organisation: Some(pb::Organisation {
            settings: Some(json_to_struct(&settings)),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["settings".into()],
        }),
    }
}

#[tokio::test]
async fn retention_settings_are_validated_stored_and_read_back() {
    let app = TestApp::spawn().await;
    let org = app.org("retention settings org").await;
    let other = app.org("retention settings other org").await;
    let admin = app.member(org, "ret-admin", Role::Admin).await;
    let analyst = app.member(org, "ret-analyst", Role::Analyst).await;
    let mut client = app.client().await;

    // Valid: whole days in 30..=3650, stored as integers next to other keys.
    let updated = client
        .update_organisation(authed(
            &admin,
            settings_update(json!({
                "allow_self_approval": false,
                "retention": {"uploads_days": 90, "message_bodies_days": 3650}
            })),
        ))
        .await
        .unwrap()
        .into_inner()
        .organisation
        .unwrap();
    let settings = struct_to_json(updated.settings.as_ref().unwrap());
    assert_eq!(settings["retention"]["uploads_days"], 90.0);
    assert_eq!(settings["retention"]["message_bodies_days"], 3650.0);
    let read = client
        .get_organisation(authed(&analyst, pb::GetOrganisationRequest {}))
        .await
        .unwrap()
        .into_inner()
        .organisation
        .unwrap();
    let read = struct_to_json(read.settings.as_ref().unwrap());
    assert_eq!(
        RetentionSettings::parse("settings", &read).unwrap(),
        RetentionSettings {
            uploads_days: Some(90),
            message_bodies_days: Some(3650),
        }
    );

    // Out of bounds, fractional, of the wrong type or unknown: refused,
    // naming the field, and nothing changes.
    for (retention, field) in [
        (
            json!({"uploads_days": 29}),
            "organisation.settings.retention.uploads_days",
        ),
        (
            json!({"uploads_days": 3651}),
            "organisation.settings.retention.uploads_days",
        ),
        (
            json!({"uploads_days": 45.5}),
            "organisation.settings.retention.uploads_days",
        ),
        (
            json!({"message_bodies_days": "90"}),
            "organisation.settings.retention.message_bodies_days",
        ),
        (
            json!({"messages_days": 90}),
            "organisation.settings.retention.messages_days",
        ),
        (json!(true), "organisation.settings.retention"),
    ] {
        let status = assert_code(
            client
                .update_organisation(authed(
                    &admin,
                    settings_update(json!({ "retention": retention })),
                ))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), [field], "{status:?}");
    }

    // Only admins change settings.
    assert_code(
        client
            .update_organisation(authed(
                &analyst,
                settings_update(json!({"retention": {"uploads_days": 30}})),
            ))
            .await,
        Code::PermissionDenied,
    );

    // The retention job's listing (as the operator) sees the stored
    // settings; one organisation, or all of them.
    let listed = app.store.admin_organisations(Some(org)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        RetentionSettings::parse("settings", &listed[0].settings)
            .unwrap()
            .uploads_days,
        Some(90)
    );
    let all = app.store.admin_organisations(None).await.unwrap();
    assert!(all.iter().any(|o| o.id == other));
    let untouched = all.iter().find(|o| o.id == other).unwrap();
    assert!(
        RetentionSettings::parse("settings", &untouched.settings)
            .unwrap()
            .keeps_everything()
    );

    // Removing the retention object keeps everything again.
    let cleared = client
        .update_organisation(authed(&admin, settings_update(json!({"retention": {}}))))
        .await
        .unwrap()
        .into_inner()
        .organisation
        .unwrap();
    assert!(
        struct_to_json(cleared.settings.as_ref().unwrap())
            .get("retention")
            .is_none()
    );
    app.stop().await;
}
