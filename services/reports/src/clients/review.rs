//! Calls of the review workflow: who a reviewer is (tenants `GetUser`),
//! who reviews when nobody is assigned (tenants `ListUsers`), and the
//! `notification` events on `user:<subject>` channels.

use std::time::Duration;

use treven_mesh::events::{EventChannel, EventKind};
use treven_mesh::{MeshContext, OrgId, Principal, Role, ServiceError};
use treven_proto::treven::tenants::v1 as tenants;
use uuid::Uuid;

use super::{Clients, remote_error};
use crate::model::Notification;

/// How long a submission waits for the list of the organisation's
/// reviewers before notifying nobody (the list is best-effort).
const REVIEWERS_TIMEOUT: Duration = Duration::from_secs(2);

/// A user of the caller's organisation, as tenants knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgUser {
    /// Their user id in tenants.
    pub id: Uuid,
    /// Their Cognito subject; empty until they first sign in.
    pub subject: String,
    /// Their role; `None` when tenants answers one we do not know.
    pub role: Option<Role>,
}

fn role_of(raw: i32) -> Option<Role> {
    match tenants::Role::try_from(raw) {
        Ok(tenants::Role::Admin) => Some(Role::Admin),
        Ok(tenants::Role::Analyst) => Some(Role::Analyst),
        Ok(tenants::Role::Viewer) => Some(Role::Viewer),
        _ => None,
    }
}

impl Clients {
    /// User `id` of the caller's organisation, asked with the caller's
    /// context (NOT_FOUND when tenants has no such user there).
    pub async fn org_user(&self, context: &MeshContext, id: Uuid) -> Result<OrgUser, ServiceError> {
        let request = self.request(
            context,
            Principal::Tenants,
            tenants::GetUserRequest { id: id.to_string() },
        )?;
        let user = self
            .tenants
            .clone()
            .get_user(request)
            .await
            .map_err(|s| remote_error("tenants", s))?
            .into_inner()
            .user
            .ok_or_else(|| ServiceError::not_found("user"))?;
        Ok(OrgUser {
            id,
            subject: user.cognito_sub,
            role: role_of(user.role),
        })
    }

    /// The subjects of the organisation's analysts and admins who have
    /// signed in (the first 100 of each role), for a submission nobody is
    /// assigned to review. Best-effort: when tenants does not answer within
    /// two seconds the list is empty and a warning is logged.
    pub async fn org_reviewers(&self, context: &MeshContext) -> Vec<String> {
        let mut subjects = Vec::new();
        for role in [tenants::Role::Analyst, tenants::Role::Admin] {
            let request = self.request(
                context,
                Principal::Tenants,
                tenants::ListUsersRequest {
                    limit: 100,
                    cursor: String::new(),
                    role: role.into(),
                },
            );
            let listed = match request {
                Ok(mut request) => {
                    request.set_timeout(REVIEWERS_TIMEOUT);
                    tokio::time::timeout(
                        REVIEWERS_TIMEOUT,
                        self.tenants.clone().list_users(request),
                    )
                    .await
                    .map_err(|_| tonic::Status::deadline_exceeded("listing reviewers timed out"))
                    .and_then(|r| r)
                }
                Err(error) => Err(tonic::Status::from(error)),
            };
            match listed {
                Ok(page) => subjects.extend(
                    page.into_inner()
                        .items
                        .into_iter()
                        .map(|u| u.cognito_sub)
                        .filter(|s| !s.is_empty()),
                ),
                Err(status) => {
                    tracing::warn!(
                        org_id = %context.org_id(),
                        code = ?status.code(),
                        detail = status.message(),
                        "reviewers not listed; the submission notifies nobody"
                    );
                    return Vec::new();
                }
            }
        }
        subjects
    }

    /// Pushes each notification on its recipient's `user:<subject>`
    /// channel, after the commit that stored them. Best-effort: the inbox
    /// is the record; a recipient whose subject is not a UUID has no
    /// channel, and a Redis outage is logged.
    pub async fn push_notifications(&self, org: OrgId, notifications: &[Notification]) {
        for notification in notifications {
            let Ok(user) = Uuid::parse_str(&notification.recipient_id) else {
                tracing::debug!(%org, notification_id = %notification.id, "recipient has no user channel");
                continue;
            };
            if let Err(error) = self
                .events
                .publish(
                    org,
                    &EventChannel::User(user),
                    EventKind::Notification,
                    notification.event_data(),
                )
                .await
            {
                tracing::warn!(%org, notification_id = %notification.id, %error, "notification event not published");
            }
        }
    }
}
