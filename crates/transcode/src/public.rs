//! The public surface: which RPCs the edge serves to the outside.
//!
//! It is declared once, in the protos: an RPC is public if and only if it
//! has a `google.api.http` rule. Every protocol the gateway speaks to
//! browsers (REST, gRPC-web, native gRPC) serves exactly this set, computed
//! from the same descriptor pool the routes come from (built in, or read from
//! the services' reflection); every other RPC — the service-to-service ones —
//! is refused at the edge as if it did not exist.

use std::collections::BTreeSet;

use prost_reflect::MethodDescriptor;

use crate::routes::RouteTable;

/// The gRPC path of an RPC: `/package.Service/Method`.
pub fn grpc_path(rpc: &MethodDescriptor) -> String {
    format!("/{}/{}", rpc.parent_service().full_name(), rpc.name())
}

/// The RPCs with an HTTP rule, by gRPC path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicSurface {
    paths: BTreeSet<String>,
}

impl PublicSurface {
    /// The RPCs that `routes` call: every RPC with a `google.api.http`
    /// rule (a table is only built when every rule is valid).
    pub fn of(routes: &RouteTable) -> Self {
        Self {
            paths: routes.routes().iter().map(|r| grpc_path(r.rpc())).collect(),
        }
    }

    /// Whether `path` (`/package.Service/Method`, as a gRPC request names
    /// it) is public. Anything else — internal, unknown, malformed — is not.
    pub fn contains_path(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    /// Whether `rpc` is public.
    pub fn contains(&self, rpc: &MethodDescriptor) -> bool {
        self.contains_path(&grpc_path(rpc))
    }

    /// The public gRPC paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(String::as_str)
    }

    /// How many RPCs are public.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when no RPC is public.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{HTTP_RULE_EXTENSION, builtin_pool};

    #[test]
    fn the_builtin_public_surface_is_exactly_the_rpcs_with_an_http_rule() {
        let pool = builtin_pool().expect("builtin pool");
        let routes = RouteTable::from_pool(&pool).expect("routes");
        let public = PublicSurface::of(&routes);
        let extension = pool
            .get_extension_by_name(HTTP_RULE_EXTENSION)
            .expect("google.api.http is in the pool");
        let mut internal = Vec::new();
        for service in pool.services() {
            for rpc in service.methods() {
                let has_rule = rpc.options().has_extension(&extension);
                assert_eq!(public.contains(&rpc), has_rule, "{}", rpc.full_name());
                if !has_rule {
                    internal.push(rpc.name().to_owned());
                }
            }
        }
        for name in ["GetMe", "ListReports", "SendMessage"] {
            assert!(
                public.paths().any(|p| p.ends_with(&format!("/{name}"))),
                "{name} is public"
            );
        }
        for name in [
            "LookupUserBySub",
            "RecordAuditEvent",
            "GrantReportAccess",
            "GenerateReport",
            "StoreEvidence",
            "PutArtifact",
        ] {
            assert!(internal.iter().any(|n| n == name), "{name} is internal");
        }
        assert!(public.contains_path("/treven.tenants.v1.TenantsService/GetMe"));
        for not_public in [
            "/treven.tenants.v1.TenantsService/LookupUserBySub",
            "/treven.tenants.v1.TenantsService/NoSuchMethod",
            "/treven.tenants.v1.TenantsService/GetMe/",
            "treven.tenants.v1.TenantsService/GetMe",
            "/grpc.health.v1.Health/Check",
            "",
        ] {
            assert!(!public.contains_path(not_public), "{not_public}");
        }
    }
}
