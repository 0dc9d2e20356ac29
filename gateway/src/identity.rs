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

/// Lifetime of the mesh tokens the gateway mints.
pub const CONTEXT_TTL: Duration = Duration::from_secs(60);

/// How long a caller's token for one service is reused: half its lifetime,
/// so a reused token has at least 30 s left when its call starts.
pub const CONTEXT_REUSE: Duration = Duration::from_secs(30);

/// Callers' tokens kept for reuse (a few hundred bytes each).
const REUSED_CONTEXTS: usize = 10_000;

/// Whose token for which service: the audience, organisation, Cognito
/// subject and role it was minted with. A token is reused only for exactly
/// the same four, so it never serves another user, another organisation or
/// another role.
type ContextKey = (Principal, OrgId, String, Role);

/// Resolves roles and mints mesh contexts.
pub struct ContextMinter {
    signer: Signer,
    tenants: TenantsServiceClient<Channel>,
    ttl: Duration,
    roles: Mutex<lru::LruCache<(OrgId, String), (Role, Instant)>>,
    contexts: Mutex<lru::LruCache<ContextKey, (String, Instant)>>,
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
            contexts: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(REUSED_CONTEXTS).unwrap_or(NonZeroUsize::MIN),
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

    /// The mesh context token for calls of `identity` with `role` to
    /// `audience`. It names no request (the call's `x-request-id` entry
    /// does, see [`treven_mesh::context::verify_metadata`]), so the same
    /// token serves that user's calls to that service for
    /// [`CONTEXT_REUSE`], and the service checks its signature once rather
    /// than per call. Only a call of the same audience, organisation,
    /// subject and role reuses it.
    pub fn context(&self, identity: &Identity, role: Role, audience: Principal) -> String {
        self.context_at(identity, role, audience, Instant::now())
    }

    fn context_at(
        &self,
        identity: &Identity,
        role: Role,
        audience: Principal,
        now: Instant,
    ) -> String {
        let key: ContextKey = (audience, identity.org_id, identity.sub.clone(), role);
        if let Ok(mut cache) = self.contexts.lock()
            && let Some((token, minted)) = cache.get(&key)
        {
            if now.saturating_duration_since(*minted) < CONTEXT_REUSE {
                return token.clone();
            }
            cache.pop(&key);
        }
        let token = self.signer.mint_reusable(
            audience,
            identity.org_id,
            &identity.sub,
            &[role],
            CONTEXT_TTL,
        );
        if let Ok(mut cache) = self.contexts.lock() {
            cache.put(key, (token.clone(), now));
        }
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treven_mesh::context::{
        CONTEXT_HEADER, KeySet, MeshKey, REQUEST_ID_HEADER, verify_metadata,
    };

    fn identity(org: OrgId, sub: &str) -> Identity {
        Identity {
            sub: sub.to_owned(),
            org_id: org,
            email: None,
            expires_at: i64::MAX,
        }
    }

    fn minter() -> (ContextMinter, KeySet) {
        let signer = Signer::new(Principal::Gateway, MeshKey::generate());
        let mut keys = KeySet::default();
        keys.insert_signer(&signer);
        // Never dialled: these tests mint only.
        let tenants = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        (
            ContextMinter::new(signer, tenants, Duration::from_secs(30)),
            keys,
        )
    }

    /// What a service makes of `token` on a call of `request_id`.
    fn at(
        keys: &KeySet,
        audience: Principal,
        token: &str,
        request_id: &str,
    ) -> treven_mesh::MeshContext {
        let mut headers = http::HeaderMap::new();
        headers.insert(CONTEXT_HEADER, token.parse().expect("ascii"));
        headers.insert(REQUEST_ID_HEADER, request_id.parse().expect("ascii"));
        verify_metadata(&keys.verifier(audience), &headers).expect("accepted")
    }

    #[tokio::test]
    async fn a_callers_token_is_reused_for_the_same_service_and_names_each_calls_request() {
        let (minter, keys) = minter();
        let alice = identity(OrgId::new(uuid::Uuid::now_v7()), "alice");
        let first = minter.context(&alice, Role::Analyst, Principal::Reports);
        let again = minter.context(&alice, Role::Analyst, Principal::Reports);
        assert_eq!(first, again);
        let (one, two) = (
            at(&keys, Principal::Reports, &first, "req-1"),
            at(&keys, Principal::Reports, &again, "req-2"),
        );
        assert_eq!((one.request_id(), two.request_id()), ("req-1", "req-2"));
        assert_eq!((one.user_id(), one.org_id()), ("alice", alice.org_id));
        assert_eq!(one.roles(), &[Role::Analyst]);
    }

    #[tokio::test]
    async fn no_token_serves_another_user_organisation_role_or_service() {
        let (minter, keys) = minter();
        let org_a = OrgId::new(uuid::Uuid::now_v7());
        let org_b = OrgId::new(uuid::Uuid::now_v7());
        let alice = identity(org_a, "alice");
        let alice_token = minter.context(&alice, Role::Admin, Principal::Reports);
        // Another user of the same organisation, the same subject in another
        // organisation, the same user with another role, and the same user
        // at another service: each gets a token of its own, carrying its own
        // claims.
        let cases = [
            (identity(org_a, "bob"), Role::Admin, Principal::Reports),
            (identity(org_b, "alice"), Role::Admin, Principal::Reports),
            (identity(org_a, "alice"), Role::Viewer, Principal::Reports),
            (identity(org_a, "alice"), Role::Admin, Principal::Documents),
        ];
        let mut seen = vec![alice_token.clone()];
        for (who, role, audience) in cases {
            let token = minter.context(&who, role, audience);
            assert!(
                !seen.contains(&token),
                "{who:?} {role:?} {audience:?} reused a token"
            );
            seen.push(token.clone());
            let context = at(&keys, audience, &token, "req");
            assert_eq!(context.user_id(), who.sub);
            assert_eq!(context.org_id(), who.org_id);
            assert_eq!(context.roles(), &[role]);
            assert_eq!(context.audience(), audience);
        }
        // Alice's own token is still hers, unchanged by the others.
        assert_eq!(
            minter.context(&alice, Role::Admin, Principal::Reports),
            alice_token
        );
    }

    #[tokio::test]
    async fn a_token_is_reused_only_while_fresh() {
        let (minter, _) = minter();
        let alice = identity(OrgId::new(uuid::Uuid::now_v7()), "alice");
        let start = Instant::now();
        let first = minter.context_at(&alice, Role::Viewer, Principal::Tenants, start);
        let within = start + CONTEXT_REUSE - Duration::from_millis(1);
        assert_eq!(
            minter.context_at(&alice, Role::Viewer, Principal::Tenants, within),
            first
        );
        let after = start + CONTEXT_REUSE;
        let renewed = minter.context_at(&alice, Role::Viewer, Principal::Tenants, after);
        assert_ne!(renewed, first);
        assert_eq!(
            minter.context_at(&alice, Role::Viewer, Principal::Tenants, after),
            renewed
        );
    }
}
