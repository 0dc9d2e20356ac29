//! The route table: every HTTP binding checked against its messages, and one
//! segment trie (of every method) to find the route of a request.
//!
//! # Precedence
//!
//! The path alone picks the most specific route *shape*, whatever the
//! method; the method then picks among the routes of that shape:
//!
//! 1. A shape with a custom verb (`…:cancel`) is tried first when the last
//!    segment of the request has a `:`; otherwise, or when none matches, the
//!    whole last segment (colon included) is matched against verbless shapes.
//! 2. Segments are compared from the left; at each segment a literal beats a
//!    `*` (or `{var}`), which beats a `**` that takes the rest.
//! 3. When the shape found has no route of the request's method, the answer
//!    is 405 with that shape's methods (for `Allow`), even when a less
//!    specific shape has one: with `POST /api/documents/uploads` and
//!    `GET /api/documents/{id}`, `GET /api/documents/uploads` is 405 (only
//!    POST is documented for that path), not a GET of the document
//!    `uploads`. So a literal is never shadowed by another method's
//!    template, and what the OpenAPI document lists per path is exactly
//!    what is served there.
//! 4. Two routes of the same HTTP method with the same shape (same literals,
//!    wildcards and verb, whatever their variable names) are ambiguous and
//!    refused at load.

mod trie;

use std::fmt;
use std::sync::Arc;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MethodDescriptor};

use crate::fields::{FieldPath, is_singular_scalar};
use crate::rules::{self, BodyRule, HttpBinding, RuleError};
use crate::template::{PathTemplate, TemplateError};

/// Why the route table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The descriptors or a rule could not be read.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A path template does not parse.
    #[error("{rpc}: {source}")]
    Template {
        /// Full name of the RPC.
        rpc: String,
        /// The parse error.
        source: TemplateError,
    },
    /// A binding does not fit its messages (unknown field, repeated path
    /// field, client streaming, ...).
    #[error("{rpc} `{method} {template}`: {reason}")]
    Invalid {
        /// Full name of the RPC.
        rpc: String,
        /// HTTP method of the binding.
        method: http::Method,
        /// The template as written.
        template: String,
        /// What is wrong.
        reason: String,
    },
    /// Two routes match exactly the same requests.
    #[error("ambiguous routes: {first} and {second} match the same requests")]
    Ambiguous {
        /// The route loaded first.
        first: String,
        /// The route that clashes with it.
        second: String,
    },
}

/// What the HTTP body of a route maps to, resolved against the request.
#[derive(Debug, Clone)]
pub enum RouteBody {
    /// No body.
    None,
    /// `*`: the whole request message.
    Whole,
    /// One top-level field of the request message.
    Field(FieldDescriptor),
}

/// One HTTP binding of an RPC, checked against its messages.
#[derive(Debug)]
pub struct Route {
    rpc: MethodDescriptor,
    binding_index: usize,
    method: http::Method,
    template: PathTemplate,
    path_fields: Vec<FieldPath>,
    body: RouteBody,
    response_body: Option<FieldDescriptor>,
}

impl Route {
    /// Checks `binding` against the RPC's request and response messages.
    pub fn compile(binding: &HttpBinding) -> Result<Route, RouteError> {
        let rpc = &binding.rpc;
        let invalid = |reason: String| RouteError::Invalid {
            rpc: rpc.full_name().to_owned(),
            method: binding.method.clone(),
            template: binding.template.clone(),
            reason,
        };
        if rpc.is_client_streaming() {
            return Err(invalid(
                "client-streaming RPCs cannot be called over REST".into(),
            ));
        }
        let template =
            PathTemplate::parse(&binding.template).map_err(|source| RouteError::Template {
                rpc: rpc.full_name().to_owned(),
                source,
            })?;
        let input = rpc.input();
        let mut path_fields = Vec::with_capacity(template.variables().len());
        for variable in template.variables() {
            let path = FieldPath::resolve(&input, variable.field_path()).map_err(|e| {
                invalid(format!(
                    "path variable `{}`: {e}",
                    variable.field_path_string()
                ))
            })?;
            let leaf = path.leaf();
            if !is_singular_scalar(leaf) {
                return Err(invalid(format!(
                    "path variable `{path}` must be a singular scalar or enum field"
                )));
            }
            if !variable.is_single_segment() && leaf.kind() != Kind::String {
                return Err(invalid(format!(
                    "path variable `{path}` spans segments, so it must be a string field"
                )));
            }
            path_fields.push(path);
        }
        let body = match &binding.body {
            BodyRule::None => RouteBody::None,
            BodyRule::Whole => RouteBody::Whole,
            BodyRule::Field(name) => {
                let field = input.get_field_by_name(name).ok_or_else(|| {
                    invalid(format!(
                        "body field `{name}` is not a field of {}",
                        input.full_name()
                    ))
                })?;
                if path_fields
                    .iter()
                    .any(|p| p.fields().len() == 1 && p.leaf() == &field)
                {
                    return Err(invalid(format!(
                        "body field `{name}` is also bound by the path"
                    )));
                }
                RouteBody::Field(field)
            }
        };
        let response_body = match &binding.response_body {
            None => None,
            Some(name) => Some(rpc.output().get_field_by_name(name).ok_or_else(|| {
                invalid(format!(
                    "response_body `{name}` is not a field of {}",
                    rpc.output().full_name()
                ))
            })?),
        };
        Ok(Route {
            rpc: rpc.clone(),
            binding_index: binding.index,
            method: binding.method.clone(),
            template,
            path_fields,
            body,
            response_body,
        })
    }

    /// The RPC this route calls.
    pub fn rpc(&self) -> &MethodDescriptor {
        &self.rpc
    }

    /// Full name of the service that serves the RPC, e.g.
    /// `treven.tenants.v1.TenantsService`: what the gateway picks a channel by.
    pub fn service_name(&self) -> &str {
        self.rpc.parent_service().full_name()
    }

    /// 0 for the rule itself, 1.. for its `additional_bindings`.
    pub fn binding_index(&self) -> usize {
        self.binding_index
    }

    /// The HTTP method.
    pub fn method(&self) -> &http::Method {
        &self.method
    }

    /// The path template.
    pub fn template(&self) -> &PathTemplate {
        &self.template
    }

    /// The field each template variable binds, in template order.
    pub fn path_fields(&self) -> &[FieldPath] {
        &self.path_fields
    }

    /// What the body maps to.
    pub fn body(&self) -> &RouteBody {
        &self.body
    }

    /// The response field sent as the body, when the rule names one.
    pub fn response_body(&self) -> Option<&FieldDescriptor> {
        self.response_body.as_ref()
    }

    /// True when the RPC streams its responses.
    pub fn is_server_streaming(&self) -> bool {
        self.rpc.is_server_streaming()
    }

    /// `Service_Method`, with `_2`, `_3`, … for additional bindings: unique
    /// within a table.
    pub fn operation_id(&self) -> String {
        let base = format!("{}_{}", self.rpc.parent_service().name(), self.rpc.name());
        match self.binding_index {
            0 => base,
            index => format!("{base}_{}", index + 1),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.method,
            self.template,
            self.rpc.full_name()
        )
    }
}

/// A request matched to a route, with the raw (still percent-encoded) text
/// of each path variable.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    route: Arc<Route>,
    raw_values: Vec<String>,
}

impl RouteMatch {
    /// The route.
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }

    /// The raw text of each variable, parallel to
    /// [`Route::path_fields`]; decoded when the request is built.
    pub fn raw_values(&self) -> &[String] {
        &self.raw_values
    }
}

/// Why no route matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// No route has this path (404).
    #[error("no route for this path")]
    NotFound,
    /// Routes have this path, but not with this method (405); `allowed` is
    /// for the `Allow` header.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The methods that do match the path.
        allowed: Vec<http::Method>,
    },
}

/// Every route of a descriptor pool, ready to match requests.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    trie: trie::Node,
}

impl RouteTable {
    /// Routes for every `google.api.http` binding in `pool`.
    pub fn from_pool(pool: &DescriptorPool) -> Result<RouteTable, RouteError> {
        Self::from_bindings(&rules::http_bindings(pool)?)
    }

    /// Routes for `bindings`; fails on the first invalid or ambiguous one.
    pub fn from_bindings(bindings: &[HttpBinding]) -> Result<RouteTable, RouteError> {
        let mut table = RouteTable::default();
        for binding in bindings {
            let route = Route::compile(binding)?;
            let index = table.routes.len();
            let routes = &table.routes;
            if let Err(existing) = table.trie.insert(
                route.template.segments(),
                route.template.verb(),
                index,
                |other| routes[other].method == route.method,
            ) {
                return Err(RouteError::Ambiguous {
                    first: table.routes[existing].to_string(),
                    second: route.to_string(),
                });
            }
            table.routes.push(Arc::new(route));
        }
        Ok(table)
    }

    /// Every route, in load order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route for `method` and the raw request `path` (without the query
    /// string, still percent-encoded), per the precedence in the module docs.
    pub fn find(&self, method: &http::Method, path: &str) -> Result<RouteMatch, MatchError> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(MatchError::NotFound);
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let (candidates, segments) = self.shape_of(&segments).ok_or(MatchError::NotFound)?;
        if let Some(index) = candidates
            .iter()
            .copied()
            .find(|index| self.routes[*index].method == *method)
        {
            return Ok(self.matched(index, &segments));
        }
        let mut allowed: Vec<http::Method> = candidates
            .iter()
            .map(|index| self.routes[*index].method.clone())
            .collect();
        allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        allowed.dedup();
        Err(MatchError::MethodNotAllowed { allowed })
    }

    /// The routes (of every method) of the most specific shape matching
    /// `segments`, with the segments as matched (a custom verb cut off the
    /// last one).
    fn shape_of<'a>(&self, segments: &[&'a str]) -> Option<(&[usize], Vec<&'a str>)> {
        if let Some((last, verb)) = segments.last().and_then(|s| s.rsplit_once(':')) {
            let mut with_verb = segments.to_vec();
            let end = with_verb.len() - 1;
            with_verb[end] = last;
            if let Some(routes) = self.trie.find(&with_verb, Some(verb)) {
                return Some((routes, with_verb));
            }
        }
        let routes = self.trie.find(segments, None)?;
        Some((routes, segments.to_vec()))
    }

    fn matched(&self, index: usize, segments: &[&str]) -> RouteMatch {
        let route = Arc::clone(&self.routes[index]);
        let template = route.template();
        let raw_values = template
            .variables()
            .iter()
            .map(|variable| {
                let range = variable.segments();
                let covered =
                    if range.end == template.segments().len() && template.ends_with_catch_all() {
                        &segments[range.start.min(segments.len())..]
                    } else {
                        &segments[range]
                    };
                covered.join("/")
            })
            .collect();
        RouteMatch { route, raw_values }
    }
}
