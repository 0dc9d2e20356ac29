//! May this caller follow this channel?
//!
//! Subscriptions are always keyed by the caller's own organisation, so
//! events of another organisation can never reach them. On top of that, a
//! subscription is only made after the service that owns the resource says
//! it exists in the caller's organisation and the caller may read it, asked
//! with the caller's own mesh context:
//!
//! | channel | call |
//! | --- | --- |
//! | `report:<id>` | `ReportsService/GetReport` |
//! | `conversation:<id>` | `AgentsService/ListMessages` (limit 1) |
//! | `run:<id>` | `AgentsService/GetRun` |
//! | `user:<id>` | none: only the caller's own Cognito subject ([`own_user_channel`]) |
//!
//! When the owner cannot be asked (down, timed out) the subscription is
//! refused with UNAVAILABLE: the check never fails open.

use std::time::Duration;

use futures::future::BoxFuture;
use tonic::transport::Channel;
use treven_mesh::context::attach_context;
use treven_mesh::events::EventChannel;
use treven_mesh::{ErrorCode, Principal, ServiceError};
use treven_proto::treven::agents::v1 as agents;
use treven_proto::treven::agents::v1::agents_service_client::AgentsServiceClient;
use treven_proto::treven::reports::v1 as reports;
use treven_proto::treven::reports::v1::reports_service_client::ReportsServiceClient;

use super::Shared;
use crate::auth::Identity;
use crate::caller::Caller;
use crate::ratelimit::Verdict;
use crate::state::Gateway;

/// Decides whether a caller may subscribe to a channel.
pub trait ChannelAuthorizer: Send + Sync + std::fmt::Debug + 'static {
    /// `Ok` when the resource behind `channel` exists in the caller's
    /// organisation and the caller may read it; otherwise the error the
    /// client is told (NOT_FOUND, FORBIDDEN, UNAVAILABLE, …).
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        channel: EventChannel,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;
}

/// Asks the owning service over gRPC (the default).
#[derive(Debug, Clone)]
pub struct GrpcChannelAuthorizer {
    reports: ReportsServiceClient<Channel>,
    agents: AgentsServiceClient<Channel>,
    timeout: Duration,
}

/// How long one check may take before the subscription is refused.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

impl GrpcChannelAuthorizer {
    /// Checks with the reports and agents services behind these channels.
    pub fn new(reports: Channel, agents: Channel) -> Self {
        Self {
            reports: ReportsServiceClient::new(reports),
            agents: AgentsServiceClient::new(agents),
            timeout: CHECK_TIMEOUT,
        }
    }

    /// Uses the gateway's upstream channels.
    pub fn from_gateway(gateway: &Gateway) -> anyhow::Result<Self> {
        let upstream = |name: &str| {
            gateway
                .upstreams
                .get(name)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no upstream channel for {name}"))
        };
        Ok(Self::new(
            upstream("treven.reports.v1.ReportsService")?,
            upstream("treven.agents.v1.AgentsService")?,
        ))
    }

    async fn check(&self, caller: &Caller, channel: EventChannel) -> Result<(), tonic::Status> {
        let id = channel.id().to_string();
        match channel {
            EventChannel::Report(_) => {
                let request = self.request(
                    caller,
                    Principal::Reports,
                    reports::GetReportRequest { id, version: 0 },
                )?;
                self.reports.clone().get_report(request).await?;
            }
            EventChannel::Conversation(_) => {
                let request = self.request(
                    caller,
                    Principal::Agents,
                    agents::ListMessagesRequest {
                        limit: 1,
                        cursor: String::new(),
                        conversation_id: id,
                    },
                )?;
                self.agents.clone().list_messages(request).await?;
            }
            EventChannel::Run(_) => {
                let request =
                    self.request(caller, Principal::Agents, agents::GetRunRequest { id })?;
                self.agents.clone().get_run(request).await?;
            }
            EventChannel::User(user) => {
                own_user_channel(caller, user).map_err(tonic::Status::from)?;
            }
        }
        Ok(())
    }

    fn request<T>(
        &self,
        caller: &Caller,
        audience: Principal,
        message: T,
    ) -> Result<tonic::Request<T>, tonic::Status> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        attach_context(&mut request, &caller.context_for(audience))?;
        if let Ok(value) = caller.request_id.parse() {
            request.metadata_mut().insert("x-request-id", value);
        }
        Ok(request)
    }
}

impl ChannelAuthorizer for GrpcChannelAuthorizer {
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        channel: EventChannel,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let outcome = tokio::time::timeout(self.timeout, self.check(caller, channel)).await;
            let status = match outcome {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(status)) => status,
                Err(_) => tonic::Status::deadline_exceeded("channel check timed out"),
            };
            let code = ErrorCode::of_status(&status);
            tracing::info!(%channel, %code, grpc = ?status.code(), detail = status.message(), "subscription refused");
            Err(refusal(code, &channel))
        })
    }
}

/// Whether `caller` may follow `channel`: a `user:<id>` channel only when
/// `<id>` is the caller's own verified subject (decided here, with no call:
/// never another user's); every other channel as `authorizer` says.
pub async fn authorize_channel(
    authorizer: &dyn ChannelAuthorizer,
    caller: &Caller,
    channel: EventChannel,
) -> Result<(), ServiceError> {
    match channel {
        EventChannel::User(user) => own_user_channel(caller, user),
        _ => authorizer.authorize(caller, channel).await,
    }
}

/// `Ok` when `user` is the subject of the caller's verified token;
/// FORBIDDEN otherwise (another user's notifications are never followed).
pub fn own_user_channel(caller: &Caller, user: uuid::Uuid) -> Result<(), ServiceError> {
    match uuid::Uuid::parse_str(&caller.identity.sub) {
        Ok(own) if own == user => Ok(()),
        _ => Err(ServiceError::new(
            ErrorCode::Forbidden,
            "you may follow only your own notifications (user:<your subject>)",
        )),
    }
}

/// What the client is told when the owner refused or could not answer;
/// the owner's own message is not passed on.
pub fn refusal(code: ErrorCode, channel: &EventChannel) -> ServiceError {
    let kind = channel.kind();
    let message = match code {
        ErrorCode::NotFound => format!("no such {kind} in your organisation"),
        ErrorCode::Forbidden => format!("you may not follow this {kind}"),
        ErrorCode::Unauthorized => "your session is no longer valid".to_owned(),
        ErrorCode::Unavailable | ErrorCode::RateLimited => {
            format!("cannot check access to this {kind} right now, retry later")
        }
        ErrorCode::ValidationError => format!("not a valid {kind} id"),
        _ => format!("cannot follow this {kind}"),
    };
    let code = match code {
        ErrorCode::NotFound
        | ErrorCode::Forbidden
        | ErrorCode::Unauthorized
        | ErrorCode::Unavailable
        | ErrorCode::RateLimited
        | ErrorCode::ValidationError => code,
        // Anything else the owner said is still a refusal.
        _ => ErrorCode::Forbidden,
    };
    ServiceError::new(code, message)
}

/// A caller for one action of a connection: the rate limit counted, the
/// role looked up again (a removed user loses access without reconnecting),
/// a fresh short-lived mesh context.
pub(super) async fn act_as(shared: &Shared, identity: &Identity) -> Result<Caller, ServiceError> {
    let gateway = &shared.gateway;
    if let Verdict::Limited(retry) = gateway.limiter.check(identity.org_id, &identity.sub).await {
        let seconds = retry.as_secs_f64().ceil().max(1.0);
        return Err(ServiceError::new(
            ErrorCode::RateLimited,
            format!("too many requests, retry in {seconds} s"),
        ));
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let role = gateway.minter.role(identity, &request_id).await?;
    Ok(Caller::new(
        identity.clone(),
        role,
        request_id,
        gateway.minter.clone(),
    ))
}
