//! The mesh context: who a call acts for, carried between services as a
//! signed token in the `x-treven-context` metadata entry.
//!
//! The gateway mints a short-lived token after it has verified the user's
//! Cognito JWT; background work mints one on behalf of the requester. Every
//! service verifies it in [`RequireContext`] before a handler runs and finds
//! the [`MeshContext`] in the request's extensions. Identity headers such as
//! `x-org-id` are never read.
//!
//! Token format: `base64url(claims JSON) "." base64url(Ed25519 signature)`,
//! the signature covering `"treven-ctx-v1." + <first part>`. A JWT library
//! would bring algorithm negotiation and key formats the mesh does not need:
//! there is one algorithm and one key ring, so the format is fixed and the
//! signature primitive comes from `ed25519-dalek`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use tonic::service::Interceptor;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::error::{ErrorCode, ServiceError};

/// The metadata entry that carries the token.
pub const CONTEXT_HEADER: &str = "x-treven-context";

/// Domain separation for signatures, so a mesh key cannot sign anything else.
const SIGNING_PREFIX: &[u8] = b"treven-ctx-v1.";
/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 4096;
/// Clock skew tolerated between services.
const LEEWAY_SECS: i64 = 5;
/// The longest a token may live, whatever the minter asks.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

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

/// Who a call acts for. Built only by verifying a token.
#[derive(Debug, Clone)]
pub struct MeshContext {
    org_id: OrgId,
    user_id: String,
    roles: Vec<Role>,
    request_id: String,
    expires_at: DateTime<Utc>,
    token: Arc<str>,
}

impl MeshContext {
    /// The caller's organisation.
    pub fn org_id(&self) -> OrgId {
        self.org_id
    }

    /// The caller: the Cognito subject of the user.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The caller's roles; empty while the gateway is still resolving them.
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

    /// The token itself, to forward on calls made for this request.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// FORBIDDEN unless the caller holds one of `roles`.
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
    org: OrgId,
    sub: String,
    roles: Vec<Role>,
    rid: String,
    iat: i64,
    exp: i64,
}

/// Why a token was refused. Only logged: clients see UNAUTHORIZED.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    /// No `x-treven-context` entry.
    #[error("no mesh context token")]
    Missing,
    /// Not two base64url parts, too long, or bad JSON.
    #[error("malformed mesh context token")]
    Malformed,
    /// No key of the ring verifies the signature.
    #[error("bad mesh context signature")]
    BadSignature,
    /// Past its expiry.
    #[error("expired mesh context token")]
    Expired,
}

/// An Ed25519 mesh key: signs and verifies context tokens.
#[derive(Clone)]
pub struct MeshKey {
    signing: SigningKey,
}

impl fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("MeshKey")
            .field(
                "public",
                &URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
            )
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
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("not base64: {e}"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("must be 32 bytes, got {}", b.len()))?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// The seed as standard base64, for writing into a secret.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.signing.to_bytes())
    }

    /// Derives a 32-byte sub-key for another purpose (e.g. cursor MACs), so
    /// one secret serves the mesh without reusing key material directly.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.signing.to_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"treven-derive-v1.");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Mints a token for `org_id`/`user_id` with `roles`, valid for `ttl`
    /// (capped at [`MAX_TTL`]).
    pub fn mint(
        &self,
        org_id: OrgId,
        user_id: &str,
        roles: &[Role],
        request_id: &str,
        ttl: Duration,
    ) -> String {
        let now = Utc::now().timestamp();
        let ttl = ttl.min(MAX_TTL).as_secs() as i64;
        let claims = Claims {
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
        let signature = self.signing.sign(&signed_bytes(&payload));
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// A verifier accepting this key (and no other).
    pub fn verifier(&self) -> ContextVerifier {
        ContextVerifier {
            keys: vec![self.signing.verifying_key()],
        }
    }
}

fn signed_bytes(payload: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SIGNING_PREFIX.len() + payload.len());
    bytes.extend_from_slice(SIGNING_PREFIX);
    bytes.extend_from_slice(payload.as_bytes());
    bytes
}

/// Verifies context tokens against a key ring (the current key, plus the
/// previous one during a rotation).
#[derive(Debug, Clone)]
pub struct ContextVerifier {
    keys: Vec<VerifyingKey>,
}

impl ContextVerifier {
    /// Also accepts tokens signed by `key` (the previous key while rotating).
    pub fn also_accept(mut self, key: &MeshKey) -> Self {
        self.keys.push(key.signing.verifying_key());
        self
    }

    /// Checks the signature and expiry and returns the context.
    pub fn verify(&self, token: &str) -> Result<MeshContext, ContextError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(ContextError::Malformed);
        }
        let (payload, signature) = token.split_once('.').ok_or(ContextError::Malformed)?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(ContextError::Malformed)?;
        let signature = Signature::from_bytes(&signature);
        let message = signed_bytes(payload);
        if !self
            .keys
            .iter()
            .any(|key| key.verify(&message, &signature).is_ok())
        {
            return Err(ContextError::BadSignature);
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(ContextError::Malformed)?;
        let now = Utc::now().timestamp();
        if claims.exp + LEEWAY_SECS < now {
            return Err(ContextError::Expired);
        }
        Ok(MeshContext {
            org_id: claims.org,
            user_id: claims.sub,
            roles: claims.roles,
            request_id: claims.rid,
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
            token: Arc::from(token),
        })
    }
}

/// A tonic interceptor that refuses calls without a valid context token
/// (UNAUTHENTICATED) and puts the [`MeshContext`] in the request extensions.
#[derive(Debug, Clone)]
pub struct RequireContext {
    verifier: Arc<ContextVerifier>,
}

impl RequireContext {
    /// Verifies with `verifier`.
    pub fn new(verifier: ContextVerifier) -> Self {
        Self {
            verifier: Arc::new(verifier),
        }
    }
}

impl Interceptor for RequireContext {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let verified = match request.metadata().get(CONTEXT_HEADER) {
            None => Err(ContextError::Missing),
            Some(value) => value
                .to_str()
                .map_err(|_| ContextError::Malformed)
                .and_then(|t| self.verifier.verify(t)),
        };
        match verified {
            Ok(context) => {
                let span = tracing::Span::current();
                span.record("org_id", tracing::field::display(context.org_id()));
                span.record("request_id", context.request_id());
                request.extensions_mut().insert(context);
                Ok(request)
            }
            Err(reason) => {
                tracing::info!(%reason, "call refused");
                Err(
                    ServiceError::new(ErrorCode::Unauthorized, "a valid mesh context is required")
                        .into(),
                )
            }
        }
    }
}

/// The verified context of a request that passed [`RequireContext`].
pub fn context_of<T>(request: &Request<T>) -> Result<MeshContext, ServiceError> {
    request
        .extensions()
        .get::<MeshContext>()
        .cloned()
        .ok_or_else(|| {
            // Only reachable if a service was mounted without the interceptor.
            ServiceError::new(ErrorCode::Unauthorized, "a valid mesh context is required")
        })
}

/// Adds `token` to an outgoing request, and bounds its timeout by what is
/// left of the deadline of the call being served (every outbound call goes
/// through here; see [`crate::deadline`]).
pub fn attach_context<T>(request: &mut Request<T>, token: &str) -> Result<(), ServiceError> {
    let value = token
        .parse()
        .map_err(|_| ServiceError::internal(anyhow::anyhow!("context token is not ASCII")))?;
    request.metadata_mut().insert(CONTEXT_HEADER, value);
    crate::deadline::bound_outgoing(request.metadata_mut());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> OrgId {
        OrgId::new(Uuid::now_v7())
    }

    #[test]
    fn a_minted_token_verifies_and_carries_the_claims() {
        let key = MeshKey::generate();
        let org = org();
        let token = key.mint(
            org,
            "sub-1",
            &[Role::Analyst],
            "req-1",
            Duration::from_secs(60),
        );
        let context = key.verifier().verify(&token).expect("valid");
        assert_eq!(context.org_id(), org);
        assert_eq!(context.user_id(), "sub-1");
        assert_eq!(context.roles(), &[Role::Analyst]);
        assert_eq!(context.request_id(), "req-1");
        assert!(context.require_any(&[Role::Admin]).is_err());
        assert!(context.require_any(&[Role::Admin, Role::Analyst]).is_ok());
    }

    #[test]
    fn another_key_or_a_changed_payload_is_refused() {
        let key = MeshKey::generate();
        let token = key.mint(
            org(),
            "sub-1",
            &[Role::Viewer],
            "r",
            Duration::from_secs(60),
        );
        assert_eq!(
            MeshKey::generate().verifier().verify(&token).err(),
            Some(ContextError::BadSignature)
        );

        // Swap in claims that grant admin in another org, keep the signature.
        let (_, signature) = token.split_once('.').expect("two parts");
        let forged = key.mint(org(), "sub-1", &[Role::Admin], "r", Duration::from_secs(60));
        let (forged_payload, _) = forged.split_once('.').expect("two parts");
        let tampered = format!("{forged_payload}.{signature}");
        assert_eq!(
            key.verifier().verify(&tampered).err(),
            Some(ContextError::BadSignature)
        );
    }

    #[test]
    fn expired_and_malformed_tokens_are_refused() {
        let key = MeshKey::generate();
        let now = Utc::now().timestamp();
        let claims = Claims {
            org: org(),
            sub: "s".into(),
            roles: vec![],
            rid: "r".into(),
            iat: now - 120,
            exp: now - 60,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
        let signature = key.signing.sign(&signed_bytes(&payload));
        let expired = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        assert_eq!(
            key.verifier().verify(&expired).err(),
            Some(ContextError::Expired)
        );

        for bad in ["", "abc", "a.b", &"x".repeat(5000), "e30.AAAA"] {
            assert!(key.verifier().verify(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rotation_accepts_the_previous_key() {
        let old = MeshKey::generate();
        let new = MeshKey::generate();
        let token = old.mint(org(), "s", &[], "r", Duration::from_secs(60));
        assert!(new.verifier().also_accept(&old).verify(&token).is_ok());
    }

    #[test]
    fn keys_round_trip_through_base64_and_hide_in_debug() {
        let key = MeshKey::generate();
        let again = MeshKey::from_base64(&key.to_base64()).expect("parses");
        assert_eq!(again.derive("cursor"), key.derive("cursor"));
        assert_ne!(key.derive("cursor"), key.derive("other"));
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        assert!(MeshKey::from_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn the_interceptor_requires_a_token() {
        let key = MeshKey::generate();
        let mut interceptor = RequireContext::new(key.verifier());
        let status = interceptor.call(Request::new(())).expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);

        let mut request = Request::new(());
        let token = key.mint(org(), "s", &[Role::Admin], "r", Duration::from_secs(60));
        attach_context(&mut request, &token).expect("ascii");
        let request = interceptor.call(request).expect("accepted");
        assert!(context_of(&request).expect("context").has_role(Role::Admin));
    }
}
