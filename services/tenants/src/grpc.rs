//! The gRPC adapter: proto requests to domain values, domain results to
//! proto responses. No business rule lives here.

use tonic::{Request, Response, Status};
use treven_mesh::context::context_of;
use treven_mesh::wire::{from_timestamp, json_to_struct, struct_to_json, timestamp};
use treven_mesh::{Role, ServiceError};
use treven_proto::treven::tenants::v1 as pb;
use uuid::Uuid;

use crate::model::{
    AuditEvent, AuditFilter, CognitoSub, Email, Name, NewAuditEvent, OrgKind, Organisation,
    OrganisationChanges, Partner, Permission, ReportAccess, User, UserChanges, bounded_json,
    parse_id,
};
use crate::service::Tenants;

/// `treven.tenants.v1.TenantsService` over [`Tenants`].
#[derive(Debug, Clone)]
pub struct TenantsGrpc {
    tenants: Tenants,
}

impl TenantsGrpc {
    /// Serves `tenants`.
    pub fn new(tenants: Tenants) -> Self {
        Self { tenants }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(result: Result<T, ServiceError>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

fn optional_id(field: &str, raw: &str) -> Result<Option<Uuid>, ServiceError> {
    if raw.is_empty() {
        Ok(None)
    } else {
        parse_id(field, raw).map(Some)
    }
}

fn role_from_pb(field: &str, raw: i32) -> Result<Option<Role>, ServiceError> {
    match pb::Role::try_from(raw) {
        Ok(pb::Role::Unspecified) => Ok(None),
        Ok(pb::Role::Admin) => Ok(Some(Role::Admin)),
        Ok(pb::Role::Analyst) => Ok(Some(Role::Analyst)),
        Ok(pb::Role::Viewer) => Ok(Some(Role::Viewer)),
        Err(_) => Err(ServiceError::invalid_field(field, "unknown role")),
    }
}

fn required_role(field: &str, raw: i32) -> Result<Role, ServiceError> {
    role_from_pb(field, raw)?
        .ok_or_else(|| ServiceError::invalid_field(field, "is required (admin, analyst or viewer)"))
}

fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role::Admin,
        Role::Analyst => pb::Role::Analyst,
        Role::Viewer => pb::Role::Viewer,
    }
}

fn kind_from_pb(field: &str, raw: i32) -> Result<OrgKind, ServiceError> {
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

fn kind_to_pb(kind: OrgKind) -> pb::OrganisationKind {
    match kind {
        OrgKind::Fi => pb::OrganisationKind::Fi,
        OrgKind::Ngo => pb::OrganisationKind::Ngo,
        OrgKind::Le => pb::OrganisationKind::Le,
        OrgKind::Owner => pb::OrganisationKind::Owner,
    }
}

fn permission_from_pb(raw: i32) -> Result<Permission, ServiceError> {
    match pb::ReportPermission::try_from(raw) {
        Ok(pb::ReportPermission::View) => Ok(Permission::View),
        Ok(pb::ReportPermission::Download) => Ok(Permission::Download),
        _ => Err(ServiceError::invalid_field(
            "permission",
            "must be view or download",
        )),
    }
}

fn permission_to_pb(permission: Permission) -> pb::ReportPermission {
    match permission {
        Permission::View => pb::ReportPermission::View,
        Permission::Download => pb::ReportPermission::Download,
    }
}

/// The fields named by an update mask; with no mask, the fields the client
/// set (non-empty). Unknown paths are refused.
fn mask_paths(
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
    set: &[(&str, bool)],
) -> Result<Vec<String>, ServiceError> {
    let paths: Vec<String> = match mask {
        Some(mask) if !mask.paths.is_empty() => mask.paths.clone(),
        _ => set
            .iter()
            .filter(|(_, is_set)| *is_set)
            .map(|(name, _)| (*name).to_owned())
            .collect(),
    };
    if let Some(unknown) = paths.iter().find(|p| !allowed.contains(&p.as_str())) {
        return Err(ServiceError::invalid_field(
            "update_mask",
            format!("cannot update {unknown:?}; allowed: {}", allowed.join(", ")),
        ));
    }
    if paths.is_empty() {
        return Err(ServiceError::invalid_field(
            "update_mask",
            "names no field to update",
        ));
    }
    Ok(paths)
}

fn org_to_pb(org: Organisation) -> pb::Organisation {
    pb::Organisation {
        id: org.id.to_string(),
        name: org.name,
        kind: kind_to_pb(org.kind).into(),
        settings: Some(json_to_struct(&org.settings)),
        created_at: Some(timestamp(org.created_at)),
        updated_at: Some(timestamp(org.updated_at)),
    }
}

fn user_to_pb(user: User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        org_id: user.org_id.to_string(),
        cognito_sub: user.cognito_sub.unwrap_or_default(),
        email: user.email,
        name: user.name,
        role: role_to_pb(user.role).into(),
        created_at: Some(timestamp(user.created_at)),
        updated_at: Some(timestamp(user.updated_at)),
    }
}

fn partner_to_pb(partner: Partner) -> pb::Partner {
    pb::Partner {
        id: partner.id.to_string(),
        org_id: partner.org_id.to_string(),
        name: partner.name,
        kind: kind_to_pb(partner.kind).into(),
        contact_email: partner.contact_email,
        created_at: Some(timestamp(partner.created_at)),
    }
}

fn access_to_pb(access: ReportAccess) -> pb::ReportAccess {
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

fn audit_to_pb(event: AuditEvent) -> pb::AuditEvent {
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

#[tonic::async_trait]
impl pb::tenants_service_server::TenantsService for TenantsGrpc {
    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> Reply<pb::GetMeResponse> {
        let context = context_of(&request)?;
        reply(
            self.tenants
                .me(&context)
                .await
                .map(|(user, org)| pb::GetMeResponse {
                    user: Some(user_to_pb(user)),
                    organisation: Some(org_to_pb(org)),
                }),
        )
    }

    async fn lookup_user_by_sub(
        &self,
        request: Request<pb::LookupUserBySubRequest>,
    ) -> Reply<pb::LookupUserBySubResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let sub = CognitoSub::parse("cognito_sub", &message.cognito_sub)?;
            let email = if message.email.is_empty() {
                None
            } else {
                Some(Email::parse("email", &message.email)?)
            };
            self.tenants
                .lookup_by_sub(&context, &sub, email.as_ref())
                .await
        }
        .await;
        reply(result.map(|user| pb::LookupUserBySubResponse {
            user: Some(user_to_pb(user)),
        }))
    }

    async fn get_organisation(
        &self,
        request: Request<pb::GetOrganisationRequest>,
    ) -> Reply<pb::GetOrganisationResponse> {
        let context = context_of(&request)?;
        reply(
            self.tenants
                .organisation(&context)
                .await
                .map(|org| pb::GetOrganisationResponse {
                    organisation: Some(org_to_pb(org)),
                }),
        )
    }

    async fn update_organisation(
        &self,
        request: Request<pb::UpdateOrganisationRequest>,
    ) -> Reply<pb::UpdateOrganisationResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let org = message.organisation.unwrap_or_default();
            let paths = mask_paths(
                message.update_mask.as_ref(),
                &["name", "settings"],
                &[
                    ("name", !org.name.is_empty()),
                    ("settings", org.settings.is_some()),
                ],
            )?;
            let mut changes = OrganisationChanges::default();
            for path in paths {
                match path.as_str() {
                    "name" => changes.name = Some(Name::parse("organisation.name", &org.name)?),
                    _ => {
                        let settings = struct_to_json(&org.settings.clone().unwrap_or_default());
                        changes.settings = Some(bounded_json("organisation.settings", settings)?);
                    }
                }
            }
            self.tenants.update_organisation(&context, changes).await
        }
        .await;
        reply(result.map(|org| pb::UpdateOrganisationResponse {
            organisation: Some(org_to_pb(org)),
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Reply<pb::ListUsersResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let role = role_from_pb("role", message.role)?;
            self.tenants
                .list_users(&context, role, message.limit, &message.cursor)
                .await
        }
        .await;
        reply(result.map(|page| pb::ListUsersResponse {
            items: page.items.into_iter().map(user_to_pb).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Reply<pb::GetUserResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.tenants.user(&context, id).await
        }
        .await;
        reply(result.map(|user| pb::GetUserResponse {
            user: Some(user_to_pb(user)),
        }))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Reply<pb::CreateUserResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let email = Email::parse("email", &message.email)?;
            let name = Name::parse("name", &message.name)?;
            let role = required_role("role", message.role)?;
            let sub = if message.cognito_sub.is_empty() {
                None
            } else {
                Some(CognitoSub::parse("cognito_sub", &message.cognito_sub)?)
            };
            self.tenants
                .create_user(&context, email, name, role, sub)
                .await
        }
        .await;
        reply(result.map(|user| pb::CreateUserResponse {
            user: Some(user_to_pb(user)),
        }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Reply<pb::UpdateUserResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let id = parse_id("id", &message.id)?;
            let user = message.user.unwrap_or_default();
            let paths = mask_paths(
                message.update_mask.as_ref(),
                &["name", "email", "role"],
                &[
                    ("name", !user.name.is_empty()),
                    ("email", !user.email.is_empty()),
                    ("role", user.role != 0),
                ],
            )?;
            let mut changes = UserChanges::default();
            for path in paths {
                match path.as_str() {
                    "name" => changes.name = Some(Name::parse("user.name", &user.name)?),
                    "email" => changes.email = Some(Email::parse("user.email", &user.email)?),
                    _ => changes.role = Some(required_role("user.role", user.role)?),
                }
            }
            self.tenants.update_user(&context, id, changes).await
        }
        .await;
        reply(result.map(|user| pb::UpdateUserResponse {
            user: Some(user_to_pb(user)),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Reply<pb::DeleteUserResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.tenants.delete_user(&context, id).await
        }
        .await;
        reply(result.map(|()| pb::DeleteUserResponse {}))
    }

    async fn list_partners(
        &self,
        request: Request<pb::ListPartnersRequest>,
    ) -> Reply<pb::ListPartnersResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        reply(
            self.tenants
                .list_partners(&context, message.limit, &message.cursor)
                .await
                .map(|page| pb::ListPartnersResponse {
                    items: page.items.into_iter().map(partner_to_pb).collect(),
                    next_cursor: page.next_cursor,
                }),
        )
    }

    async fn get_partner(
        &self,
        request: Request<pb::GetPartnerRequest>,
    ) -> Reply<pb::GetPartnerResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.tenants.partner(&context, id).await
        }
        .await;
        reply(result.map(|partner| pb::GetPartnerResponse {
            partner: Some(partner_to_pb(partner)),
        }))
    }

    async fn create_partner(
        &self,
        request: Request<pb::CreatePartnerRequest>,
    ) -> Reply<pb::CreatePartnerResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let name = Name::parse("name", &message.name)?;
            let kind = kind_from_pb("kind", message.kind)?;
            let contact = Email::parse("contact_email", &message.contact_email)?;
            self.tenants
                .create_partner(&context, name, kind, contact)
                .await
        }
        .await;
        reply(result.map(|partner| pb::CreatePartnerResponse {
            partner: Some(partner_to_pb(partner)),
        }))
    }

    async fn delete_partner(
        &self,
        request: Request<pb::DeletePartnerRequest>,
    ) -> Reply<pb::DeletePartnerResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.tenants.delete_partner(&context, id).await
        }
        .await;
        reply(result.map(|()| pb::DeletePartnerResponse {}))
    }

    async fn grant_report_access(
        &self,
        request: Request<pb::GrantReportAccessRequest>,
    ) -> Reply<pb::GrantReportAccessResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let report_id = parse_id("report_id", &message.report_id)?;
            let partner_id = parse_id("partner_id", &message.partner_id)?;
            let permission = permission_from_pb(message.permission)?;
            self.tenants
                .grant_access(&context, report_id, partner_id, permission)
                .await
        }
        .await;
        reply(result.map(|access| pb::GrantReportAccessResponse {
            access: Some(access_to_pb(access)),
        }))
    }

    async fn list_report_access(
        &self,
        request: Request<pb::ListReportAccessRequest>,
    ) -> Reply<pb::ListReportAccessResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let report_id = optional_id("report_id", &message.report_id)?;
            let partner_id = optional_id("partner_id", &message.partner_id)?;
            self.tenants
                .list_access(
                    &context,
                    report_id,
                    partner_id,
                    message.limit,
                    &message.cursor,
                )
                .await
        }
        .await;
        reply(result.map(|page| pb::ListReportAccessResponse {
            items: page.items.into_iter().map(access_to_pb).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    async fn revoke_report_access(
        &self,
        request: Request<pb::RevokeReportAccessRequest>,
    ) -> Reply<pb::RevokeReportAccessResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.tenants.revoke_access(&context, id).await
        }
        .await;
        reply(result.map(|()| pb::RevokeReportAccessResponse {}))
    }

    async fn record_audit_event(
        &self,
        request: Request<pb::RecordAuditEventRequest>,
    ) -> Reply<pb::RecordAuditEventResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let details = struct_to_json(&message.details.unwrap_or_default());
            let event = NewAuditEvent::parse(
                &message.action,
                &message.resource_type,
                &message.resource_id,
                details,
            )?;
            self.tenants.record_audit(&context, event).await
        }
        .await;
        reply(result.map(|event| pb::RecordAuditEventResponse {
            event: Some(audit_to_pb(event)),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Reply<pb::ListAuditEventsResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let filter = AuditFilter {
                resource_type: Some(message.resource_type).filter(|s| !s.is_empty()),
                resource_id: Some(message.resource_id).filter(|s| !s.is_empty()),
                since: message
                    .since
                    .as_ref()
                    .map(|ts| from_timestamp("since", ts))
                    .transpose()?,
                until: message
                    .until
                    .as_ref()
                    .map(|ts| from_timestamp("until", ts))
                    .transpose()?,
            };
            if filter.resource_id.is_some() && filter.resource_type.is_none() {
                return Err(ServiceError::invalid_field(
                    "resource_type",
                    "is required with resource_id",
                ));
            }
            self.tenants
                .list_audit(&context, filter, message.limit, &message.cursor)
                .await
        }
        .await;
        reply(result.map(|page| pb::ListAuditEventsResponse {
            items: page.items.into_iter().map(audit_to_pb).collect(),
            next_cursor: page.next_cursor,
        }))
    }
}
