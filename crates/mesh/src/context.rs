//! The mesh context: who a call acts for, who is making it and for which
//! service, carried between services as a signed token in the
//! `x-treven-context` metadata entry.
//!
//! Every token names its **issuer** (a [`Principal`]: the gateway, acting for
//! a user it has just authenticated at the edge; a service, acting for the
//! user whose request or job it is serving; or an operator) and its
//! **audience** (the one service it may be presented to). Each principal
//! signs with its own Ed25519 key ([`Signer`]); verifiers hold public keys
//! only ([`KeySet`]) and accept a token only when the issuer's own key signed
//! it, so the gateway's key cannot mint a service's context and a service's
//! key cannot mint another service's. A service calling onwards mints a new
//! token for the next audience ([`Signer::onward`]) instead of forwarding the
//! one it received, so a token captured at one service cannot be replayed at
//! another, and none lives longer than a minute or two.
//!
//! Which principals and roles may call which RPC is declared per service in
//! a [`crate::policy::Policy`] table and enforced before any handler runs.
//!
//! Token format: `base64url(claims JSON) "." base64url(Ed25519 signature)`,
//! the signature covering `"treven-ctx-v2." + <first part>`. A JWT library
//! would bring algorithm negotiation and key formats the mesh does not need:
//! there is one algorithm and one key per principal, so the format is fixed
//! and the signature primitive comes from `ed25519-dalek`.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ed25519_dalek::Signer as _;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tonic::Request;
use uuid::Uuid;

use crate::error::{ErrorCode, ServiceError};

/// The metadata entry that carries the token.
pub const CONTEXT_HEADER: &str = "x-treven-context";

/// Domain separation for signatures, so a mesh key cannot sign anything else.
const SIGNING_PREFIX: &[u8] = b"treven-ctx-v2.";
/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 4096;
/// Clock skew tolerated between services.
const LEEWAY_SECS: i64 = 5;
/// The longest a token may live, whatever the minter asks.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Tokens a verifier remembers having accepted (see [`ContextVerifier`]):
/// a few hundred bytes each, so at most about 1 MiB per service.
pub const VERIFIED_CACHE_ENTRIES: usize = 4096;
/// The lifetime of a token a service mints to call onwards for the request
/// it is serving: long enough for a slow call to start, short enough that a
/// captured token is soon worthless.
pub const ONWARD_TTL: Duration = Duration::from_secs(120);

/// An organisation id: every record and every call belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgId(Uuid);

impl OrgId {
    /// Wraps a UUID.
    pub const fn new(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for OrgId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(OrgId)
    }
}

/// A user's role inside their organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages users and partners; everything an analyst can do.
    Admin,
    /// Researches, edits, submits, approves and shares.
    Analyst,
    /// Reads only.
    Viewer,
}

impl Role {
    /// Everyone in the organisation (reads).
    pub const MEMBERS: &'static [Role] = &[Role::Admin, Role::Analyst, Role::Viewer];
    /// Those who research, write and share (analysts and admins).
    pub const EDITORS: &'static [Role] = &[Role::Admin, Role::Analyst];
    /// Administrators only (users, partners).
    pub const ADMINS: &'static [Role] = &[Role::Admin];

    /// The lowercase name (`admin`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "analyst" => Ok(Role::Analyst),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role {other:?} (admin, analyst or viewer)")),
        }
    }
}

/// Who signs a mesh context. Each principal has its own signing key; a
/// token is accepted only when its issuer's key signed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Principal {
    /// The edge: a user the gateway has just authenticated (Cognito JWT,
    /// organisation, role from tenants).
    Gateway,
    /// The tenants service, acting for a user.
    Tenants,
    /// The documents service, acting for a user.
    Documents,
    /// The reports service, acting for a user (including its workers'
    /// background jobs, for the user who asked).
    Reports,
    /// The agents service, acting for a user.
    Agents,
    /// The AgentCore runtime container, acting for a user.
    AgentRuntime,
    /// An engineer with `treven admin mint-context` (audited; refused in
    /// production without an explicit flag).
    Operator,
}

impl Principal {
    /// Every principal, in a stable order.
    pub const ALL: [Principal; 7] = [
        Principal::Gateway,
        Principal::Tenants,
        Principal::Documents,
        Principal::Reports,
        Principal::Agents,
        Principal::AgentRuntime,
        Principal::Operator,
    ];

    /// The name used in key lists and tokens (`agent-runtime`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Principal::Gateway => "gateway",
            Principal::Tenants => "tenants",
            Principal::Documents => "documents",
            Principal::Reports => "reports",
            Principal::Agents => "agents",
            Principal::AgentRuntime => "agent-runtime",
            Principal::Operator => "operator",
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Principal {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Principal::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Principal::ALL.iter().map(|p| p.as_str()).collect();
                format!("unknown principal {s:?} ({})", names.join(", "))
            })
    }
}

/// Who a call acts for, and who makes it. Built only by verifying a token
/// ([`ContextVerifier::verify`]) or by a signer for its own background work
/// ([`Signer::acting_for`]).
#[derive(Debug, Clone)]
pub struct MeshContext {
    org_id: OrgId,
    user_id: String,
    roles: Vec<Role>,
    request_id: String,
    expires_at: DateTime<Utc>,
    issuer: Principal,
    audience: Principal,
    token_id: String,
}

impl MeshContext {
    /// The caller's organisation.
    pub fn org_id(&self) -> OrgId {
        self.org_id
    }

    /// The user the call acts for: their Cognito subject.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The user's roles; empty while the gateway is still resolving them.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The id of the request this call belongs to.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// When the token stops being accepted.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// Who made the call: the gateway (a user at the edge), a service acting
    /// for the user, or an operator.
    pub fn issuer(&self) -> Principal {
        self.issuer
    }

    /// The service the token was minted for.
    pub fn audience(&self) -> Principal {
        self.audience
    }

    /// The token's unique id (`jti`), for logs and audit.
    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    /// Whether the user holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// FORBIDDEN unless the user holds one of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ServiceError> {
        if roles.iter().any(|role| self.has_role(*role)) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ServiceError::forbidden(format!(
                "requires role {}",
                names.join(" or ")
            )))
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: Principal,
    aud: Principal,
    jti: String,
    org: OrgId,
    sub: String,
    roles: Vec<Role>,
    rid: String,
    iat: i64,
    exp: i64,
}

/// Why a token was refused. Only logged: clients see UNAUTHENTICATED.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    /// No `x-treven-context` entry.
    #[error("no mesh context token")]
    Missing,
    /// Not two base64url parts, too long, bad JSON, or a lifetime over the
    /// maximum.
    #[error("malformed mesh context token")]
    Malformed,
    /// Minted for another service.
    #[error("mesh context minted for {0}, not for this service")]
    WrongAudience(Principal),
    /// The issuer's key did not sign it (or the issuer has no key here).
    #[error("bad mesh context signature for issuer {0}")]
    BadSignature(Principal),
    /// Past its expiry.
    #[error("expired mesh context token")]
    Expired,
}

/// An Ed25519 key (a 32-byte seed): one principal's signing key.
#[derive(Clone)]
pub struct MeshKey {
    signing: SigningKey,
}

impl fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("MeshKey")
            .field("public", &self.public_base64())
            .finish()
    }
}

impl MeshKey {
    /// A fresh random key (for `treven keygen`, dev stacks and tests).
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// Parses the standard-base64 32-byte seed kept in config or Secrets
    /// Manager.
    pub fn from_base64(encoded: &str) -> Result<Self, String> {
        let seed: [u8; 32] = decode_32(encoded)?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// The seed as standard base64, for writing into a secret.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.signing.to_bytes())
    }

    /// The public key as standard base64, for `TREVEN_MESH_PUBLIC_KEYS`.
    pub fn public_base64(&self) -> String {
        STANDARD.encode(self.signing.verifying_key().as_bytes())
    }

    /// Derives a 32-byte sub-key for another purpose (e.g. cursor MACs), so
    /// one secret serves the service without reusing key material directly.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.signing.to_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"treven-derive-v1.");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }
}

fn decode_32(encoded: &str) -> Result<[u8; 32], String> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("must be 32 bytes, got {}", b.len()))
}

/// One principal's key: mints the tokens that principal may issue, and
/// nothing else.
#[derive(Clone, Debug)]
pub struct Signer {
    principal: Principal,
    key: MeshKey,
}

impl Signer {
    /// `principal` signing with `key`.
    pub fn new(principal: Principal, key: MeshKey) -> Self {
        Self { principal, key }
    }

    /// Whose key this is.
    pub fn principal(&self) -> Principal {
        self.principal
    }

    /// The key (to derive sub-keys such as the cursor MAC key).
    pub fn key(&self) -> &MeshKey {
        &self.key
    }

    /// Mints a token for `audience`, acting for `user_id` of `org_id` with
    /// `roles`, valid for `ttl` (capped at [`MAX_TTL`]).
    pub fn mint(
        &self,
        audience: Principal,
        org_id: OrgId,
        user_id: &str,
        roles: &[Role],
        request_id: &str,
        ttl: Duration,
    ) -> String {
        let now = Utc::now().timestamp();
        let ttl = ttl.min(MAX_TTL).as_secs() as i64;
        let claims = Claims {
            iss: self.principal,
            aud: audience,
            jti: Uuid::new_v4().simple().to_string(),
            org: org_id,
            sub: user_id.to_owned(),
            roles: roles.to_vec(),
            rid: request_id.to_owned(),
            iat: now,
            exp: now + ttl,
        };
        let payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&claims).unwrap_or_else(|_| unreachable!("claims serialise")),
        );
        let signature = self.key.signing.sign(&signed_bytes(&payload));
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// A token for `audience`, acting for `user_id` of `org_id` with
    /// `roles`, valid for `ttl`, that names no request: each call that
    /// presents it is of the request its `x-request-id` entry names (see
    /// [`verify_metadata`]). The same token can then serve one user's calls
    /// to one service while it is fresh, and each service verifies its
    /// signature once ([`ContextVerifier`] remembers it).
    pub fn mint_reusable(
        &self,
        audience: Principal,
        org_id: OrgId,
        user_id: &str,
        roles: &[Role],
        ttl: Duration,
    ) -> String {
        self.mint(audience, org_id, user_id, roles, "", ttl)
    }

    /// A token to call `audience` for the user `context` acts for (same
    /// organisation, user, roles and request id), valid [`ONWARD_TTL`]. The
    /// received token is never forwarded.
    pub fn onward(&self, context: &MeshContext, audience: Principal) -> String {
        self.mint(
            audience,
            context.org_id,
            &context.user_id,
            &context.roles,
            &context.request_id,
            ONWARD_TTL,
        )
    }

    /// Puts a token for `audience`, acting for the user `context` acts for,
    /// on `request` (and bounds its deadline, [`attach_context`]): what
    /// every onward call does.
    pub fn attach<T>(
        &self,
        request: &mut Request<T>,
        context: &MeshContext,
        audience: Principal,
    ) -> Result<(), ServiceError> {
        attach_context(request, &self.onward(context, audience))
    }

    /// The context of background work this principal does for a user (a
    /// report job for its requester): as if the user's call had reached this
    /// service, for use with [`Signer::onward`].
    pub fn acting_for(
        &self,
        org_id: OrgId,
        user_id: &str,
        roles: &[Role],
        request_id: &str,
    ) -> MeshContext {
        MeshContext {
            org_id,
            user_id: user_id.to_owned(),
            roles: roles.to_vec(),
            request_id: request_id.to_owned(),
            expires_at: Utc::now() + ONWARD_TTL,
            issuer: self.principal,
            audience: self.principal,
            token_id: Uuid::new_v4().simple().to_string(),
        }
    }
}

fn signed_bytes(payload: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SIGNING_PREFIX.len() + payload.len());
    bytes.extend_from_slice(SIGNING_PREFIX);
    bytes.extend_from_slice(payload.as_bytes());
    bytes
}

/// The public keys of every principal (two for one being rotated): what a
/// verifier holds. Parsed from `principal:base64,principal:base64`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: BTreeMap<Principal, Vec<VerifyingKey>>,
}

impl KeySet {
    /// Adds `principal`'s public key `key` (a second one is kept too: the
    /// previous key while rotating).
    pub fn insert(&mut self, principal: Principal, key: VerifyingKey) {
        let keys = self.keys.entry(principal).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }

    /// Adds the public half of `signer`'s key.
    pub fn insert_signer(&mut self, signer: &Signer) {
        self.insert(signer.principal, signer.key.verifying_key());
    }

    /// Parses `principal:base64 public key` entries, comma-separated.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut set = KeySet::default();
        for (principal, encoded) in parse_entries(list)? {
            let bytes = decode_32(encoded).map_err(|e| format!("{principal}: {e}"))?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|_| format!("{principal}: not an Ed25519 public key"))?;
            set.insert(principal, key);
        }
        Ok(set)
    }

    /// The `principal:base64,…` form of the set.
    pub fn to_list(&self) -> String {
        self.keys
            .iter()
            .flat_map(|(principal, keys)| {
                keys.iter()
                    .map(move |key| format!("{principal}:{}", STANDARD.encode(key.as_bytes())))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A verifier for tokens minted for `audience`, remembering up to
    /// [`VERIFIED_CACHE_ENTRIES`] accepted tokens.
    pub fn verifier(&self, audience: Principal) -> ContextVerifier {
        self.verifier_with_cache(audience, VERIFIED_CACHE_ENTRIES)
    }

    /// A verifier for `audience` remembering up to `entries` accepted
    /// tokens (at least one).
    pub fn verifier_with_cache(&self, audience: Principal, entries: usize) -> ContextVerifier {
        ContextVerifier {
            audience,
            keys: Arc::new(self.clone()),
            verified: Arc::new(VerifiedTokens::new(entries)),
        }
    }
}

/// Parses `principal:value` entries separated by commas (whitespace and
/// empty entries ignored).
pub(crate) fn parse_entries(list: &str) -> Result<Vec<(Principal, &str)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (principal, value) = entry
                .split_once(':')
                .ok_or_else(|| "each entry must be principal:base64".to_owned())?;
            Ok((principal.trim().parse::<Principal>()?, value.trim()))
        })
        .collect()
}

/// Verifies tokens presented to one service (the audience) against the
/// public keys of their issuers.
///
/// A token it has accepted is remembered, by the SHA-256 of the whole
/// token, until it expires (at most [`VERIFIED_CACHE_ENTRIES`], least
/// recently used first out): the same token presented again is accepted
/// without decoding it or checking its Ed25519 signature again, since the
/// same bytes were verified, but it is refused after its expiry exactly as
/// a first presentation would be. Only accepted tokens are remembered, so a
/// caller without a signing key cannot fill the cache. Clones share it.
#[derive(Debug, Clone)]
pub struct ContextVerifier {
    audience: Principal,
    keys: Arc<KeySet>,
    verified: Arc<VerifiedTokens>,
}

/// The tokens a verifier has accepted: SHA-256 of the token → its context.
struct VerifiedTokens {
    entries: Mutex<lru::LruCache<[u8; 32], MeshContext>>,
}

impl fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cache = self.entries.lock().map(|c| (c.len(), c.cap().get()));
        f.debug_struct("VerifiedTokens")
            .field("len_and_capacity", &cache.ok())
            .finish()
    }
}

impl VerifiedTokens {
    fn new(entries: usize) -> Self {
        let capacity = NonZeroUsize::new(entries).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(lru::LruCache::new(capacity)),
        }
    }

    /// The context of the accepted token `fingerprint` while it is still
    /// valid at `now` (the same test as [`ContextVerifier::verify`]'s);
    /// an expired one is forgotten.
    fn get(&self, fingerprint: &[u8; 32], now: i64) -> Option<MeshContext> {
        let mut cache = self.entries.lock().ok()?;
        match cache.get(fingerprint) {
            Some(context) if context.expires_at.timestamp() + LEEWAY_SECS >= now => {
                Some(context.clone())
            }
            Some(_) => {
                cache.pop(fingerprint);
                None
            }
            None => None,
        }
    }

    fn put(&self, fingerprint: [u8; 32], context: &MeshContext) {
        if let Ok(mut cache) = self.entries.lock() {
            cache.put(fingerprint, context.clone());
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map_or(0, |cache| cache.len())
    }
}

impl ContextVerifier {
    /// The service this verifier accepts tokens for.
    pub fn audience(&self) -> Principal {
        self.audience
    }

    /// Checks the audience, the issuer's signature and the lifetime, and
    /// returns the context (from the cache when this exact token was
    /// accepted before and has not expired; see the type's docs).
    pub fn verify(&self, token: &str) -> Result<MeshContext, ContextError> {
        self.verify_at(token, Utc::now().timestamp())
    }

    fn verify_at(&self, token: &str, now: i64) -> Result<MeshContext, ContextError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(ContextError::Malformed);
        }
        let fingerprint: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(context) = self.verified.get(&fingerprint, now) {
            // Only this verifier's own acceptances are in its cache, so the
            // audience is its own; checked again all the same.
            if context.audience == self.audience {
                return Ok(context);
            }
        }
        let context = self.verify_uncached(token, now)?;
        self.verified.put(fingerprint, &context);
        Ok(context)
    }

    /// The full check: signature, audience, lifetime at `now`.
    fn verify_uncached(&self, token: &str, now: i64) -> Result<MeshContext, ContextError> {
        let (payload, signature) = token.split_once('.').ok_or(ContextError::Malformed)?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(ContextError::Malformed)?;
        // The claims are read before the signature is checked to find the
        // issuer's key; nothing in them is trusted until it is.
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(ContextError::Malformed)?;
        let signature = Signature::from_bytes(&signature);
        let message = signed_bytes(payload);
        let signed = self.keys.keys.get(&claims.iss).is_some_and(|keys| {
            keys.iter()
                .any(|key| key.verify_strict(&message, &signature).is_ok())
        });
        if !signed {
            return Err(ContextError::BadSignature(claims.iss));
        }
        if claims.aud != self.audience {
            return Err(ContextError::WrongAudience(claims.aud));
        }
        if claims.exp + LEEWAY_SECS < now {
            return Err(ContextError::Expired);
        }
        if claims.iat > now + LEEWAY_SECS || claims.exp - claims.iat > MAX_TTL.as_secs() as i64 {
            return Err(ContextError::Malformed);
        }
        Ok(MeshContext {
            org_id: claims.org,
            user_id: claims.sub,
            roles: claims.roles,
            request_id: claims.rid,
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
            issuer: claims.iss,
            audience: claims.aud,
            token_id: claims.jti,
        })
    }
}

/// The metadata entry naming the request a call belongs to.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Whether `id` may be a request id: 1 to 64 ASCII letters, digits, `-` or
/// `_` (what the gateway accepts from clients, and UUIDs).
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Verifies the `x-treven-context` entry of `metadata`.
///
/// A token minted without a request id (the gateway's, reused for one
/// user's calls to one service while it is fresh; see
/// [`Signer::mint_reusable`]) takes the call's own `x-request-id` entry, or
/// a new id when that is missing or invalid; a token that names its request
/// keeps it, whatever the metadata says.
pub fn verify_metadata(
    verifier: &ContextVerifier,
    metadata: &http::HeaderMap,
) -> Result<MeshContext, ContextError> {
    let mut context = match metadata.get(CONTEXT_HEADER) {
        None => Err(ContextError::Missing),
        Some(value) => value
            .to_str()
            .map_err(|_| ContextError::Malformed)
            .and_then(|token| verifier.verify(token)),
    }?;
    if context.request_id.is_empty() {
        context.request_id = metadata
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .filter(|id| is_valid_request_id(id))
            .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    }
    Ok(context)
}

/// The verified context of a request that passed the service's
/// [`crate::policy::Guarded`] layer.
pub fn context_of<T>(request: &Request<T>) -> Result<MeshContext, ServiceError> {
    request
        .extensions()
        .get::<MeshContext>()
        .cloned()
        .ok_or_else(|| {
            // Only reachable if a service was mounted without the layer.
            ServiceError::new(ErrorCode::Unauthorized, "a valid mesh context is required")
        })
}

/// Adds `token` to an outgoing request, bounds its timeout by what is
/// left of the deadline of the call being served, and puts the current
/// span's W3C trace context on it (every outbound call goes through here;
/// see [`crate::deadline`] and [`crate::trace`]).
pub fn attach_context<T>(request: &mut Request<T>, token: &str) -> Result<(), ServiceError> {
    let value = token
        .parse()
        .map_err(|_| ServiceError::internal(anyhow::anyhow!("context token is not ASCII")))?;
    request.metadata_mut().insert(CONTEXT_HEADER, value);
    crate::deadline::bound_outgoing(request.metadata_mut());
    crate::trace::inject_metadata(request.metadata_mut());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> OrgId {
        OrgId::new(Uuid::now_v7())
    }

    fn signer(principal: Principal) -> Signer {
        Signer::new(principal, MeshKey::generate())
    }

    fn keys(signers: &[&Signer]) -> KeySet {
        let mut set = KeySet::default();
        for signer in signers {
            set.insert_signer(signer);
        }
        set
    }

    #[test]
    fn a_minted_token_verifies_for_its_audience_and_carries_the_claims() {
        let gateway = signer(Principal::Gateway);
        let org = org();
        let token = gateway.mint(
            Principal::Reports,
            org,
            "sub-1",
            &[Role::Analyst],
            "req-1",
            Duration::from_secs(60),
        );
        let context = keys(&[&gateway])
            .verifier(Principal::Reports)
            .verify(&token)
            .expect("valid");
        assert_eq!(context.org_id(), org);
        assert_eq!(context.user_id(), "sub-1");
        assert_eq!(context.roles(), &[Role::Analyst]);
        assert_eq!(context.request_id(), "req-1");
        assert_eq!(context.issuer(), Principal::Gateway);
        assert_eq!(context.audience(), Principal::Reports);
        assert_eq!(context.token_id().len(), 32);
        assert!(context.require_any(&[Role::Admin]).is_err());
        assert!(context.require_any(&[Role::Admin, Role::Analyst]).is_ok());

        // The same token at another service is refused.
        assert_eq!(
            keys(&[&gateway])
                .verifier(Principal::Documents)
                .verify(&token)
                .err(),
            Some(ContextError::WrongAudience(Principal::Reports))
        );
    }

    #[test]
    fn a_key_signs_only_for_its_own_principal() {
        let gateway = signer(Principal::Gateway);
        let reports = signer(Principal::Reports);
        let set = keys(&[&gateway, &reports]);
        // The gateway's key claiming to be the reports service.
        let forged = Signer::new(Principal::Reports, gateway.key().clone()).mint(
            Principal::Documents,
            org(),
            "sub-1",
            &[Role::Admin],
            "r",
            Duration::from_secs(60),
        );
        assert_eq!(
            set.verifier(Principal::Documents).verify(&forged).err(),
            Some(ContextError::BadSignature(Principal::Reports))
        );
        // A principal with no public key here cannot be verified.
        let operator = signer(Principal::Operator);
        let token = operator.mint(
            Principal::Documents,
            org(),
            "s",
            &[],
            "r",
            Duration::from_secs(60),
        );
        assert_eq!(
            set.verifier(Principal::Documents).verify(&token).err(),
            Some(ContextError::BadSignature(Principal::Operator))
        );
    }

    #[test]
    fn a_changed_payload_is_refused() {
        let gateway = signer(Principal::Gateway);
        let token = gateway.mint(
            Principal::Tenants,
            org(),
            "sub-1",
            &[Role::Viewer],
            "r",
            Duration::from_secs(60),
        );
        // Swap in claims that grant admin in another org, keep the signature.
        let (_, signature) = token.split_once('.').expect("two parts");
        let forged = gateway.mint(
            Principal::Tenants,
            org(),
            "sub-1",
            &[Role::Admin],
            "r",
            Duration::from_secs(60),
        );
        let (forged_payload, _) = forged.split_once('.').expect("two parts");
        let tampered = format!("{forged_payload}.{signature}");
        assert_eq!(
            keys(&[&gateway])
                .verifier(Principal::Tenants)
                .verify(&tampered)
                .err(),
            Some(ContextError::BadSignature(Principal::Gateway))
        );
    }

    fn signed(signer: &Signer, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("json"));
        let signature = signer.key.signing.sign(&signed_bytes(&payload));
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    #[test]
    fn expired_overlong_and_malformed_tokens_are_refused() {
        let gateway = signer(Principal::Gateway);
        let verifier = keys(&[&gateway]).verifier(Principal::Tenants);
        let now = Utc::now().timestamp();
        let claims = |iat: i64, exp: i64| Claims {
            iss: Principal::Gateway,
            aud: Principal::Tenants,
            jti: "j".into(),
            org: org(),
            sub: "s".into(),
            roles: vec![],
            rid: "r".into(),
            iat,
            exp,
        };
        assert_eq!(
            verifier
                .verify(&signed(&gateway, &claims(now - 120, now - 60)))
                .err(),
            Some(ContextError::Expired)
        );
        // Longer than MAX_TTL, or issued in the future: not something a
        // signer here mints.
        assert_eq!(
            verifier
                .verify(&signed(&gateway, &claims(now, now + 7200)))
                .err(),
            Some(ContextError::Malformed)
        );
        assert_eq!(
            verifier
                .verify(&signed(&gateway, &claims(now + 600, now + 700)))
                .err(),
            Some(ContextError::Malformed)
        );
        for bad in ["", "abc", "a.b", &"x".repeat(5000), "e30.AAAA"] {
            assert!(verifier.verify(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_accepted_token_is_remembered_until_its_expiry_and_no_longer() {
        let gateway = signer(Principal::Gateway);
        let verifier = keys(&[&gateway]).verifier(Principal::Tenants);
        let now = Utc::now().timestamp();
        let token = gateway.mint(
            Principal::Tenants,
            org(),
            "sub-1",
            &[Role::Analyst],
            "r",
            Duration::from_secs(60),
        );
        let first = verifier.verify_at(&token, now).expect("valid");
        assert_eq!(verifier.verified.len(), 1);
        // Again, from the cache: the same context, nothing added.
        let again = verifier
            .clone()
            .verify_at(&token, now + 30)
            .expect("cached");
        assert_eq!(again.token_id(), first.token_id());
        assert_eq!(again.org_id(), first.org_id());
        assert_eq!(again.roles(), first.roles());
        assert_eq!(verifier.verified.len(), 1);
        // Valid up to the last second a first presentation would accept…
        let expiry = first.expires_at().timestamp();
        assert!(verifier.verify_at(&token, expiry + LEEWAY_SECS).is_ok());
        // …and refused one second later, and forgotten.
        assert_eq!(
            verifier.verify_at(&token, expiry + LEEWAY_SECS + 1).err(),
            Some(ContextError::Expired)
        );
        assert_eq!(verifier.verified.len(), 0);
    }

    #[test]
    fn the_cache_is_bounded_and_holds_only_accepted_tokens() {
        let gateway = signer(Principal::Gateway);
        let stranger = signer(Principal::Gateway);
        let verifier = keys(&[&gateway]).verifier_with_cache(Principal::Tenants, 4);
        let mint = |signer: &Signer| {
            signer.mint(
                Principal::Tenants,
                org(),
                "s",
                &[],
                "r",
                Duration::from_secs(60),
            )
        };
        for _ in 0..10 {
            verifier.verify(&mint(&gateway)).expect("valid");
        }
        assert_eq!(verifier.verified.len(), 4);
        // Refused tokens are not remembered: a key not in the set, another
        // audience, and a cached token's payload under another signature.
        let cached = mint(&gateway);
        verifier.verify(&cached).expect("valid");
        let (payload, _) = cached.split_once('.').expect("two parts");
        let (_, foreign_signature) = mint(&stranger)
            .split_once('.')
            .map(|(p, s)| (p.to_owned(), s.to_owned()))
            .expect("two parts");
        let forged = format!("{payload}.{foreign_signature}");
        let other_audience = gateway.mint(
            Principal::Reports,
            org(),
            "s",
            &[],
            "r",
            Duration::from_secs(60),
        );
        for _ in 0..3 {
            assert_eq!(
                verifier.verify(&forged).err(),
                Some(ContextError::BadSignature(Principal::Gateway))
            );
            assert_eq!(
                verifier.verify(&mint(&stranger)).err(),
                Some(ContextError::BadSignature(Principal::Gateway))
            );
            assert_eq!(
                verifier.verify(&other_audience).err(),
                Some(ContextError::WrongAudience(Principal::Reports))
            );
        }
        assert!(verifier.verify(&cached).is_ok());
        assert_eq!(verifier.verified.len(), 4);
        // A verifier for another audience has its own cache: the token
        // accepted here is still refused there.
        assert_eq!(
            keys(&[&gateway])
                .verifier(Principal::Reports)
                .verify(&cached)
                .err(),
            Some(ContextError::WrongAudience(Principal::Tenants))
        );
    }

    #[test]
    fn rotation_accepts_both_keys_of_a_principal() {
        let old = signer(Principal::Reports);
        let new = signer(Principal::Reports);
        let set = keys(&[&old, &new]);
        let token = old.mint(
            Principal::Tenants,
            org(),
            "s",
            &[],
            "r",
            Duration::from_secs(60),
        );
        assert!(set.verifier(Principal::Tenants).verify(&token).is_ok());
        assert_eq!(KeySet::parse(&set.to_list()).expect("parses"), set);
    }

    #[test]
    fn onward_tokens_keep_the_user_and_change_issuer_and_audience() {
        let gateway = signer(Principal::Gateway);
        let reports = signer(Principal::Reports);
        let set = keys(&[&gateway, &reports]);
        let incoming = gateway.mint(
            Principal::Reports,
            org(),
            "sub-9",
            &[Role::Analyst],
            "req-9",
            Duration::from_secs(60),
        );
        let at_reports = set
            .verifier(Principal::Reports)
            .verify(&incoming)
            .expect("valid");
        let onward = reports.onward(&at_reports, Principal::Documents);
        let at_documents = set
            .verifier(Principal::Documents)
            .verify(&onward)
            .expect("valid");
        assert_eq!(at_documents.issuer(), Principal::Reports);
        assert_eq!(at_documents.org_id(), at_reports.org_id());
        assert_eq!(at_documents.user_id(), "sub-9");
        assert_eq!(at_documents.roles(), &[Role::Analyst]);
        assert_eq!(at_documents.request_id(), "req-9");
        assert_ne!(at_documents.token_id(), at_reports.token_id());
        // The received token itself is no good at documents.
        assert!(
            set.verifier(Principal::Documents)
                .verify(&incoming)
                .is_err()
        );

        let job = reports.acting_for(at_reports.org_id(), "sub-9", &[Role::Analyst], "job-1");
        let from_job = reports.onward(&job, Principal::Agents);
        assert_eq!(
            set.verifier(Principal::Agents)
                .verify(&from_job)
                .expect("valid")
                .request_id(),
            "job-1"
        );
    }

    #[test]
    fn keys_round_trip_through_base64_and_hide_in_debug() {
        let key = MeshKey::generate();
        let again = MeshKey::from_base64(&key.to_base64()).expect("parses");
        assert_eq!(again.derive("cursor"), key.derive("cursor"));
        assert_ne!(key.derive("cursor"), key.derive("other"));
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        assert!(format!("{key:?}").contains(&key.public_base64()));
        assert!(MeshKey::from_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn key_lists_name_bad_entries() {
        assert_eq!(KeySet::parse("").expect("empty is fine"), KeySet::default());
        assert!(
            KeySet::parse("nobody:AAAA")
                .expect_err("invalid")
                .contains("unknown principal")
        );
        assert!(
            KeySet::parse("gateway")
                .expect_err("invalid")
                .contains("principal:base64")
        );
        assert!(
            KeySet::parse("gateway:c2hvcnQ=")
                .expect_err("invalid")
                .starts_with("gateway:")
        );
        assert_eq!("agent-runtime".parse(), Ok(Principal::AgentRuntime));
    }

    #[test]
    fn the_metadata_must_carry_a_token() {
        let gateway = signer(Principal::Gateway);
        let verifier = keys(&[&gateway]).verifier(Principal::Tenants);
        assert_eq!(
            verify_metadata(&verifier, &http::HeaderMap::new()).err(),
            Some(ContextError::Missing)
        );
        let mut request = Request::new(());
        let token = gateway.mint(
            Principal::Tenants,
            org(),
            "s",
            &[Role::Admin],
            "r",
            Duration::from_secs(60),
        );
        attach_context(&mut request, &token).expect("ascii");
        let context = verify_metadata(&verifier, &request.metadata().clone().into_headers())
            .expect("accepted");
        assert!(context.has_role(Role::Admin));
    }

    #[test]
    fn a_reusable_token_takes_each_calls_request_id_and_a_named_one_keeps_its_own() {
        let gateway = signer(Principal::Gateway);
        let verifier = keys(&[&gateway]).verifier(Principal::Reports);
        let org = org();
        let reusable = gateway.mint_reusable(
            Principal::Reports,
            org,
            "sub-1",
            &[Role::Analyst],
            Duration::from_secs(60),
        );
        let call = |token: &str, request_id: Option<&str>| {
            let mut headers = http::HeaderMap::new();
            headers.insert(CONTEXT_HEADER, token.parse().expect("ascii"));
            if let Some(id) = request_id {
                headers.insert(REQUEST_ID_HEADER, id.parse().expect("ascii"));
            }
            verify_metadata(&verifier, &headers).expect("accepted")
        };
        // The same token twice (the second from the verifier's cache): each
        // call is of its own request, for the same user.
        let first = call(&reusable, Some("req-a"));
        let second = call(&reusable, Some("req-b"));
        assert_eq!(verifier.verified.len(), 1);
        assert_eq!(
            (first.request_id(), second.request_id()),
            ("req-a", "req-b")
        );
        for context in [&first, &second] {
            assert_eq!(context.org_id(), org);
            assert_eq!(context.user_id(), "sub-1");
            assert_eq!(context.roles(), &[Role::Analyst]);
        }
        // No id, or one the gateway would not accept: a new one.
        let missing = call(&reusable, None);
        let invalid = call(&reusable, Some("no spaces allowed"));
        for context in [&missing, &invalid] {
            assert_eq!(context.request_id().len(), 36, "a UUID");
        }
        assert_ne!(missing.request_id(), invalid.request_id());
        // A token that names its request keeps it.
        let named = gateway.mint(
            Principal::Reports,
            org,
            "sub-1",
            &[Role::Analyst],
            "req-signed",
            Duration::from_secs(60),
        );
        assert_eq!(call(&named, Some("req-other")).request_id(), "req-signed");
    }
}
