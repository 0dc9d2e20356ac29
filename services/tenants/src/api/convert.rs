//! Proto ⇄ domain conversions of the tenants API: enums, ids, update masks
//! and the resources. Pure functions; the handlers in the parent module call
//! them.

use treven_mesh::wire::{json_to_struct, timestamp};
use treven_mesh::{Role, ServiceError};
use treven_proto::treven::tenants::v1 as pb;
use uuid::Uuid;

use crate::model::{
    AuditEvent, IdentityState, OrgKind, Organisation, Partner, Permission, ReportAccess, User,
    parse_id,
};

pub(super) fn optional_id(field: &str, raw: &str) -> Result<Option<Uuid>, ServiceError> {
    if raw.is_empty() {
        Ok(None)
    } else {
        parse_id(field, raw).map(Some)
    }
}

pub(super) fn role_from_pb(field: &str, raw: i32) -> Result<Option<Role>, ServiceError> {
    match pb::Role::try_from(raw) {
        Ok(pb::Role::Unspecified) => Ok(None),
        Ok(pb::Role::Admin) => Ok(Some(Role::Admin)),
        Ok(pb::Role::Analyst) => Ok(Some(Role::Analyst)),
        Ok(pb::Role::Viewer) => Ok(Some(Role::Viewer)),
        Err(_) => Err(ServiceError::invalid_field(field, "unknown role")),
    }
}

pub(super) fn required_role(field: &str, raw: i32) -> Result<Role, ServiceError> {
    role_from_pb(field, raw)?
        .ok_or_else(|| ServiceError::invalid_field(field, "is required (admin, analyst or viewer)"))
}

pub(super) fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role::Admin,
        Role::Analyst => pb::Role::Analyst,
        Role::Viewer => pb::Role::Viewer,
    }
}

pub(super) fn kind_from_pb(field: &str, raw: i32) -> Result<OrgKind, ServiceError> {
    match pb::OrganisationKind::try_from(raw) {
        Ok(pb::OrganisationKind::Fi) => Ok(OrgKind::Fi),
        Ok(pb::OrganisationKind::Ngo) => Ok(OrgKind::Ngo),
        Ok(pb::OrganisationKind::Le) => Ok(OrgKind::Le),
        Ok(pb::OrganisationKind::Owner) => Ok(OrgKind::Owner),
        Ok(pb::OrganisationKind::Unspecified) => {
            Err(ServiceError::invalid_field(field, "is required"))
        }
        Err(_) => Err(ServiceError::invalid_field(
            field,
            "unknown organisation kind",
        )),
    }
}

pub(super) fn kind_to_pb(kind: OrgKind) -> pb::OrganisationKind {
    match kind {
        OrgKind::Fi => pb::OrganisationKind::Fi,
        OrgKind::Ngo => pb::OrganisationKind::Ngo,
        OrgKind::Le => pb::OrganisationKind::Le,
        OrgKind::Owner => pb::OrganisationKind::Owner,
    }
}

pub(super) fn permission_from_pb(raw: i32) -> Result<Permission, ServiceError> {
    match pb::ReportPermission::try_from(raw) {
        Ok(pb::ReportPermission::View) => Ok(Permission::View),
        Ok(pb::ReportPermission::Download) => Ok(Permission::Download),
        _ => Err(ServiceError::invalid_field(
            "permission",
            "must be view or download",
        )),
    }
}

pub(super) fn permission_to_pb(permission: Permission) -> pb::ReportPermission {
    match permission {
        Permission::View => pb::ReportPermission::View,
        Permission::Download => pb::ReportPermission::Download,
    }
}

/// The fields to update: those named by the update mask that are in
/// `allowed`, or, with no mask, the fields the client set (non-empty). The
/// mask's `field_mask.in` rule (checked before the handler) lets it name
/// only the resource's fields; the output-only ones it may also name are
/// ignored here (AIP-203: a REST body carries them when it echoes a
/// resource). The result may be empty: an update that names nothing
/// changes nothing.
pub(super) fn mask_paths(
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
    set: &[(&str, bool)],
) -> Vec<String> {
    let mut paths: Vec<String> = match mask {
        Some(mask) if !mask.paths.is_empty() => mask
            .paths
            .iter()
            .filter(|path| allowed.contains(&path.as_str()))
            .cloned()
            .collect(),
        _ => set
            .iter()
            .filter(|(_, is_set)| *is_set)
            .map(|(name, _)| (*name).to_owned())
            .collect(),
    };
    paths.sort();
    paths.dedup();
    paths
}

pub(super) fn org_to_pb(org: Organisation) -> pb::Organisation {
    pb::Organisation {
        id: org.id.to_string(),
        name: org.name,
        kind: kind_to_pb(org.kind).into(),
        settings: Some(json_to_struct(&org.settings)),
        created_at: Some(timestamp(org.created_at)),
        updated_at: Some(timestamp(org.updated_at)),
    }
}

pub(super) fn user_to_pb(user: User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        org_id: user.org_id.to_string(),
        cognito_sub: user.cognito_sub.unwrap_or_default(),
        email: user.email,
        name: user.name,
        role: role_to_pb(user.role).into(),
        created_at: Some(timestamp(user.created_at)),
        updated_at: Some(timestamp(user.updated_at)),
        identity_state: identity_to_pb(user.identity_state).into(),
    }
}

pub(super) fn identity_to_pb(state: Option<IdentityState>) -> pb::IdentityState {
    match state {
        None => pb::IdentityState::Unspecified,
        Some(IdentityState::Pending) => pb::IdentityState::Pending,
        Some(IdentityState::Synced) => pb::IdentityState::Synced,
        Some(IdentityState::Failed) => pb::IdentityState::Failed,
    }
}

pub(super) fn partner_to_pb(partner: Partner) -> pb::Partner {
    pb::Partner {
        id: partner.id.to_string(),
        org_id: partner.org_id.to_string(),
        name: partner.name,
        kind: kind_to_pb(partner.kind).into(),
        contact_email: partner.contact_email,
        created_at: Some(timestamp(partner.created_at)),
    }
}

pub(super) fn access_to_pb(access: ReportAccess) -> pb::ReportAccess {
    pb::ReportAccess {
        id: access.id.to_string(),
        org_id: access.org_id.to_string(),
        report_id: access.report_id.to_string(),
        partner_id: access.partner_id.to_string(),
        permission: permission_to_pb(access.permission).into(),
        granted_by: access.granted_by,
        granted_at: Some(timestamp(access.granted_at)),
    }
}

pub(super) fn audit_to_pb(event: AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: event.id.to_string(),
        org_id: event.org_id.to_string(),
        actor_id: event.actor_id,
        action: event.action,
        resource_type: event.resource_type,
        resource_id: event.resource_id,
        details: Some(json_to_struct(&event.details)),
        request_id: event.request_id,
        occurred_at: Some(timestamp(event.occurred_at)),
    }
}
