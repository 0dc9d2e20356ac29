//! Descriptor pools and the `google.api.http` rules read from them.
//!
//! The built-in pool is `treven_proto::FILE_DESCRIPTOR_SET`. More files can
//! be merged in later — descriptor sets fetched from each service's
//! reflection at start-up, or another pool — so a new RPC needs no gateway
//! rebuild. Files whose name is already in the pool are skipped (the first
//! one wins), as prost-reflect does.

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, ExtensionDescriptor, MethodDescriptor};
use treven_proto::google::api::{HttpRule, http_rule::Pattern};

/// Full name of the `google.api.http` method option (extension 72295728).
pub const HTTP_RULE_EXTENSION: &str = "google.api.http";

/// Why descriptors or their rules could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The bytes are not a valid descriptor set, or reference missing types.
    #[error("descriptors do not load: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// A rule is not usable; names the RPC and what is wrong.
    #[error("google.api.http rule of {rpc}: {reason}")]
    Invalid {
        /// Full name of the RPC.
        rpc: String,
        /// What is wrong.
        reason: String,
    },
}

/// What the HTTP request body maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRule {
    /// No body: every field not in the path is a query parameter.
    None,
    /// `body: "*"`: the whole request message; no query parameters.
    Whole,
    /// `body: "field"`: that top-level field of the request message.
    Field(String),
}

/// One HTTP binding of an RPC: the rule itself or one of its
/// `additional_bindings`, not yet checked against the messages.
#[derive(Debug, Clone)]
pub struct HttpBinding {
    /// The RPC.
    pub rpc: MethodDescriptor,
    /// 0 for the rule itself, 1.. for `additional_bindings` in order.
    pub index: usize,
    /// The HTTP method (`custom` kinds included, e.g. `HEAD`).
    pub method: http::Method,
    /// The path template as written.
    pub template: String,
    /// What the body maps to.
    pub body: BodyRule,
    /// The top-level response field sent as the body, when set.
    pub response_body: Option<String>,
}

/// The pool of every Treven proto, with `google.api.http` options kept.
pub fn builtin_pool() -> Result<DescriptorPool, RuleError> {
    Ok(DescriptorPool::decode(treven_proto::FILE_DESCRIPTOR_SET)?)
}

/// Adds the files of an encoded `FileDescriptorSet` (e.g. from server
/// reflection) to `pool`, keeping extension options. Files already present
/// by name are skipped. Returns how many files were added.
pub fn add_file_descriptor_set(
    pool: &mut DescriptorPool,
    encoded: &[u8],
) -> Result<usize, RuleError> {
    let before = pool.files().len();
    pool.decode_file_descriptor_set(encoded)?;
    Ok(pool.files().len() - before)
}

/// Adds every file of `other` to `pool` (options kept, names already present
/// skipped). Returns how many files were added.
pub fn add_pool(pool: &mut DescriptorPool, other: &DescriptorPool) -> Result<usize, RuleError> {
    let mut set = Vec::new();
    for file in other.files() {
        // FileDescriptorSet.file = 1, each file in its raw form.
        prost::encoding::bytes::encode(1, &file.encode_to_vec(), &mut set);
    }
    add_file_descriptor_set(pool, &set)
}

/// Every HTTP binding of every RPC in `pool`, in service, method and binding
/// order. RPCs without a rule have no binding.
pub fn http_bindings(pool: &DescriptorPool) -> Result<Vec<HttpBinding>, RuleError> {
    let Some(extension) = pool.get_extension_by_name(HTTP_RULE_EXTENSION) else {
        return Ok(Vec::new());
    };
    let mut bindings = Vec::new();
    for service in pool.services() {
        for rpc in service.methods() {
            if let Some(rule) = http_rule(&rpc, &extension)? {
                bindings_of(&rpc, &rule, &mut bindings)?;
            }
        }
    }
    Ok(bindings)
}

/// The `google.api.http` rule of one RPC, if it has one.
pub fn http_rule(
    rpc: &MethodDescriptor,
    extension: &ExtensionDescriptor,
) -> Result<Option<HttpRule>, RuleError> {
    let options: DynamicMessage = rpc.options();
    if !options.has_extension(extension) {
        return Ok(None);
    }
    let value = options.get_extension(extension);
    let Some(message) = value.as_message() else {
        return Err(invalid(rpc, "the option is not an HttpRule message"));
    };
    HttpRule::decode(message.encode_to_vec().as_slice())
        .map(Some)
        .map_err(|e| invalid(rpc, format!("does not decode: {e}")))
}

fn bindings_of(
    rpc: &MethodDescriptor,
    rule: &HttpRule,
    out: &mut Vec<HttpBinding>,
) -> Result<(), RuleError> {
    out.push(binding(rpc, rule, 0)?);
    for (offset, additional) in rule.additional_bindings.iter().enumerate() {
        if !additional.additional_bindings.is_empty() {
            return Err(invalid(
                rpc,
                "additional_bindings cannot have additional_bindings of their own",
            ));
        }
        out.push(binding(rpc, additional, offset + 1)?);
    }
    Ok(())
}

fn binding(
    rpc: &MethodDescriptor,
    rule: &HttpRule,
    index: usize,
) -> Result<HttpBinding, RuleError> {
    let (method, template) = match &rule.pattern {
        Some(Pattern::Get(path)) => (http::Method::GET, path.clone()),
        Some(Pattern::Put(path)) => (http::Method::PUT, path.clone()),
        Some(Pattern::Post(path)) => (http::Method::POST, path.clone()),
        Some(Pattern::Delete(path)) => (http::Method::DELETE, path.clone()),
        Some(Pattern::Patch(path)) => (http::Method::PATCH, path.clone()),
        Some(Pattern::Custom(custom)) => {
            let method = http::Method::from_bytes(custom.kind.as_bytes())
                .ok()
                .filter(|_| !custom.kind.is_empty() && custom.kind != "*")
                .ok_or_else(|| {
                    invalid(
                        rpc,
                        format!("custom kind `{}` is not an HTTP method", custom.kind),
                    )
                })?;
            (method, custom.path.clone())
        }
        None => {
            return Err(invalid(
                rpc,
                format!("binding {index} has no method and path"),
            ));
        }
    };
    let body = match rule.body.as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        field => BodyRule::Field(field.to_owned()),
    };
    let response_body = Some(rule.response_body.clone()).filter(|name| !name.is_empty());
    Ok(HttpBinding {
        rpc: rpc.clone(),
        index,
        method,
        template,
        body,
        response_body,
    })
}

fn invalid(rpc: &MethodDescriptor, reason: impl Into<String>) -> RuleError {
    RuleError::Invalid {
        rpc: rpc.full_name().to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_are_read_with_bodies_and_response_bodies() {
        let pool = builtin_pool().expect("builtin pool");
        let bindings = http_bindings(&pool).expect("rules");
        let update = bindings
            .iter()
            .find(|b| b.rpc.full_name() == "treven.tenants.v1.TenantsService.UpdateUser")
            .expect("UpdateUser has a rule");
        assert_eq!(update.method, http::Method::PATCH);
        assert_eq!(update.template, "/api/users/{id}");
        assert_eq!(update.body, BodyRule::Field("user".into()));
        assert_eq!(update.response_body.as_deref(), Some("user"));
        assert!(
            !bindings.iter().any(|b| b.rpc.name() == "LookupUserBySub"),
            "RPCs without a rule are not exposed"
        );
    }

    #[test]
    fn merging_a_set_twice_adds_nothing() {
        let mut pool = builtin_pool().expect("builtin pool");
        let added =
            add_file_descriptor_set(&mut pool, treven_proto::FILE_DESCRIPTOR_SET).expect("merge");
        assert_eq!(added, 0);
        let other = builtin_pool().expect("builtin pool");
        assert_eq!(add_pool(&mut pool, &other).expect("merge pool"), 0);
    }
}
