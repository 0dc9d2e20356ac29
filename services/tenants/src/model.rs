//! Domain types of the tenants service. Values are validated when built
//! (`parse`), so a `Name` or `Email` that exists is a valid one.

use chrono::{DateTime, Utc};
use serde::Serialize;
use treven_mesh::{OrgId, Role, ServiceError};
use uuid::Uuid;

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest e-mail address (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Largest settings or audit details document, as JSON bytes.
pub const MAX_JSON_BYTES: usize = 16 * 1024;

pub use treven_mesh::wire::parse_id;

/// A display name: trimmed, 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// Validates `raw` as the value of `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ServiceError> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err(ServiceError::invalid_field(field, "must not be empty"));
        }
        if chars > MAX_NAME_CHARS {
            return Err(ServiceError::invalid_field(
                field,
                format!("must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ServiceError::invalid_field(
                field,
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An e-mail address (syntax checked by the `email_address` crate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Validates `raw` as the value of `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ServiceError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ServiceError::invalid_field(field, "must not be empty"));
        }
        if trimmed.len() > MAX_EMAIL_LEN || !email_address::EmailAddress::is_valid(trimmed) {
            return Err(ServiceError::invalid_field(
                field,
                "must be an e-mail address",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Cognito subject: 1–128 characters of `[A-Za-z0-9._:@-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoSub(String);

impl CognitoSub {
    /// Validates `raw` as the value of `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ServiceError> {
        let ok = (1..=128).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ServiceError::invalid_field(
                field,
                "must be a Cognito subject",
            ))
        }
    }

    /// The subject.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A JSON object of at most [`MAX_JSON_BYTES`].
pub fn bounded_json(
    field: &str,
    json: serde_json::Value,
) -> Result<serde_json::Value, ServiceError> {
    let size = serde_json::to_vec(&json)
        .map_err(ServiceError::internal)?
        .len();
    if size > MAX_JSON_BYTES {
        return Err(ServiceError::invalid_field(
            field,
            format!("must be at most {MAX_JSON_BYTES} bytes of JSON"),
        ));
    }
    Ok(json)
}

/// The settings key that lets the analyst who submitted or wrote a report
/// version approve it (reports reads it; a boolean, false when absent).
pub const ALLOW_SELF_APPROVAL: &str = "allow_self_approval";

/// The settings key of the retention periods ([`RetentionSettings`]).
pub const RETENTION: &str = "retention";

/// Shortest retention period, in days.
pub const MIN_RETENTION_DAYS: u32 = 30;
/// Longest retention period, in days (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// How long an organisation keeps what its users bring in, from its
/// settings' `retention` object: `uploads_days` (uploaded documents' bytes)
/// and `message_bodies_days` (chat message bodies), each a whole number of
/// days in [`MIN_RETENTION_DAYS`]..=[`MAX_RETENTION_DAYS`]; absent means
/// kept for ever. The retention job (`treven admin retention`) erases what
/// is older.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionSettings {
    /// Days an upload's bytes are kept after it was registered.
    pub uploads_days: Option<u32>,
    /// Days a message's body is kept after it was written.
    pub message_bodies_days: Option<u32>,
}

impl RetentionSettings {
    /// The keys a `retention` object may hold.
    pub const KEYS: [&'static str; 2] = ["uploads_days", "message_bodies_days"];

    /// Reads and validates the `retention` object of `settings` (absent:
    /// keep everything); `field` names the settings in errors.
    pub fn parse(field: &str, settings: &serde_json::Value) -> Result<Self, ServiceError> {
        let Some(retention) = settings.get(RETENTION) else {
            return Ok(Self::default());
        };
        let field = format!("{field}.{RETENTION}");
        let object = match retention {
            serde_json::Value::Null => return Ok(Self::default()),
            serde_json::Value::Object(object) => object,
            _ => {
                return Err(ServiceError::invalid_field(
                    field,
                    "must be an object with uploads_days and/or message_bodies_days",
                ));
            }
        };
        if let Some(unknown) = object.keys().find(|k| !Self::KEYS.contains(&k.as_str())) {
            return Err(ServiceError::invalid_field(
                format!("{field}.{unknown}"),
                "is not a retention setting (uploads_days, message_bodies_days)",
            ));
        }
        let days = |key: &str| -> Result<Option<u32>, ServiceError> {
            let value = match object.get(key) {
                None | Some(serde_json::Value::Null) => return Ok(None),
                Some(value) => value,
            };
            // Protobuf Struct numbers arrive as doubles: 90 is 90.0.
            let whole = value
                .as_u64()
                .or_else(|| {
                    value
                        .as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
                        .map(|f| f as u64)
                })
                .and_then(|d| u32::try_from(d).ok())
                .filter(|d| (MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(d));
            whole.map(Some).ok_or_else(|| {
                ServiceError::invalid_field(
                    format!("{field}.{key}"),
                    format!(
                        "must be a whole number of days from {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}, or absent to keep for ever"
                    ),
                )
            })
        };
        Ok(Self {
            uploads_days: days("uploads_days")?,
            message_bodies_days: days("message_bodies_days")?,
        })
    }

    /// Whether nothing is ever erased.
    pub fn keeps_everything(&self) -> bool {
        self.uploads_days.is_none() && self.message_bodies_days.is_none()
    }

    /// The settings' `retention` object in its canonical form (whole
    /// numbers, unset keys left out).
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        if let Some(days) = self.uploads_days {
            object.insert("uploads_days".into(), days.into());
        }
        if let Some(days) = self.message_bodies_days {
            object.insert("message_bodies_days".into(), days.into());
        }
        serde_json::Value::Object(object)
    }
}

/// Organisation settings as sent: a bounded JSON object whose known keys
/// have their types (`allow_self_approval` is a boolean; `retention` is
/// [`RetentionSettings`], stored in its canonical form).
pub fn organisation_settings(
    field: &str,
    json: serde_json::Value,
) -> Result<serde_json::Value, ServiceError> {
    let mut json = bounded_json(field, json)?;
    match json.get(ALLOW_SELF_APPROVAL) {
        None | Some(serde_json::Value::Bool(_)) => {}
        Some(_) => {
            return Err(ServiceError::invalid_field(
                format!("{field}.{ALLOW_SELF_APPROVAL}"),
                "must be true or false",
            ));
        }
    }
    let retention = RetentionSettings::parse(field, &json)?;
    if let Some(object) = json.as_object_mut() {
        if retention.keeps_everything() {
            object.remove(RETENTION);
        } else {
            object.insert(RETENTION.into(), retention.to_json());
        }
    }
    Ok(json)
}

treven_mesh::text_enum! {
    /// What kind of body an organisation or partner is.
    OrgKind { /** Financial institution. */ Fi = "fi", /** NGO. */ Ngo = "ngo", /** Law enforcement. */ Le = "le", /** Platform owner. */ Owner = "owner" }
}

treven_mesh::text_enum! {
    /// What a partner may do with a shared report.
    Permission { /** Read in the product. */ View = "view", /** Read and download exports. */ Download = "download" }
}

treven_mesh::text_enum! {
    /// Where a user's Cognito account stands against their tenants record
    /// (absent: tenants does not manage it).
    IdentityState { /** A change waits to be applied to Cognito. */ Pending = "pending", /** The Cognito user matches the record. */ Synced = "synced", /** Cognito refused the change for good. */ Failed = "failed" }
}

/// An organisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Organisation {
    /// Its id.
    pub id: OrgId,
    /// Display name.
    pub name: String,
    /// Kind.
    pub kind: OrgKind,
    /// Settings object.
    pub settings: serde_json::Value,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Its id.
    pub id: Uuid,
    /// Its organisation.
    pub org_id: OrgId,
    /// Cognito subject once linked.
    pub cognito_sub: Option<String>,
    /// E-mail.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Where their Cognito account stands; `None` when tenants does not
    /// manage it.
    pub identity_state: Option<IdentityState>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A partner organisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Partner {
    /// Its id.
    pub id: Uuid,
    /// The organisation holding it.
    pub org_id: OrgId,
    /// Display name.
    pub name: String,
    /// fi, ngo or le.
    pub kind: OrgKind,
    /// Contact e-mail.
    pub contact_email: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A report-access grant.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportAccess {
    /// Its id.
    pub id: Uuid,
    /// The organisation owning the report.
    pub org_id: OrgId,
    /// The report.
    pub report_id: Uuid,
    /// The partner.
    pub partner_id: Uuid,
    /// What the partner may do.
    pub permission: Permission,
    /// Who granted it.
    pub granted_by: String,
    /// When.
    pub granted_at: DateTime<Utc>,
}

/// An audit log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Its id (UUIDv7).
    pub id: Uuid,
    /// The organisation.
    pub org_id: OrgId,
    /// Who did it.
    pub actor_id: String,
    /// What was done.
    pub action: String,
    /// Kind of resource.
    pub resource_type: String,
    /// The resource.
    pub resource_id: String,
    /// Details object.
    pub details: serde_json::Value,
    /// The request.
    pub request_id: String,
    /// When.
    pub occurred_at: DateTime<Utc>,
}

/// A new audit entry, before it is stored.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    /// What was done: dotted lowercase words (`user.create`).
    pub action: String,
    /// Kind of resource (`user`).
    pub resource_type: String,
    /// The resource's id.
    pub resource_id: String,
    /// Details object.
    pub details: serde_json::Value,
    /// The caller's event id, which becomes the entry's id: recording the
    /// same event again stores nothing new. `None`: a fresh id.
    pub event_id: Option<Uuid>,
    /// When the change happened, when the entry arrives later (an outbox);
    /// `None`: now.
    pub occurred_at: Option<DateTime<Utc>>,
}

impl NewAuditEvent {
    /// An entry for an action of the service itself (trusted names).
    pub fn of(
        action: &str,
        resource_type: &str,
        resource_id: impl ToString,
        details: serde_json::Value,
    ) -> Self {
        Self {
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.to_string(),
            details,
            event_id: None,
            occurred_at: None,
        }
    }

    /// The entry as an event another service may deliver more than once:
    /// `event_id` (a UUID; empty lets the server choose one, without
    /// de-duplication) and when it happened (a time in the future is taken
    /// as now).
    pub fn delivered_as(
        mut self,
        event_id: &str,
        occurred_at: Option<DateTime<Utc>>,
    ) -> Result<Self, ServiceError> {
        self.event_id = if event_id.is_empty() {
            None
        } else {
            let id = Uuid::parse_str(event_id)
                .ok()
                .filter(|id| !id.is_nil())
                .ok_or_else(|| ServiceError::invalid_field("event_id", "must be a UUID"))?;
            Some(id)
        };
        self.occurred_at = occurred_at.map(|at| at.min(Utc::now()));
        Ok(self)
    }

    /// Validates an entry sent by another service.
    pub fn parse(
        action: &str,
        resource_type: &str,
        resource_id: &str,
        details: serde_json::Value,
    ) -> Result<Self, ServiceError> {
        let dotted = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|word| {
                    !word.is_empty()
                        && word
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                })
        };
        if action.len() > 100 || !dotted(action) {
            return Err(ServiceError::invalid_field(
                "action",
                "must be dotted lowercase words, at most 100 characters",
            ));
        }
        if resource_type.len() > 50 || resource_type.contains('.') || !dotted(resource_type) {
            return Err(ServiceError::invalid_field(
                "resource_type",
                "must be a lowercase word, at most 50 characters",
            ));
        }
        if resource_id.is_empty()
            || resource_id.len() > 200
            || resource_id.chars().any(char::is_control)
        {
            return Err(ServiceError::invalid_field(
                "resource_id",
                "must be 1–200 printable characters",
            ));
        }
        Ok(Self {
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.to_owned(),
            details: bounded_json("details", details)?,
            event_id: None,
            occurred_at: None,
        })
    }
}

/// Filters of an audit query.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditFilter {
    /// Only this kind of resource.
    pub resource_type: Option<String>,
    /// Only this resource.
    pub resource_id: Option<String>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    /// New name.
    pub name: Option<Name>,
    /// New e-mail.
    pub email: Option<Email>,
    /// New role.
    pub role: Option<Role>,
}

/// Changes to an organisation; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct OrganisationChanges {
    /// New name.
    pub name: Option<Name>,
    /// New settings object.
    pub settings: Option<serde_json::Value>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor of the next page, empty on the last.
    pub next_cursor: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn retention_settings_are_bounded_whole_days() {
        let ok = organisation_settings(
            "s",
            serde_json::json!({"retention": {"uploads_days": 90.0, "message_bodies_days": 3650}}),
        )
        .unwrap();
        assert_eq!(
            ok["retention"],
            serde_json::json!({"uploads_days": 90, "message_bodies_days": 3650})
        );
        assert_eq!(
            RetentionSettings::parse("s", &ok).unwrap(),
            RetentionSettings {
                uploads_days: Some(90),
                message_bodies_days: Some(3650)
            }
        );
        for (bad, field) in [
            (
                serde_json::json!({"uploads_days": 29}),
                "s.retention.uploads_days",
            ),
            (
                serde_json::json!({"uploads_days": 3651}),
                "s.retention.uploads_days",
            ),
            (
                serde_json::json!({"uploads_days": 30.5}),
                "s.retention.uploads_days",
            ),
            (
                serde_json::json!({"message_bodies_days": "90"}),
                "s.retention.message_bodies_days",
            ),
            (
                serde_json::json!({"message_bodies_days": -40}),
                "s.retention.message_bodies_days",
            ),
            (serde_json::json!({"bodies": 90}), "s.retention.bodies"),
            (serde_json::json!(90), "s.retention"),
        ] {
            let error = organisation_settings("s", serde_json::json!({ "retention": bad }))
                .expect_err("refused");
            assert!(error.message().contains(field), "{error:?}");
        }
        // Absent or empty: kept for ever, and the key is dropped.
        let empty = organisation_settings("s", serde_json::json!({"retention": {}})).unwrap();
        assert!(empty.get("retention").is_none());
        assert!(
            RetentionSettings::parse("s", &empty)
                .unwrap()
                .keeps_everything()
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            Name::parse("name", "  Ann  ").map(|n| n.0).ok(),
            Some("Ann".into())
        );
        for bad in ["", "   ", "a\u{0}b", &"x".repeat(201)] {
            let err = Name::parse("name", bad).expect_err(bad);
            assert_eq!(err.violations()[0].field, "name");
        }
        assert!(
            Name::parse("name", &"é".repeat(200)).is_ok(),
            "counted in characters"
        );
    }

    #[test]
    fn emails_are_checked() {
        assert!(Email::parse("email", "ann@example.org").is_ok());
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.org",
            &format!("{}@example.org", "a".repeat(250)),
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn audit_entries_from_other_services_are_validated() {
        assert!(
            NewAuditEvent::parse("report.pii_kept", "report", "r1", serde_json::json!({})).is_ok()
        );
        for (action, kind, id) in [
            ("Report.Approve", "report", "r"),
            ("report.", "report", "r"),
            ("a", "re.port", "r"),
            ("a", "report", ""),
        ] {
            assert!(
                NewAuditEvent::parse(action, kind, id, serde_json::json!({})).is_err(),
                "{action} {kind} {id}"
            );
        }
        let big = serde_json::json!({"x": "y".repeat(MAX_JSON_BYTES)});
        assert!(NewAuditEvent::parse("a.b", "report", "r", big).is_err());

        // Event ids: a UUID, or empty for a server-chosen id.
        let entry = || NewAuditEvent::of("a.b", "report", "r", serde_json::json!({}));
        let id = Uuid::now_v7();
        let later = Utc::now() + chrono::Duration::hours(1);
        let keyed = entry().delivered_as(&id.to_string(), Some(later));
        assert!(
            matches!(&keyed, Ok(e) if e.event_id == Some(id)
                && e.occurred_at.is_some_and(|at| at <= Utc::now())),
            "the id kept, the future taken as now: {keyed:?}"
        );
        assert!(matches!(entry().delivered_as("", None), Ok(e) if e.event_id.is_none()));
        for bad in [
            "nope",
            "00000000-0000-0000-0000-000000000000",
            " 1",
            "0191a3c4-0000-7000-8000",
        ] {
            let refused = entry().delivered_as(bad, None);
            assert!(
                matches!(&refused, Err(e) if e.code() == treven_mesh::ErrorCode::ValidationError
                    && e.message().contains("event_id")),
                "{bad}: {refused:?}"
            );
        }
    }
}
