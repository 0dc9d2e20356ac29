//! Partner link tokens: what a link binds, signed so that only the reports
//! service can mint or read one.
//!
//! Format: `base64url(claims JSON) "." base64url(HMAC-SHA256)`, the MAC
//! covering `"treven-link-v1." + <first part>` under a key only the reports
//! service holds ([`LinkKey`]). The claims bind the organisation, the
//! report, the exact approved version, the report-access grant, its partner
//! and permission, and the expiry; a link id names the link in the audit
//! log. Nothing in a token is trusted before its MAC verifies, and a token
//! that does not verify says nothing about why (the caller answers
//! NOT_FOUND).
//!
//! Why a MAC and not a stored secret per link: every access already asks
//! tenants whether the grant still exists with that permission, which is
//! what revokes a link; the token only has to be unforgeable and bounded in
//! time, and verifying it needs no row per link.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone as _, Utc};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use treven_mesh::OrgId;
use uuid::Uuid;

/// Domain separation: a link key signs nothing else.
const SIGNING_PREFIX: &[u8] = b"treven-link-v1.";
/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 2048;
/// Shortest configured key (`TREVEN_REPORTS_LINK_KEY`), in characters.
pub const MIN_KEY_CHARS: usize = 32;
/// Default lifetime of a link, in days.
pub const DEFAULT_DAYS: u32 = 7;
/// Longest lifetime of a link, in days.
pub const MAX_DAYS: u32 = 30;

/// What a partner may do through a link (the grant's permission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkPermission {
    /// Read the approved version inline.
    View,
    /// Also download its exported file and evidence pack.
    Download,
}

impl LinkPermission {
    /// `view` or `download`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LinkPermission::View => "view",
            LinkPermission::Download => "download",
        }
    }
}

/// What a link binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    /// The link's id (audit entries name it).
    #[serde(rename = "lid")]
    pub link_id: Uuid,
    /// The organisation that owns the report.
    pub org: OrgId,
    /// The report.
    #[serde(rename = "rep")]
    pub report_id: Uuid,
    /// The approved version, the only one the link opens.
    #[serde(rename = "ver")]
    pub version: i32,
    /// The report-access grant.
    #[serde(rename = "gid")]
    pub grant_id: Uuid,
    /// The grant's partner.
    #[serde(rename = "pid")]
    pub partner_id: Uuid,
    /// The grant's permission when minted.
    #[serde(rename = "perm")]
    pub permission: LinkPermission,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

impl LinkClaims {
    /// When the link stops working.
    pub fn expires_at(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.exp, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Whether the link has expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now.timestamp() >= self.exp
    }
}

/// The key partner links are signed with. Never printed.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

impl LinkKey {
    /// A key from the configured secret text (at least [`MIN_KEY_CHARS`]
    /// characters, e.g. a Secrets Manager generated password): its SHA-256
    /// under a label, so any printable secret of enough entropy serves.
    pub fn from_secret(secret: &str) -> Result<Self, String> {
        let secret = secret.trim();
        if secret.chars().count() < MIN_KEY_CHARS {
            return Err(format!(
                "must be at least {MIN_KEY_CHARS} characters of secret text"
            ));
        }
        let mut hash = Sha256::new();
        hash.update(b"treven-link-key-v1.");
        hash.update(secret.as_bytes());
        Ok(Self(hash.finalize().into()))
    }

    /// A key of 32 raw bytes (derived from another secret).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// The token of `claims`.
    pub fn sign(&self, claims: &LinkClaims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(claims).unwrap_or_else(|_| unreachable!("claims serialise")),
        );
        let mut mac = self.mac();
        mac.update(SIGNING_PREFIX);
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The claims of `token` when its MAC verifies (in constant time);
    /// `None` for anything else: malformed, too long, forged, tampered.
    /// Expiry is the caller's to check (an expired link is still a link of
    /// the organisation, and its refusal is audited there).
    pub fn verify(&self, token: &str) -> Option<LinkClaims> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (payload, tag) = token.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.mac();
        mac.update(SIGNING_PREFIX);
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag).ok()?;
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn claims() -> LinkClaims {
        LinkClaims {
            link_id: Uuid::now_v7(),
            org: OrgId::new(Uuid::now_v7()),
            report_id: Uuid::now_v7(),
            version: 3,
            grant_id: Uuid::now_v7(),
            partner_id: Uuid::now_v7(),
            permission: LinkPermission::View,
            exp: Utc::now().timestamp() + 60,
        }
    }

    #[test]
    fn a_signed_token_verifies_and_any_change_does_not() {
        let key = LinkKey::from_secret("0123456789abcdef0123456789abcdef").unwrap();
        let claims = claims();
        let token = key.sign(&claims);
        assert_eq!(key.verify(&token), Some(claims.clone()));

        // Another key, a flipped character anywhere, claims re-encoded with
        // another version: all refused.
        let other = LinkKey::from_secret("another-secret-of-enough-length-0000").unwrap();
        assert_eq!(other.verify(&token), None);
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != token {
                assert_eq!(key.verify(&tampered), None, "changed at {i}");
            }
        }
        let (_, tag) = token.split_once('.').unwrap();
        let mut forged = claims.clone();
        forged.version = 2;
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(key.verify(&format!("{payload}.{tag}")), None);
        assert_eq!(key.verify(""), None);
        assert_eq!(key.verify("no-dot"), None);
        assert_eq!(key.verify(&"a.".repeat(2000)), None);
    }

    #[test]
    fn short_secrets_are_refused_and_keys_are_not_printed() {
        assert!(LinkKey::from_secret("short").is_err());
        let key = LinkKey::from_secret("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(format!("{key:?}"), "LinkKey(..)");
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let mut claims = claims();
        assert!(!claims.is_expired(Utc::now()));
        claims.exp = Utc::now().timestamp() - 1;
        assert!(claims.is_expired(Utc::now()));
    }
}
