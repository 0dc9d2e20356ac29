//! Conversations belong to their creator: another user (admins included)
//! cannot list, read or write them and learns nothing of their existence;
//! an admin may read one for oversight, and that read is recorded in the
//! real tenants audit log first. Against moto DynamoDB and the real tenants
//! service on Postgres.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use support::{Models, TestApp, assert_code, authed, org};
use tonic::{Code, Status};
use treven_mesh::wire::struct_to_json;
use treven_mesh::{OrgId, Role};
use treven_proto::treven::agents::v1 as pb;

async fn create(app: &TestApp, token: &str, title: &str) -> String {
    app.client()
        .await
        .create_conversation(authed(
            token,
            pb::CreateConversationRequest {
                context: Some(pb::ConversationContext {
                    country: "GB".into(),
                    sector: "agriculture".into(),
                    time_range: None,
                }),
                title: title.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap()
        .id
}

/// Sends `content` and waits for the reply to finish.
async fn send(app: &TestApp, token: &str, conversation: &str, content: &str) -> Result<(), Status> {
    let mut stream = app
        .client()
        .await
        .send_message(authed(
            token,
            pb::SendMessageRequest {
                conversation_id: conversation.into(),
                content: content.into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("reply in time")?
    {
        if let Some(pb::send_message_response::Event::Error(error)) = event.event {
            panic!("the reply failed: {error:?}");
        }
    }
    Ok(())
}

async fn messages(
    app: &TestApp,
    token: &str,
    conversation: &str,
) -> Result<Vec<pb::Message>, Status> {
    app.client()
        .await
        .list_messages(authed(
            token,
            pb::ListMessagesRequest {
                conversation_id: conversation.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().items)
}

async fn list(
    app: &TestApp,
    token: &str,
    limit: i32,
    cursor: &str,
) -> Result<pb::ListConversationsResponse, Status> {
    app.client()
        .await
        .list_conversations(authed(
            token,
            pb::ListConversationsRequest {
                limit,
                cursor: cursor.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn all_ids(app: &TestApp, token: &str, limit: i32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    for _ in 0..20 {
        let page = list(app, token, limit, &cursor).await.unwrap();
        ids.extend(page.items.into_iter().map(|c| c.id));
        if page.next_cursor.is_empty() {
            return ids;
        }
        cursor = page.next_cursor;
    }
    panic!("the listing did not end");
}

#[tokio::test]
async fn another_user_cannot_list_read_or_write_a_conversation_and_an_admin_reads_it_audited() {
    let mut app = TestApp::spawn_with_tenants(Models::Offline).await;
    let org = app.tenants().org().await;
    let alice = app.token_of(org, "alice", Role::Analyst);
    let bob = app.token_of(org, "bob", Role::Analyst);
    let admin = app.token_of(org, "admin-1", Role::Admin);

    let conversation = create(&app, &alice, "alice's research").await;
    send(
        &app,
        &alice,
        &conversation,
        "labour exploitation agriculture",
    )
    .await
    .unwrap();
    let own = messages(&app, &alice, &conversation).await.unwrap();
    assert_eq!(own.len(), 2, "{own:?}");
    let bobs = create(&app, &bob, "bob's research").await;

    // Bob: not listed, not readable, not writable; the answers are those
    // of an id that does not exist.
    assert_eq!(all_ids(&app, &bob, 50).await, vec![bobs.clone()]);
    let missing = uuid::Uuid::now_v7().to_string();
    let read_other = messages(&app, &bob, &conversation).await.unwrap_err();
    let read_missing = messages(&app, &bob, &missing).await.unwrap_err();
    assert_eq!(read_other.code(), Code::NotFound);
    assert_eq!(read_other.message(), read_missing.message());
    let write_other = send(&app, &bob, &conversation, "hello").await.unwrap_err();
    let write_missing = send(&app, &bob, &missing, "hello").await.unwrap_err();
    assert_eq!(write_other.code(), Code::NotFound);
    assert_eq!(write_other.message(), write_missing.message());
    assert_code(
        messages(&app, &bob, &conversation).await,
        Code::NotFound,
        "NOT_FOUND",
        None,
    );
    // Nothing of Bob's reached Alice's conversation.
    assert_eq!(
        messages(&app, &alice, &conversation).await.unwrap().len(),
        2
    );
    // No oversight entry for Bob's refused reads.
    let resource = conversation.clone();
    assert!(
        app.tenants()
            .audit(&admin, "conversation", &resource)
            .await
            .is_empty()
    );

    // The admin lists only their own conversations…
    assert!(all_ids(&app, &admin, 50).await.is_empty());
    // …reads Alice's for oversight, recorded first in the audit log…
    let seen = messages(&app, &admin, &conversation).await.unwrap();
    assert_eq!(
        seen.iter().map(|m| &m.id).collect::<Vec<_>>(),
        own.iter().map(|m| &m.id).collect::<Vec<_>>()
    );
    let entries = app.tenants().audit(&admin, "conversation", &resource).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.action, treven_agents::app::OVERSIGHT_READ_ACTION);
    assert_eq!(entry.action, "conversation.read_for_oversight");
    assert_eq!(entry.actor_id, "admin-1");
    assert_eq!(entry.org_id, org.to_string());
    let details = struct_to_json(entry.details.as_ref().unwrap());
    assert_eq!(details["owner"], "alice");
    assert_eq!(details["rpc"], "ListMessages");
    // …but cannot write to it.
    assert_code(
        send(&app, &admin, &conversation, "an admin's note").await,
        Code::NotFound,
        "NOT_FOUND",
        None,
    );
    assert_eq!(
        messages(&app, &alice, &conversation).await.unwrap().len(),
        2
    );
    // The owner's own reads are not oversight: still one entry.
    assert_eq!(
        app.tenants()
            .audit(&admin, "conversation", &resource)
            .await
            .len(),
        1
    );
    // Alice still lists hers, and only hers.
    assert_eq!(all_ids(&app, &alice, 50).await, vec![conversation]);
    app.stop_tenants().await;
}

#[tokio::test]
async fn with_the_audit_log_unreachable_an_admin_reads_only_their_own_conversations() {
    let app = TestApp::spawn(Models::Offline).await;
    let a = org();
    let alice = app.token_of(a, "alice", Role::Analyst);
    let admin = app.token_of(a, "admin-1", Role::Admin);
    let conversation = create(&app, &alice, "").await;
    assert_code(
        messages(&app, &admin, &conversation).await,
        Code::Unavailable,
        "UNAVAILABLE",
        None,
    );
    let mine = create(&app, &admin, "mine").await;
    assert!(messages(&app, &admin, &mine).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unrecordable_oversight_read_is_refused() {
    let mut app = TestApp::spawn_with_tenants(Models::Offline).await;
    // An organisation tenants does not know: the audit entry cannot be
    // written, so nothing is shown.
    let stranger = org();
    let alice = app.token_of(stranger, "alice", Role::Analyst);
    let admin = app.token_of(stranger, "admin-1", Role::Admin);
    let conversation = create(&app, &alice, "").await;
    let refused = messages(&app, &admin, &conversation).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    app.stop_tenants().await;
}

#[tokio::test]
async fn listing_pages_through_own_conversations_and_cursors_are_per_user() {
    let app = TestApp::spawn(Models::Offline).await;
    let a = org();
    let alice = app.token_of(a, "alice", Role::Analyst);
    let bob = app.token_of(a, "bob", Role::Analyst);
    let mut alices = Vec::new();
    for i in 0..5 {
        alices.push(create(&app, &alice, &format!("a{i}")).await);
        create(&app, &bob, &format!("b{i}")).await;
    }
    let listed = all_ids(&app, &alice, 2).await;
    alices.reverse();
    assert_eq!(listed, alices);
    // Alice's cursor is not Bob's.
    let page = list(&app, &alice, 2, "").await.unwrap();
    assert_code(
        list(&app, &bob, 2, &page.next_cursor).await,
        Code::InvalidArgument,
        "VALIDATION_ERROR",
        Some("cursor"),
    );
}

/// A conversation row as written before each owner had an index partition.
async fn put_legacy_row(app: &TestApp, org: OrgId, owner: &str, minute: u32) -> String {
    let id = uuid::Uuid::now_v7();
    let at = format!("2026-01-01T10:{minute:02}:00.000000Z");
    let body = serde_json::json!({
        "id": id,
        "org_id": org,
        "title": format!("legacy of {owner}"),
        "context": { "country": "GB", "sector": "", "from": null, "to": null },
        "created_by": owner,
        "created_at": at,
        "updated_at": at,
    });
    let item: HashMap<String, AttributeValue> = HashMap::from([
        ("PK".into(), AttributeValue::S(format!("ORG#{org}"))),
        ("SK".into(), AttributeValue::S(format!("CONV#{id}"))),
        (
            "GSI1PK".into(),
            AttributeValue::S(format!("ORG#{org}#CONV")),
        ),
        ("GSI1SK".into(), AttributeValue::S(format!("{at}#{id}"))),
        ("kind".into(), AttributeValue::S("conversation".into())),
        ("body".into(), AttributeValue::S(body.to_string())),
    ]);
    aws_sdk_dynamodb::Client::new(&app.moto.sdk().await)
        .put_item()
        .table_name(support::TABLE)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    id.to_string()
}

#[tokio::test]
async fn rows_written_before_owner_partitions_stay_listed_for_their_owner_only() {
    let app = TestApp::spawn(Models::Offline).await;
    let a = org();
    let alice = app.token_of(a, "alice", Role::Analyst);
    let bob = app.token_of(a, "bob", Role::Analyst);
    let admin = app.token_of(a, "admin-1", Role::Admin);
    let mut legacy = Vec::new();
    for minute in 0..3 {
        legacy.push(put_legacy_row(&app, a, "alice", minute).await);
        put_legacy_row(&app, a, "bob", minute).await;
    }
    let orphan = put_legacy_row(&app, a, "", 5).await;
    let fresh = create(&app, &alice, "new").await;
    legacy.reverse();
    let mut expected = vec![fresh];
    expected.extend(legacy.iter().cloned());
    // Page sizes that end inside each partition and across them.
    for limit in [1, 2, 3, 50] {
        assert_eq!(
            all_ids(&app, &alice, limit).await,
            expected,
            "limit {limit}"
        );
    }
    assert_eq!(all_ids(&app, &bob, 50).await.len(), 3);
    // Owned legacy rows are readable and writable by their owner only.
    assert!(messages(&app, &alice, &legacy[0]).await.unwrap().is_empty());
    assert_code(
        messages(&app, &bob, &legacy[0]).await,
        Code::NotFound,
        "NOT_FOUND",
        None,
    );
    send(&app, &alice, &legacy[0], "labour exploitation agriculture")
        .await
        .unwrap();
    // Written again, it moved to Alice's partition: listed once, first.
    let after = all_ids(&app, &alice, 2).await;
    assert_eq!(after.len(), 4, "{after:?}");
    assert_eq!(after[0], legacy[0]);
    // A row with no owner is nobody's: listed for nobody, written by nobody.
    for token in [&alice, &bob, &admin] {
        assert!(!all_ids(&app, token, 50).await.contains(&orphan));
        assert_code(
            send(&app, token, &orphan, "hello").await,
            Code::NotFound,
            "NOT_FOUND",
            None,
        );
    }
}
