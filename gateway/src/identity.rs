//! From a verified Cognito identity to a mesh context token.
//!
//! The role lives in tenants, not in the token: the gateway asks
//! `TenantsService/LookupUserBySub` with a role-less context for the caller
//! (a caller may always look itself up), caches the answer briefly, and
//! mints the context with that role for the real call.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use treven_mesh::context::attach_context;
use treven_mesh::{OrgId, Principal, Role, ServiceError, Signer};
use treven_proto::treven::tenants::v1 as tenants;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;

use crate::auth::Identity;

/// The user of a context minted for an unauthenticated request.
pub const ANONYMOUS: &str = "anonymous";

/// Lifetime of the mesh tokens minted per request.
pub const CONTEXT_TTL: Duration = Duration::from_secs(60);

/// Resolves roles and mints mesh contexts.
pub struct ContextMinter {
    signer: Signer,
    tenants: TenantsServiceClient<Channel>,
    ttl: Duration,
    roles: Mutex<lru::LruCache<(OrgId, String), (Role, Instant)>>,
}

impl std::fmt::Debug for ContextMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextMinter")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl ContextMinter {
    /// Mints with `signer` (the gateway's key, which can mint only
    /// contexts of users at the edge) and resolves roles through `tenants`,
    /// caching each for `ttl`.
    pub fn new(signer: Signer, tenants: Channel, ttl: Duration) -> Self {
        Self {
            signer,
            tenants: TenantsServiceClient::new(tenants),
            ttl,
            roles: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The caller's role in their organisation. FORBIDDEN when the caller has
    /// no user record there.
    pub async fn role(&self, identity: &Identity, request_id: &str) -> Result<Role, ServiceError> {
        let key = (identity.org_id, identity.sub.clone());
        if let Ok(mut cache) = self.roles.lock()
            && let Some((role, at)) = cache.get(&key)
        {
            if at.elapsed() < self.ttl {
                return Ok(*role);
            }
            cache.pop(&key);
        }
        let bare = self.signer.mint(
            Principal::Tenants,
            identity.org_id,
            &identity.sub,
            &[],
            request_id,
            CONTEXT_TTL,
        );
        let mut request = tonic::Request::new(tenants::LookupUserBySubRequest {
            cognito_sub: identity.sub.clone(),
            email: identity.email.clone().unwrap_or_default(),
        });
        attach_context(&mut request, &bare)?;
        let user = match self.tenants.clone().lookup_user_by_sub(request).await {
            Ok(response) => response.into_inner().user.unwrap_or_default(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                return Err(ServiceError::forbidden(
                    "you are not a member of this organisation",
                ));
            }
            Err(status) => {
                let code = treven_mesh::ErrorCode::of_status(&status);
                return Err(ServiceError::new(code, status.message().to_owned()));
            }
        };
        let role = match tenants::Role::try_from(user.role) {
            Ok(tenants::Role::Admin) => Role::Admin,
            Ok(tenants::Role::Analyst) => Role::Analyst,
            Ok(tenants::Role::Viewer) => Role::Viewer,
            _ => return Err(ServiceError::forbidden("your account has no role")),
        };
        if let Ok(mut cache) = self.roles.lock() {
            cache.put(key, (role, Instant::now()));
        }
        Ok(role)
    }

    /// A mesh context token for an unauthenticated request to `audience`
    /// (a partner link): no organisation (the nil UUID), no user, no role.
    /// Only RPCs whose rule admits any role accept it (`OpenPartnerLink`),
    /// and they trust nothing but what they verify themselves.
    pub fn mint_anonymous(&self, request_id: &str, audience: Principal) -> String {
        self.signer.mint(
            audience,
            OrgId::new(uuid::Uuid::nil()),
            ANONYMOUS,
            &[],
            request_id,
            CONTEXT_TTL,
        )
    }

    /// A mesh context token for one call of `identity` with `role` to
    /// `audience`.
    pub fn mint(
        &self,
        identity: &Identity,
        role: Role,
        request_id: &str,
        audience: Principal,
    ) -> String {
        self.signer.mint(
            audience,
            identity.org_id,
            &identity.sub,
            &[role],
            request_id,
            CONTEXT_TTL,
        )
    }
}
