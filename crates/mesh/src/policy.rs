//! Who may call which RPC: one table per service, enforced before any
//! handler runs.
//!
//! Each service declares a [`Policy`]: for every RPC of its gRPC service,
//! the principals that may call it ([`crate::context::Principal`]: the
//! gateway for a user at the edge, a named service acting for a user, an
//! operator) and the roles the user must hold. The [`Guarded`] layer wraps
//! the service's tonic server: it verifies the `x-treven-context` token for
//! this service's audience (UNAUTHENTICATED otherwise), looks the method up
//! in the table (an RPC missing from it is refused: deny by default, and each
//! service's role-table test walks every RPC of its descriptor so none is
//! missing), checks the caller and the roles (PERMISSION_DENIED), and puts
//! the verified [`MeshContext`] in the request's extensions for
//! [`crate::context::context_of`]. Handlers keep only the checks that need
//! the data (ownership, workflow state).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;

use crate::context::{ContextVerifier, MeshContext, Principal, Role, verify_metadata};
use crate::error::{ErrorCode, ServiceError};

/// Principals that act for a user at the edge: the gateway, and an operator
/// debugging with `grpcurl` (audited, guarded in production).
pub const EDGE: &[Principal] = &[Principal::Gateway, Principal::Operator];

/// Which users may have an RPC called for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// Any verified context, with or without a role (the gateway's own
    /// role lookup, before the role is known).
    Any,
    /// Users holding one of these roles.
    AnyOf(&'static [Role]),
}

/// One RPC's rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The method name (`GetReport`).
    pub method: &'static str,
    /// The principals that may call it.
    pub callers: &'static [Principal],
    /// The roles the user it acts for must hold.
    pub roles: Roles,
}

/// A rule for `method`: callable by `callers` for users with one of `roles`.
pub const fn rule(
    method: &'static str,
    callers: &'static [Principal],
    roles: &'static [Role],
) -> Rule {
    Rule {
        method,
        callers,
        roles: Roles::AnyOf(roles),
    }
}

/// A service's table: every RPC of `service` with its rule.
#[derive(Debug)]
pub struct Policy {
    /// The full gRPC service name (`treven.tenants.v1.TenantsService`).
    pub service: &'static str,
    /// The audience tokens must be minted for.
    pub audience: Principal,
    /// One rule per RPC.
    pub rules: &'static [Rule],
}

impl Policy {
    /// The rule of `method`, if the table has one.
    pub fn rule(&self, method: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.method == method)
    }

    /// Whether `context` may call `method`: PERMISSION_DENIED (as FORBIDDEN)
    /// naming what is missing otherwise.
    pub fn authorize(&self, context: &MeshContext, method: &str) -> Result<(), ServiceError> {
        let Some(rule) = self.rule(method) else {
            return Err(ServiceError::forbidden(format!(
                "{method} has no access rule in {}",
                self.service
            )));
        };
        if !rule.callers.contains(&context.issuer()) {
            return Err(ServiceError::forbidden(format!(
                "{method} cannot be called by {}",
                context.issuer()
            )));
        }
        match rule.roles {
            Roles::Any => Ok(()),
            Roles::AnyOf(roles) => context.require_any(roles),
        }
    }

    /// Wraps `inner` (the service's tonic server) in this policy.
    pub fn guard<S>(&'static self, inner: S, verifier: ContextVerifier) -> Guarded<S> {
        debug_assert_eq!(verifier.audience(), self.audience);
        Guarded {
            inner,
            policy: self,
            verifier: Arc::new(verifier),
        }
    }
}

/// A tonic service behind its [`Policy`]; see the module documentation.
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    inner: S,
    policy: &'static Policy,
    verifier: Arc<ContextVerifier>,
}

impl<S> Guarded<S> {
    fn admit(&self, request: &http::Request<Body>) -> Result<MeshContext, tonic::Status> {
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        let context = verify_metadata(&self.verifier, request.headers()).map_err(|reason| {
            tracing::info!(%reason, method, "call refused");
            tonic::Status::from(ServiceError::new(
                ErrorCode::Unauthorized,
                "a valid mesh context is required",
            ))
        })?;
        let span = tracing::Span::current();
        span.record("org_id", tracing::field::display(context.org_id()));
        span.record("request_id", context.request_id());
        self.policy.authorize(&context, method).map_err(|error| {
            tracing::info!(
                method,
                caller = %context.issuer(),
                roles = ?context.roles(),
                "call denied"
            );
            tonic::Status::from(error)
        })?;
        Ok(context)
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Guarded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        match self.admit(&request) {
            Ok(context) => {
                // Admitted: now, and only now, a request that breaks its
                // proto's rules is refused (see `crate::validate`).
                if let Some(crate::validate::RuleViolation(status)) =
                    request.extensions_mut().remove()
                {
                    return Box::pin(futures::future::ready(Ok(status.into_http())));
                }
                request.extensions_mut().insert(context);
                // The ready service answers this call; a fresh clone waits
                // for the next poll_ready (tower's usual swap).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(status) => Box::pin(futures::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::context::{KeySet, MeshKey, OrgId, Signer};

    static POLICY: Policy = Policy {
        service: "test.v1.Things",
        audience: Principal::Documents,
        rules: &[
            rule("Read", EDGE, Role::MEMBERS),
            rule("Write", EDGE, Role::EDITORS),
            rule("Store", &[Principal::Reports], Role::EDITORS),
            Rule {
                method: "Lookup",
                callers: &[Principal::Gateway],
                roles: Roles::Any,
            },
        ],
    };

    fn context(issuer: Principal, roles: &[Role]) -> MeshContext {
        let signer = Signer::new(issuer, MeshKey::generate());
        let mut keys = KeySet::default();
        keys.insert_signer(&signer);
        let token = signer.mint(
            Principal::Documents,
            OrgId::new(Uuid::now_v7()),
            "u",
            roles,
            "r",
            Duration::from_secs(60),
        );
        keys.verifier(Principal::Documents)
            .verify(&token)
            .expect("valid")
    }

    fn code(result: Result<(), ServiceError>) -> Option<ErrorCode> {
        result.err().map(|e| e.code())
    }

    #[test]
    fn callers_and_roles_come_from_the_table() {
        let viewer = context(Principal::Gateway, &[Role::Viewer]);
        let analyst = context(Principal::Gateway, &[Role::Analyst]);
        let reports = context(Principal::Reports, &[Role::Analyst]);
        let reports_for_viewer = context(Principal::Reports, &[Role::Viewer]);
        let role_less = context(Principal::Gateway, &[]);

        assert_eq!(code(POLICY.authorize(&viewer, "Read")), None);
        assert_eq!(
            code(POLICY.authorize(&viewer, "Write")),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(code(POLICY.authorize(&analyst, "Write")), None);
        // A user at the edge cannot call a service-only RPC, whatever role.
        assert_eq!(
            code(POLICY.authorize(&analyst, "Store")),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(code(POLICY.authorize(&reports, "Store")), None);
        assert_eq!(
            code(POLICY.authorize(&reports_for_viewer, "Store")),
            Some(ErrorCode::Forbidden)
        );
        // And a service cannot call what only the edge may.
        assert_eq!(
            code(POLICY.authorize(&reports, "Read")),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(code(POLICY.authorize(&role_less, "Lookup")), None);
        assert_eq!(
            code(POLICY.authorize(&role_less, "Read")),
            Some(ErrorCode::Forbidden)
        );
        // Deny by default.
        assert_eq!(
            code(POLICY.authorize(&analyst, "Unlisted")),
            Some(ErrorCode::Forbidden)
        );
    }
}
