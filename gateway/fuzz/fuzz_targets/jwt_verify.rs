//! The gateway's Cognito JWT verification (`treven_gateway::auth`), over a
//! fixed in-memory JWKS (`keys/jwks.json`, no network) whose RSA key signs
//! the fuzzed tokens (`keys/fuzz-only-rsa.pem`, a throwaway key).
//!
//! The first input byte picks a mode (its value modulo 3):
//! - `0` raw: the rest is the bearer token as is;
//! - `1` signed JSON: the rest is `header JSON`, a newline, `payload`; both
//!   are base64url-encoded and signed RS256 with the fuzz key, so the claim
//!   checks behind the signature are reached. `$now` in the payload becomes
//!   the current Unix time;
//! - `2` structured: a good ID token perturbed by the bits of the next four
//!   bytes (expired, wrong issuer, foreign key, tampered signature, …), the
//!   rest being its `sub`; the outcome is known exactly and checked.
//!
//! In every mode: no panic; only an empty token is `Missing`; the JWKS is
//! never fetched; an accepted token really has RS256 and the fuzz `kid`, the
//! pool's issuer and client, `token_use` `id`, a UUID `custom:orgId`, a valid
//! `exp`/`nbf` within the leeway, an e-mail only when verified; and it
//! verifies again to the same identity (the cache agrees with the check).

#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use treven_gateway::auth::{AuthError, Identity, JwtVerifier};

const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_fuzz";
const CLIENT: &str = "fuzz-client";
const KID: &str = "fuzz-key-1";
/// The EC key of the JWKS: listed, but not an RSA key.
const EC_KID: &str = "fuzz-ec-key";
const ORG: &str = "0190f1a2-7c4e-7d3a-9b1e-5a8f3c2d1e0f";
const LEEWAY: i64 = 30;

static VERIFIER: LazyLock<JwtVerifier> = LazyLock::new(|| {
    match JwtVerifier::from_jwks(
        ISSUER.into(),
        CLIENT.into(),
        include_bytes!("../keys/jwks.json"),
        64,
    ) {
        Ok(verifier) => verifier,
        Err(error) => panic!("the fuzz JWKS loads: {error}"),
    }
});

static KEY: LazyLock<EncodingKey> = LazyLock::new(|| {
    let body: String = include_str!("../keys/fuzz-only-rsa.pem")
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    match base64::engine::general_purpose::STANDARD.decode(body) {
        Ok(der) => EncodingKey::from_rsa_der(&der),
        Err(error) => panic!("the fuzz key is base64: {error}"),
    }
});

/// base64url with or without padding, as lenient as any decoder might be.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn verify(token: &str) -> Result<Identity, AuthError> {
    futures::executor::block_on(VERIFIER.verify(token))
}

/// `header.payload.signature`, signed RS256 with the fuzz key.
fn signed(header: &[u8], payload: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    match jsonwebtoken::crypto::sign(message.as_bytes(), &KEY, Algorithm::RS256) {
        Ok(signature) => format!("{message}.{signature}"),
        Err(error) => panic!("the fuzz key signs: {error}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => check_any(&String::from_utf8_lossy(rest)),
        1 => {
            let (header, payload) = match rest.iter().position(|b| *b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            let payload = String::from_utf8_lossy(payload).replace("$now", &now().to_string());
            check_any(&signed(header, payload.as_bytes()));
        }
        _ => check_structured(rest),
    }
});

/// The invariants of every token.
fn check_any(token: &str) {
    let result = verify(token);
    match &result {
        Err(AuthError::Missing) => assert!(token.is_empty()),
        Err(AuthError::JwksUnavailable(reason)) => panic!("the fixed JWKS was fetched: {reason}"),
        Err(_) => assert!(!token.is_empty()),
        Ok(identity) => {
            check_accepted(token, identity);
            assert_eq!(
                verify(token).as_ref(),
                Ok(identity),
                "verifies again the same"
            );
        }
    }
}

/// An accepted token says what the identity says, and passes every check.
fn check_accepted(token: &str, identity: &Identity) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let json = |part: &str| -> Value {
        let bytes = LENIENT
            .decode(part)
            .unwrap_or_else(|e| panic!("{part}: {e}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{part}: {e}"))
    };
    let header = json(parts[0]);
    assert_eq!(header["alg"], "RS256", "{header}");
    assert_eq!(header["kid"], KID, "{header}");
    let claims = json(parts[1]);
    assert_eq!(claims["iss"], ISSUER, "{claims}");
    let audience_ok = claims["aud"] == CLIENT
        || claims["aud"]
            .as_array()
            .is_some_and(|list| list.iter().any(|a| a == CLIENT));
    assert!(audience_ok, "{claims}");
    assert_eq!(claims["token_use"], "id", "{claims}");
    assert_eq!(
        claims["sub"].as_str(),
        Some(identity.sub.as_str()),
        "{claims}"
    );
    let org = claims["custom:orgId"]
        .as_str()
        .and_then(|o| uuid::Uuid::parse_str(o).ok());
    assert_eq!(
        org.map(|o| o.to_string()),
        Some(identity.org_id.to_string()),
        "{claims}"
    );
    let now = now();
    assert_eq!(
        claims["exp"].as_i64(),
        Some(identity.expires_at),
        "{claims}"
    );
    assert!(identity.expires_at + LEEWAY >= now - 1, "{claims}: expired");
    if let Some(nbf) = claims.get("nbf").filter(|v| !v.is_null()) {
        assert!(
            nbf.as_i64().is_some_and(|nbf| nbf <= now + LEEWAY + 1),
            "{claims}: nbf"
        );
    }
    let verified = claims["email_verified"] == true || claims["email_verified"] == "true";
    match &identity.email {
        Some(email) => {
            assert!(verified, "{claims}: unverified e-mail kept");
            assert_eq!(claims["email"].as_str(), Some(email.as_str()), "{claims}");
        }
        None => assert!(
            !verified || !claims["email"].is_string(),
            "{claims}: e-mail lost"
        ),
    }
}

/// What to change in a good token, one bit each.
mod bit {
    pub const EXPIRED: u32 = 1 << 0;
    pub const EXPIRED_WITHIN_LEEWAY: u32 = 1 << 1;
    pub const NOT_YET_VALID: u32 = 1 << 2;
    pub const NBF_WITHIN_LEEWAY: u32 = 1 << 3;
    pub const OTHER_ISSUER: u32 = 1 << 4;
    pub const AUDIENCE_LIST: u32 = 1 << 5;
    pub const OTHER_AUDIENCE: u32 = 1 << 6;
    pub const ACCESS_TOKEN: u32 = 1 << 7;
    pub const NO_ORG: u32 = 1 << 8;
    pub const ORG_NOT_UUID: u32 = 1 << 9;
    pub const EMAIL_UNVERIFIED: u32 = 1 << 10;
    pub const EMAIL_VERIFIED_AS_TEXT: u32 = 1 << 11;
    pub const UNKNOWN_KID: u32 = 1 << 12;
    pub const EC_KID: u32 = 1 << 13;
    pub const HS256_HEADER: u32 = 1 << 14;
    pub const TAMPERED_SIGNATURE: u32 = 1 << 15;
    pub const TAMPERED_PAYLOAD: u32 = 1 << 16;
    pub const NO_KID: u32 = 1 << 17;
    pub const NO_SUB: u32 = 1 << 18;
    pub const NO_EXP: u32 = 1 << 19;
    pub const EXTRA_CLAIMS: u32 = 1 << 20;
}

#[derive(Debug, PartialEq)]
enum Expected {
    Malformed,
    UnknownKey,
    Invalid,
    Accepted(Identity),
}

fn check_structured(data: &[u8]) {
    let (flags, sub) = match data.split_first_chunk::<4>() {
        Some((flags, sub)) => (u32::from_le_bytes(*flags), String::from_utf8_lossy(sub)),
        None => return,
    };
    let has = |b: u32| flags & b != 0;
    let now = now();
    let exp = if has(bit::EXPIRED) {
        now - 3600
    } else if has(bit::EXPIRED_WITHIN_LEEWAY) {
        now - LEEWAY / 3
    } else {
        now + 600
    };
    let mut claims = json!({
        "sub": sub,
        "iss": if has(bit::OTHER_ISSUER) { "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_other" } else { ISSUER },
        "aud": if has(bit::OTHER_AUDIENCE) { json!("other-client") } else if has(bit::AUDIENCE_LIST) { json!(["other-client", CLIENT]) } else { json!(CLIENT) },
        "token_use": if has(bit::ACCESS_TOKEN) { "access" } else { "id" },
        "exp": exp,
        "iat": now - 5,
        "custom:orgId": if has(bit::ORG_NOT_UUID) { "org-1" } else { ORG },
        "email": "ann@example.org",
        "email_verified": if has(bit::EMAIL_UNVERIFIED) { json!(false) } else if has(bit::EMAIL_VERIFIED_AS_TEXT) { json!("true") } else { json!(true) },
    });
    if has(bit::NOT_YET_VALID) {
        claims["nbf"] = json!(now + 3600);
    } else if has(bit::NBF_WITHIN_LEEWAY) {
        claims["nbf"] = json!(now + LEEWAY / 3);
    }
    if has(bit::EXTRA_CLAIMS) {
        claims["cognito:groups"] = json!(["analysts"]);
        claims["auth_time"] = json!(now - 5);
    }
    let Some(object) = claims.as_object_mut() else {
        return;
    };
    if has(bit::NO_ORG) {
        object.remove("custom:orgId");
    }
    if has(bit::NO_SUB) {
        object.remove("sub");
    }
    if has(bit::NO_EXP) {
        object.remove("exp");
    }

    let mut header =
        json!({"alg": if has(bit::HS256_HEADER) { "HS256" } else { "RS256" }, "typ": "JWT"});
    if !has(bit::NO_KID) {
        header["kid"] = json!(if has(bit::UNKNOWN_KID) {
            "another-key"
        } else if has(bit::EC_KID) {
            EC_KID
        } else {
            KID
        });
    }
    let mut token = signed(header.to_string().as_bytes(), claims.to_string().as_bytes());
    if has(bit::TAMPERED_PAYLOAD) {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        claims["sub"] = json!(format!("{sub}-mallory"));
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        token = parts.join(".");
    }
    if has(bit::TAMPERED_SIGNATURE) {
        // Flip one character well inside the signature: still base64url,
        // different bytes.
        let at = token.rfind('.').map_or(0, |dot| dot + 10);
        let mut bytes = token.into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        token = String::from_utf8_lossy(&bytes).into_owned();
    }

    let invalid = has(bit::EXPIRED)
        || has(bit::NOT_YET_VALID)
        || has(bit::OTHER_ISSUER)
        || has(bit::OTHER_AUDIENCE)
        || has(bit::ACCESS_TOKEN)
        || has(bit::NO_ORG)
        || has(bit::ORG_NOT_UUID)
        || has(bit::TAMPERED_SIGNATURE)
        || has(bit::TAMPERED_PAYLOAD)
        || has(bit::NO_SUB)
        || has(bit::NO_EXP);
    let expected = if has(bit::HS256_HEADER) || has(bit::NO_KID) {
        Expected::Malformed
    } else if has(bit::UNKNOWN_KID) || has(bit::EC_KID) {
        Expected::UnknownKey
    } else if invalid {
        Expected::Invalid
    } else {
        let org_id = match ORG.parse() {
            Ok(org) => org,
            Err(_) => panic!("the fuzz org id is a UUID"),
        };
        Expected::Accepted(Identity {
            sub: sub.into_owned(),
            org_id,
            email: (!has(bit::EMAIL_UNVERIFIED)).then(|| "ann@example.org".to_owned()),
            expires_at: exp,
        })
    };
    let result = verify(&token);
    let got = match &result {
        Ok(identity) => Expected::Accepted(identity.clone()),
        Err(AuthError::Malformed(_)) => Expected::Malformed,
        Err(AuthError::UnknownKey) => Expected::UnknownKey,
        Err(AuthError::Invalid(_)) => Expected::Invalid,
        Err(other) => panic!("flags {flags:#x}: unexpected {other:?}"),
    };
    assert_eq!(got, expected, "flags {flags:#x}: {result:?} for {token}");
    check_any(&token);
}
