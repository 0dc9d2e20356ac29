//! A descriptor pool and the route table built from it.

use prost_reflect::DescriptorPool;

use crate::openapi::{OpenApiInfo, openapi_document};
use crate::public::PublicSurface;
use crate::routes::{RouteError, RouteTable};
use crate::rules;

/// A pool, its routes and the public surface they define. Immutable: adding descriptors returns a new
/// `Transcoder`, so the gateway can swap it atomically while requests use the
/// old one.
#[derive(Debug)]
pub struct Transcoder {
    pool: DescriptorPool,
    routes: RouteTable,
    public: PublicSurface,
}

impl Transcoder {
    /// The built-in Treven protos.
    pub fn builtin() -> Result<Self, RouteError> {
        Self::from_pool(rules::builtin_pool()?)
    }

    /// Routes for every rule in `pool`.
    pub fn from_pool(pool: DescriptorPool) -> Result<Self, RouteError> {
        let routes = RouteTable::from_pool(&pool)?;
        let public = PublicSurface::of(&routes);
        Ok(Self {
            pool,
            routes,
            public,
        })
    }

    /// A new transcoder with the files of an encoded `FileDescriptorSet`
    /// added (files already known by name are kept as they are).
    pub fn with_file_descriptor_set(&self, encoded: &[u8]) -> Result<Self, RouteError> {
        let mut pool = self.pool.clone();
        rules::add_file_descriptor_set(&mut pool, encoded)?;
        Self::from_pool(pool)
    }

    /// A new transcoder with the files of `other` added.
    pub fn with_pool(&self, other: &DescriptorPool) -> Result<Self, RouteError> {
        let mut pool = self.pool.clone();
        rules::add_pool(&mut pool, other)?;
        Self::from_pool(pool)
    }

    /// The descriptors.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The routes.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The RPCs the edge may serve: exactly those with a route.
    pub fn public(&self) -> &PublicSurface {
        &self.public
    }

    /// The OpenAPI 3.1 document of the routes.
    pub fn openapi(&self, info: &OpenApiInfo) -> serde_json::Value {
        openapi_document(&self.routes, info)
    }
}
