//! Agent runs are audited (start, and completion or failure, with kind,
//! model and tokens), and the retention erasure of expired message bodies:
//! against moto (DynamoDB) and the real tenants service on Postgres. Old
//! conversations and messages are written with old ids and times rather
//! than waited for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use support::{Models, TestApp, authed};
use treven_agents::app::{AuditLog, MessageRetention};
use treven_agents::model::{
    Conversation, ConversationContext, ERASED_CONTENT, Message, MessageRole, Tool, ToolCallRecord,
    ToolStatus,
};
use treven_agents::store::Store;
use treven_mesh::wire::{json_to_struct, struct_to_json};
use treven_mesh::{OrgId, Principal, Role};
use treven_proto::treven::agents::v1 as pb;
use uuid::Uuid;

fn admin_token(app: &TestApp, org: OrgId) -> String {
    app.mint(
        Principal::Gateway,
        Principal::Agents,
        org,
        "admin-1",
        &[Role::Admin],
    )
}

#[tokio::test]
async fn agent_runs_are_audited_from_start_to_end() {
    let mut app = TestApp::spawn_with_tenants(Models::Offline).await;
    let org = app.tenants().org().await;
    let mut client = app.client().await;
    let run = client
        .run_agent(authed(
            &app.token(org),
            pb::RunAgentRequest {
                kind: pb::AgentKind::Pii.into(),
                input: Some(json_to_struct(
                    &serde_json::json!({ "text": "Nothing personal in here." }),
                )),
                model_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let finished = app.finished_run(org, &run.id).await;
    assert_eq!(finished.status, i32::from(pb::RunStatus::Completed));

    // Recorded in the background: wait for both entries.
    let admin = admin_token(&app, org);
    let mut entries = Vec::new();
    for _ in 0..100 {
        entries = app.tenants().audit(&admin, "agent_run", &run.id).await;
        if entries.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    actions.sort_unstable();
    assert_eq!(
        actions,
        ["agent_run.complete", "agent_run.start"],
        "{entries:?}"
    );
    for entry in &entries {
        assert_eq!(entry.actor_id, "user-1");
        let details = struct_to_json(entry.details.as_ref().unwrap());
        assert_eq!(details["kind"], "pii");
        assert_eq!(details["model_id"], "treven-pii");
        if entry.action == "agent_run.complete" {
            assert_eq!(details["input_tokens"], 0.0);
            assert_eq!(details["output_tokens"], 0.0);
            assert!(details.get("duration_ms").is_some());
        }
    }
    app.stop_tenants().await;
}

/// A uuid v7 of `time`.
fn id_at(time: DateTime<Utc>) -> Uuid {
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(time.timestamp()).unwrap(),
        time.timestamp_subsec_nanos(),
    ))
}

async fn conversation(store: &Store, org: OrgId, started: DateTime<Utc>) -> Uuid {
    let conversation = Conversation {
        id: id_at(started),
        org_id: org,
        title: "Recruitment routes".into(),
        context: ConversationContext::default(),
        created_by: "user-1".into(),
        created_at: started,
        updated_at: started,
    };
    store.create_conversation(&conversation).await.unwrap();
    conversation.id
}

async fn message(store: &Store, org: OrgId, conversation: Uuid, at: DateTime<Utc>) -> Uuid {
    let message = Message {
        id: id_at(at),
        conversation_id: conversation,
        role: MessageRole::Assistant,
        content: "Maria at 07700 900123 recruits in Leeds.".into(),
        tool_calls: vec![ToolCallRecord {
            id: "call-1".into(),
            tool: Some(Tool::SearchSources),
            arguments: serde_json::json!({ "query": "Maria Leeds" }),
            status: ToolStatus::Succeeded,
            summary: "3 sources about Maria".into(),
        }],
        citations: Vec::new(),
        model_id: "offline".into(),
        usage: None,
        cost_nanos: 7,
        created_at: at,
        erased_at: None,
    };
    store.put_message(org, &message).await.unwrap();
    message.id
}

#[tokio::test]
async fn retention_erases_expired_message_bodies_once_and_keeps_the_rest() {
    let mut app = TestApp::spawn_with_tenants(Models::Offline).await;
    let org = app.tenants().org().await;
    let other_org = app.tenants().org().await;
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(&app.moto.sdk().await),
        app.config.table.clone(),
    );
    let now = Utc::now();
    let days = |d: i64| now - TimeDelta::days(d);

    // An old conversation with two expired messages and one recent one; a
    // recent conversation; the same old shape in another organisation.
    let old_conversation = conversation(&store, org, days(200)).await;
    let expired_1 = message(&store, org, old_conversation, days(199)).await;
    let expired_2 = message(&store, org, old_conversation, days(120)).await;
    let kept = message(&store, org, old_conversation, days(5)).await;
    let recent_conversation = conversation(&store, org, days(3)).await;
    let recent = message(&store, org, recent_conversation, days(2)).await;
    let foreign_conversation = conversation(&store, other_org, days(200)).await;
    let foreign = message(&store, other_org, foreign_conversation, days(199)).await;

    let operator = app.keys.signer(Principal::Operator).unwrap().clone();
    let retention = MessageRetention::new(
        store.clone(),
        AuditLog::new(
            support::connect(app.tenants().address).await,
            operator.clone(),
        ),
    );
    let context = operator.acting_for(org, "treven-retention", &[Role::Admin], "retention-test");
    let cutoff = days(90);

    // Bounded: one message, then the rest from where it stopped.
    let first = retention
        .erase_expired_message_bodies(&context, cutoff, None, 1)
        .await
        .unwrap();
    assert_eq!(first.messages, 1);
    assert!(first.next.is_some());
    let second = retention
        .erase_expired_message_bodies(&context, cutoff, first.next, 100)
        .await
        .unwrap();
    assert_eq!(second.messages, 1);
    assert_eq!(second.next, None);

    // What the analyst sees: bodies of expired messages gone, metadata
    // kept; the recent ones intact.
    let mut client = app.client().await;
    let listed = client
        .list_messages(authed(
            &app.token(org),
            pb::ListMessagesRequest {
                conversation_id: old_conversation.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(listed.len(), 3);
    for item in &listed {
        let id: Uuid = item.id.parse().unwrap();
        if id == kept {
            assert!(item.content.contains("Maria"));
            assert!(item.erased_at.is_none());
        } else {
            assert!([expired_1, expired_2].contains(&id));
            assert_eq!(item.content, ERASED_CONTENT);
            assert!(item.erased_at.is_some());
            assert_eq!(item.tool_calls.len(), 1);
            let call = &item.tool_calls[0];
            assert!(!format!("{call:?}").contains("Maria"), "{call:?}");
            assert_eq!(item.model_id, "offline");
            assert!(item.created_at.is_some());
        }
    }
    let untouched = |org: OrgId, conversation: Uuid, id: Uuid| {
        let store = store.clone();
        async move {
            let (messages, _) = store
                .list_messages(org, conversation, 100, None)
                .await
                .unwrap();
            let message = messages.into_iter().find(|m| m.id == id).unwrap();
            message.erased_at.is_none() && message.content.contains("Maria")
        }
    };
    assert!(untouched(org, recent_conversation, recent).await);
    assert!(untouched(other_org, foreign_conversation, foreign).await);

    // A re-run erases nothing more and records nothing new.
    let again = retention
        .erase_expired_message_bodies(&context, cutoff, None, 100)
        .await
        .unwrap();
    assert_eq!((again.messages, again.next), (0, None));
    let admin = admin_token(&app, org);
    let entries = app
        .tenants()
        .audit(&admin, "conversation", &old_conversation.to_string())
        .await;
    let erased: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "conversation.messages_erased")
        .collect();
    // One entry per conversation and page: the two bounded passes.
    assert_eq!(erased.len(), 2, "{entries:?}");
    let mut ids: Vec<String> = erased
        .iter()
        .flat_map(|e| {
            let details = struct_to_json(e.details.as_ref().unwrap());
            assert_eq!(details["reason"], "retention");
            assert_eq!(e.actor_id, "treven-retention");
            details["message_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    let mut expected = vec![expired_1.to_string(), expired_2.to_string()];
    expected.sort();
    assert_eq!(ids, expected);
    app.stop_tenants().await;
}
