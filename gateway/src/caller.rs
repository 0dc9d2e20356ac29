//! Who is calling: the bearer token verified, the role resolved, the mesh
//! context minted, the rate limit counted. Headers that claim an identity
//! (`x-org-id`, `x-user-id`, `x-treven-context`, …) are never read: the
//! gateway builds the upstream metadata itself.

use std::sync::Arc;

use axum::http::HeaderMap;
use treven_mesh::{ErrorCode, Principal, Role};

use crate::auth::{AuthError, Identity};
use crate::error::ApiError;
use crate::identity::ContextMinter;
use crate::ratelimit::Verdict;
use crate::state::Gateway;

/// A verified caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who the token says.
    pub identity: Identity,
    /// Their role in tenants.
    pub role: Role,
    /// The request id (also sent back as `x-request-id`).
    pub request_id: String,
    minter: Arc<ContextMinter>,
}

impl Caller {
    /// A caller of `identity` with `role`, whose mesh contexts `minter`
    /// signs.
    pub fn new(
        identity: Identity,
        role: Role,
        request_id: String,
        minter: Arc<ContextMinter>,
    ) -> Self {
        Self {
            identity,
            role,
            request_id,
            minter,
        }
    }

    /// The mesh context token for a call of this request to `audience`:
    /// one per upstream, so a token one service receives is no good at
    /// another, reused for this caller's calls to it while fresh (see
    /// [`ContextMinter::context`]). The call must carry `x-request-id`.
    pub fn context_for(&self, audience: Principal) -> String {
        self.minter.context(&self.identity, self.role, audience)
    }
}

/// The request id: the client's `x-request-id` when it is a short token of
/// safe characters, else a new UUID.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| treven_mesh::context::is_valid_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl Gateway {
    /// Authenticates a request: token, role, rate limit, mesh context.
    pub async fn caller(
        &self,
        headers: &HeaderMap,
        request_id: String,
    ) -> Result<Caller, ApiError> {
        let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
        let identity = self.verifier.verify(token).await.map_err(|reason| {
            tracing::info!(%reason, "token refused");
            match reason {
                AuthError::JwksUnavailable(_) => {
                    ApiError::new(ErrorCode::Unavailable, "cannot verify tokens right now")
                }
                _ => ApiError::unauthorized(),
            }
        })?;
        if let Verdict::Limited(retry) = self.limiter.check(identity.org_id, &identity.sub).await {
            return Err(ApiError::rate_limited(
                retry.as_secs_f64().ceil().max(1.0) as u64
            ));
        }
        let role = self.minter.role(&identity, &request_id).await?;
        tracing::Span::current().record("org_id", tracing::field::display(identity.org_id));
        Ok(Caller::new(identity, role, request_id, self.minter.clone()))
    }
}
