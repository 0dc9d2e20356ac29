//! Page limits and opaque, tamper-evident cursors.
//!
//! A cursor is `base64url(position JSON) "." base64url(MAC)`, where the MAC
//! (HMAC-SHA256, truncated to 128 bits) covers the organisation, the list's
//! scope (its name and filters) and the position. A client can neither forge
//! a position, nor replay a cursor in another organisation, nor on another
//! list or filter: each is refused as VALIDATION_ERROR on `cursor`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use crate::context::{MeshKey, OrgId};
use crate::error::ServiceError;

/// Cursors longer than this are refused before decoding.
const MAX_CURSOR_LEN: usize = 1024;
/// Bytes of the MAC kept in a cursor.
const MAC_LEN: usize = 16;

/// The page size of a list call: `0` means `default`, values above `max` or
/// below zero are refused.
pub fn page_limit(limit: i32, default: u32, max: u32) -> Result<u32, ServiceError> {
    match limit {
        0 => Ok(default),
        1.. if limit as u32 <= max => Ok(limit as u32),
        _ => Err(ServiceError::invalid_field(
            "limit",
            format!("must be between 1 and {max}"),
        )),
    }
}

/// Signs and checks cursors with a key derived from the mesh key.
#[derive(Clone)]
pub struct CursorCodec {
    key: [u8; 32],
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec")
    }
}

impl CursorCodec {
    /// A codec whose key is derived from `mesh_key` for cursors of `service`.
    pub fn new(mesh_key: &MeshKey, service: &str) -> Self {
        Self {
            key: mesh_key.derive(&format!("cursor:{service}")),
        }
    }

    fn mac(&self, org: OrgId, scope: &str, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(org.as_uuid().as_bytes());
        mac.update(&(scope.len() as u64).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(payload.as_bytes());
        mac
    }

    /// A cursor for `position` in list `scope` of `org`.
    pub fn encode<P: Serialize>(&self, org: OrgId, scope: &str, position: &P) -> String {
        let json =
            serde_json::to_vec(position).unwrap_or_else(|_| unreachable!("positions serialise"));
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = self.mac(org, scope, &payload).finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&tag[..MAC_LEN]))
    }

    /// The position in `cursor`, if it was minted by [`Self::encode`] for
    /// the same `org` and `scope`. An empty cursor is the first page (`None`).
    pub fn decode<P: DeserializeOwned>(
        &self,
        org: OrgId,
        scope: &str,
        cursor: &str,
    ) -> Result<Option<P>, ServiceError> {
        if cursor.is_empty() {
            return Ok(None);
        }
        let invalid = || ServiceError::invalid_field("cursor", "not a cursor of this list");
        if cursor.len() > MAX_CURSOR_LEN {
            return Err(invalid());
        }
        let (payload, tag) = cursor.split_once('.').ok_or_else(invalid)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        if tag.len() != MAC_LEN {
            return Err(invalid());
        }
        self.mac(org, scope, payload)
            .verify_truncated_left(&tag)
            .map_err(|_| invalid())?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn codec() -> CursorCodec {
        CursorCodec::new(&MeshKey::generate(), "tenants")
    }

    #[test]
    fn a_cursor_round_trips_only_in_its_org_and_scope() {
        let codec = codec();
        let a = OrgId::new(Uuid::now_v7());
        let b = OrgId::new(Uuid::now_v7());
        let cursor = codec.encode(a, "users", &("Ann", 7));
        assert_eq!(
            codec
                .decode::<(String, i32)>(a, "users", &cursor)
                .expect("ok"),
            Some(("Ann".into(), 7))
        );
        assert!(
            codec.decode::<(String, i32)>(b, "users", &cursor).is_err(),
            "other org"
        );
        assert!(
            codec
                .decode::<(String, i32)>(a, "partners", &cursor)
                .is_err(),
            "other list"
        );
        assert!(
            codec
                .decode::<(String, i32)>(a, "users", "")
                .expect("first page")
                .is_none()
        );
    }

    #[test]
    fn altered_or_garbage_cursors_are_refused_as_validation_errors() {
        let codec = codec();
        let org = OrgId::new(Uuid::now_v7());
        let cursor = codec.encode(org, "users", &("Ann", 7));
        let (_, tag) = cursor.split_once('.').expect("two parts");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(br#"["Zed",1]"#));
        for bad in [
            forged.as_str(),
            "x",
            "a.b",
            "....",
            &"a".repeat(2000),
            &cursor[..cursor.len() - 2],
        ] {
            let err = codec
                .decode::<(String, i32)>(org, "users", bad)
                .expect_err(bad);
            assert_eq!(err.violations()[0].field, "cursor");
        }
    }

    #[test]
    fn limits_are_explicit() {
        assert_eq!(page_limit(0, 50, 100).ok(), Some(50));
        assert_eq!(page_limit(100, 50, 100).ok(), Some(100));
        assert!(page_limit(101, 50, 100).is_err());
        assert!(page_limit(-1, 50, 100).is_err());
    }
}
