//! Is this connection's user still a member, and with which role?
//!
//! A WebSocket lives longer than any one request: the token stays valid for
//! up to an hour, and the role cache for `TREVEN_ROLE_CACHE_SECS`. So every
//! `TREVEN_GATEWAY_WS_RECHECK_SECS` each connection asks tenants itself
//! (`GetMe`, which reads the user's record, bypassing the gateway's role
//! cache). Tenants publishes no event on user changes, so the interval is
//! what bounds how long a removed user keeps receiving events.
//!
//! - The user is gone (NOT_FOUND / FORBIDDEN, or no role): [`Recheck::Revoked`];
//!   the connection is told and closed.
//! - The role changed: every live subscription is authorised again with the
//!   new role, and the refused ones are reported to be dropped.
//! - The role is admin and did not change: every live conversation
//!   subscription is authorised again all the same. An admin may follow
//!   another user's conversation for oversight, and the agents service
//!   records each oversight read in the audit log when it authorises one
//!   (`conversation.read_for_oversight`), so following stays audited at the
//!   subscription and at every check; one that cannot be authorised (and so
//!   recorded) any more is dropped. The gateway writes no audit entry itself.
//! - Tenants cannot answer: [`Recheck::Unknown`]; the connection keeps going
//!   and closes only after several checks in a row failed.

use std::time::Duration;

use treven_mesh::context::attach_context;
use treven_mesh::events::EventChannel;
use treven_mesh::{ErrorCode, Principal, Role, ServiceError};
use treven_proto::treven::tenants::v1 as tenants;

use super::Shared;
use crate::auth::Identity;
use crate::caller::Caller;

/// How long one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks in a row that may fail before the connection is closed.
pub(super) const MAX_UNKNOWN: u32 = 3;

/// What one check found.
pub(super) enum Recheck {
    /// Still a member, with `role`. When the role changed, `checked` holds
    /// the subscriptions that were authorised again and `refused` those this
    /// role may no longer follow.
    Member {
        role: Role,
        checked: Option<Vec<EventChannel>>,
        refused: Vec<(EventChannel, ServiceError)>,
    },
    /// No longer a member of the organisation.
    Revoked,
    /// Tenants could not tell.
    Unknown(ServiceError),
}

/// The rank of a role, for picking the least privileged of two answers.
fn rank(role: Role) -> u8 {
    match role {
        Role::Viewer => 0,
        Role::Analyst => 1,
        Role::Admin => 2,
    }
}

/// The less privileged of two roles.
pub(super) fn least(a: Role, b: Role) -> Role {
    if rank(a) <= rank(b) { a } else { b }
}

/// A caller acting as `identity` with `role` (a fresh mesh context), for
/// calls the connection makes on its own.
pub(super) fn caller_with_role(shared: &Shared, identity: &Identity, role: Role) -> Caller {
    Caller::new(
        identity.clone(),
        role,
        uuid::Uuid::new_v4().to_string(),
        shared.gateway.minter.clone(),
    )
}

/// Asks tenants who `identity` is now, then checks `channels` again when the
/// role is no longer `known`.
pub(super) async fn recheck(
    shared: &Shared,
    identity: &Identity,
    known: Role,
    channels: Vec<EventChannel>,
) -> Recheck {
    let role = match current_role(shared, identity, known).await {
        Ok(Some(role)) => role,
        Ok(None) => return Recheck::Revoked,
        Err(error) => return Recheck::Unknown(error),
    };
    if role == known {
        let refused = if role == Role::Admin {
            let conversations: Vec<EventChannel> = channels
                .into_iter()
                .filter(|c| matches!(c, EventChannel::Conversation(_)))
                .collect();
            authorize_again(shared, identity, role, &conversations).await
        } else {
            Vec::new()
        };
        return Recheck::Member {
            role,
            checked: None,
            refused,
        };
    }
    tracing::info!(org_id = %identity.org_id, ?known, ?role, "websocket user's role changed");
    let refused = authorize_again(shared, identity, role, &channels).await;
    Recheck::Member {
        role,
        checked: Some(channels),
        refused,
    }
}

/// Authorises `channels` again as `identity` with `role`; the refused ones
/// with why.
async fn authorize_again(
    shared: &Shared,
    identity: &Identity,
    role: Role,
    channels: &[EventChannel],
) -> Vec<(EventChannel, ServiceError)> {
    if channels.is_empty() {
        return Vec::new();
    }
    let caller = caller_with_role(shared, identity, role);
    let mut refused = Vec::new();
    for channel in channels {
        if let Err(error) =
            super::authorize::authorize_channel(shared.authorizer.as_ref(), &caller, *channel).await
        {
            refused.push((*channel, error));
        }
    }
    refused
}

/// The user's role per tenants, `None` when they are no longer a member.
async fn current_role(
    shared: &Shared,
    identity: &Identity,
    known: Role,
) -> Result<Option<Role>, ServiceError> {
    let caller = caller_with_role(shared, identity, known);
    let mut request = tonic::Request::new(tenants::GetMeRequest {});
    request.set_timeout(CHECK_TIMEOUT);
    attach_context(&mut request, &caller.context_for(Principal::Tenants))?;
    if let Ok(value) = caller.request_id.parse() {
        request.metadata_mut().insert("x-request-id", value);
    }
    let mut client = shared.tenants.clone();
    let status = match tokio::time::timeout(CHECK_TIMEOUT, client.get_me(request)).await {
        Ok(Ok(response)) => {
            let user = response.into_inner().user.unwrap_or_default();
            return Ok(match tenants::Role::try_from(user.role) {
                Ok(tenants::Role::Admin) => Some(Role::Admin),
                Ok(tenants::Role::Analyst) => Some(Role::Analyst),
                Ok(tenants::Role::Viewer) => Some(Role::Viewer),
                _ => None,
            });
        }
        Ok(Err(status)) => status,
        Err(_) => tonic::Status::deadline_exceeded("membership check timed out"),
    };
    match ErrorCode::of_status(&status) {
        ErrorCode::NotFound | ErrorCode::Forbidden => Ok(None),
        code => {
            tracing::warn!(%code, detail = status.message(), "websocket membership check failed");
            Err(ServiceError::new(code, "cannot check your membership"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_privileged_role_wins() {
        assert_eq!(least(Role::Admin, Role::Viewer), Role::Viewer);
        assert_eq!(least(Role::Analyst, Role::Admin), Role::Analyst);
        assert_eq!(least(Role::Viewer, Role::Viewer), Role::Viewer);
    }
}
