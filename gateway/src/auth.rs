//! Cognito JWT verification.
//!
//! The gateway accepts Cognito **ID tokens**: they carry `custom:orgId` and
//! `email`, which access tokens lack unless a pre-token-generation trigger
//! adds them. A token is accepted when:
//! - its header says RS256 and names a `kid` from the pool's JWKS (fetched
//!   from `TREVEN_COGNITO_JWKS_URL`, cached, and refetched on an unknown
//!   `kid` at most once per `min_refresh`);
//! - the signature verifies; `iss` is the configured pool; `aud` is the app
//!   client id; `exp`/`nbf` hold with a small leeway; `token_use` is `id`;
//! - `custom:orgId` is a UUID.
//!
//! Verified tokens are cached until they expire (bounded), so a client that
//! repeats its token pays for one signature check.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::Digest as _;
use tokio::sync::RwLock;
use treven_mesh::OrgId;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token was refused (logged; clients see UNAUTHORIZED).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No bearer token.
    #[error("no bearer token")]
    Missing,
    /// Not a JWT, wrong algorithm, bad claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Signed by no key of the pool.
    #[error("unknown signing key")]
    UnknownKey,
    /// Signature, issuer, audience or time checks failed.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The JWKS could not be fetched.
    #[error("cannot fetch the JWKS: {0}")]
    JwksUnavailable(String),
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Cognito subject.
    pub sub: String,
    /// Organisation from `custom:orgId`.
    pub org_id: OrgId,
    /// E-mail, when the token carries it (and it is verified).
    pub email: Option<String>,
    /// Token expiry (Unix seconds).
    pub expires_at: i64,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    token_use: String,
    exp: i64,
    #[serde(rename = "custom:orgId")]
    org_id: Option<String>,
    email: Option<String>,
    email_verified: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    kid: String,
    kty: String,
    n: Option<String>,
    e: Option<String>,
}

struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Verifies Cognito ID tokens of one user pool and app client.
pub struct JwtVerifier {
    issuer: String,
    client_id: String,
    jwks_url: String,
    min_refresh: Duration,
    http: reqwest::Client,
    keys: RwLock<KeyCache>,
    verified: Mutex<lru::LruCache<[u8; 32], Identity>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("jwks_url", &self.jwks_url)
            .finish()
    }
}

impl JwtVerifier {
    /// A verifier for `issuer` (`https://cognito-idp.<region>.amazonaws.com/<pool>`)
    /// and app `client_id`, with keys from `jwks_url`.
    pub fn new(
        issuer: String,
        client_id: String,
        jwks_url: String,
        min_refresh: Duration,
        cache_entries: usize,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let capacity = NonZeroUsize::new(cache_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            issuer,
            client_id,
            jwks_url,
            min_refresh,
            http,
            keys: RwLock::new(KeyCache {
                keys: HashMap::new(),
                fetched_at: None,
            }),
            verified: Mutex::new(lru::LruCache::new(capacity)),
        }
    }

    /// A verifier whose keys are the RSA keys of the JWKS document `jwks`
    /// (the JSON of a `.well-known/jwks.json`), fixed for its lifetime: an
    /// unknown `kid` is [`AuthError::UnknownKey`] and nothing is ever fetched.
    /// For tests and the fuzz targets, which must not need a network.
    ///
    /// Fails with [`AuthError::JwksUnavailable`] when `jwks` is not a JWKS.
    pub fn from_jwks(
        issuer: String,
        client_id: String,
        jwks: &[u8],
        cache_entries: usize,
    ) -> Result<Self, AuthError> {
        let set: JwkSet = serde_json::from_slice(jwks)
            .map_err(|e| AuthError::JwksUnavailable(format!("not a JWKS: {e}")))?;
        let verifier = Self::new(
            issuer,
            client_id,
            String::new(),
            Duration::MAX,
            cache_entries,
        );
        let cache = KeyCache {
            keys: decoding_keys(set),
            // Fetched "now" with an endless refresh interval: never refetched.
            fetched_at: Some(Instant::now()),
        };
        Ok(Self {
            keys: RwLock::new(cache),
            ..verifier
        })
    }

    /// Verifies `token` and returns the caller's identity.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("too long".into()));
        }
        let fingerprint: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = chrono::Utc::now().timestamp();
        if let Some(identity) = self.cached(&fingerprint, now) {
            return Ok(identity);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Malformed(format!(
                "algorithm {:?} is not RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("no kid".into()))?;
        let key = self.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.token_use != "id" {
            return Err(AuthError::Invalid(format!(
                "token_use is {:?}, the gateway takes ID tokens",
                claims.token_use
            )));
        }
        let org_id = claims
            .org_id
            .as_deref()
            .and_then(|raw| raw.parse::<OrgId>().ok())
            .ok_or_else(|| AuthError::Invalid("custom:orgId is missing or not a UUID".into()))?;
        let verified_email = matches!(&claims.email_verified, Some(serde_json::Value::Bool(true)))
            || matches!(&claims.email_verified, Some(serde_json::Value::String(s)) if s == "true");
        let identity = Identity {
            sub: claims.sub,
            org_id,
            email: claims.email.filter(|_| verified_email),
            expires_at: claims.exp,
        };
        if let Ok(mut cache) = self.verified.lock() {
            cache.put(fingerprint, identity.clone());
        }
        Ok(identity)
    }

    fn cached(&self, fingerprint: &[u8; 32], now: i64) -> Option<Identity> {
        let mut cache = self.verified.lock().ok()?;
        match cache.get(fingerprint) {
            Some(identity) if identity.expires_at + LEEWAY_SECS as i64 >= now => {
                Some(identity.clone())
            }
            Some(_) => {
                cache.pop(fingerprint);
                None
            }
            None => None,
        }
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        {
            let cache = self.keys.read().await;
            if let Some(key) = cache.keys.get(kid) {
                return Ok(key.clone());
            }
            if cache
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.min_refresh)
            {
                return Err(AuthError::UnknownKey);
            }
        }
        let mut cache = self.keys.write().await;
        // Another request may have refreshed while we waited for the lock.
        if let Some(key) = cache.keys.get(kid) {
            return Ok(key.clone());
        }
        if cache
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.min_refresh)
        {
            return Err(AuthError::UnknownKey);
        }
        cache.fetched_at = Some(Instant::now());
        let set: JwkSet = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthError::JwksUnavailable(e.to_string()))?
            .json()
            .await
            .map_err(|e| AuthError::JwksUnavailable(e.to_string()))?;
        cache.keys = decoding_keys(set);
        tracing::info!(keys = cache.keys.len(), "jwks refreshed");
        cache.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
    }
}

/// The RSA keys of `set` by `kid`; other key types and keys whose `n`/`e`
/// do not decode are left out.
fn decoding_keys(set: JwkSet) -> HashMap<String, DecodingKey> {
    set.keys
        .into_iter()
        .filter(|k| k.kty == "RSA")
        .filter_map(|k| {
            let key = DecodingKey::from_rsa_components(k.n.as_deref()?, k.e.as_deref()?).ok()?;
            Some((k.kid, key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    // The throwaway key pair of the fuzz targets (it signs nothing real).
    const JWKS: &str = include_str!("../fuzz/keys/jwks.json");
    const PRIVATE_PEM: &str = include_str!("../fuzz/keys/fuzz-only-rsa.pem");
    const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_fuzz";
    const CLIENT: &str = "fuzz-client";

    fn sign(kid: &str, claims: &serde_json::Value) -> String {
        let body: String = PRIVATE_PEM
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&der)).unwrap()
    }

    fn claims(org: &str) -> serde_json::Value {
        serde_json::json!({
            "sub": "user-1",
            "iss": ISSUER,
            "aud": CLIENT,
            "token_use": "id",
            "exp": chrono::Utc::now().timestamp() + 600,
            "custom:orgId": org,
            "email": "ann@example.org",
            "email_verified": "true",
        })
    }

    #[tokio::test]
    async fn a_static_jwks_verifies_without_fetching() {
        let verifier =
            JwtVerifier::from_jwks(ISSUER.into(), CLIENT.into(), JWKS.as_bytes(), 8).unwrap();
        let org = uuid::Uuid::now_v7().to_string();
        let identity = verifier
            .verify(&sign("fuzz-key-1", &claims(&org)))
            .await
            .unwrap();
        assert_eq!(identity.sub, "user-1");
        assert_eq!(identity.org_id.to_string(), org);
        assert_eq!(identity.email.as_deref(), Some("ann@example.org"));

        // An unknown kid is refused from the fixed set: a fetch of the empty
        // JWKS URL would have been JwksUnavailable instead.
        assert_eq!(
            verifier.verify(&sign("other-key", &claims(&org))).await,
            Err(AuthError::UnknownKey)
        );
        // The EC key of the set is left out: only RSA keys verify RS256.
        assert_eq!(
            verifier.verify(&sign("fuzz-ec-key", &claims(&org))).await,
            Err(AuthError::UnknownKey)
        );
    }

    #[test]
    fn a_static_jwks_must_be_a_jwks() {
        for bad in [&b"not json"[..], b"{}", b"{\"keys\": [{\"kid\": 1}]}"] {
            assert!(matches!(
                JwtVerifier::from_jwks(ISSUER.into(), CLIENT.into(), bad, 8),
                Err(AuthError::JwksUnavailable(_))
            ));
        }
    }
}
