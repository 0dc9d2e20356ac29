//! The gRPC adapter: proto requests to domain values, domain results to
//! proto responses. No business rule lives here.

mod convert;

use tonic::{Request, Response, Status};
use treven_mesh::ServiceError;
use treven_mesh::context::context_of;
use treven_mesh::wire::{from_timestamp, struct_to_json};
use treven_proto::treven::tenants::v1 as pb;

use self::convert::{
    access_to_pb, audit_to_pb, kind_from_pb, mask_paths, optional_id, org_to_pb, partner_to_pb,
    permission_from_pb, required_role, role_from_pb, user_to_pb,
};
use crate::app::Tenants;
use crate::model::{
    AuditFilter, CognitoSub, Email, Name, NewAuditEvent, OrganisationChanges, UserChanges,
    organisation_settings, parse_id,
};

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
            );
            if paths.is_empty() {
                return self.tenants.organisation(&context).await;
            }
            let mut changes = OrganisationChanges::default();
            for path in paths {
                match path.as_str() {
                    "name" => changes.name = Some(Name::parse("organisation.name", &org.name)?),
                    _ => {
                        let settings = struct_to_json(&org.settings.clone().unwrap_or_default());
                        changes.settings =
                            Some(organisation_settings("organisation.settings", settings)?);
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

    async fn create_organisation(
        &self,
        request: Request<pb::CreateOrganisationRequest>,
    ) -> Reply<pb::CreateOrganisationResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let name = Name::parse("name", &message.name)?;
            let kind = kind_from_pb("kind", message.kind)?;
            let admin_email = Email::parse("admin_email", &message.admin_email)?;
            let admin_name = Name::parse("admin_name", &message.admin_name)?;
            self.tenants
                .create_organisation(&context, name, kind, admin_email, admin_name)
                .await
        }
        .await;
        reply(result.map(|(org, admin)| pb::CreateOrganisationResponse {
            organisation: Some(org_to_pb(org)),
            admin: Some(user_to_pb(admin)),
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
            );
            if paths.is_empty() {
                return self.tenants.user(&context, id).await;
            }
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

    async fn get_report_access(
        &self,
        request: Request<pb::GetReportAccessRequest>,
    ) -> Reply<pb::GetReportAccessResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.tenants.get_access(&context, id).await
        }
        .await;
        reply(result.map(|access| pb::GetReportAccessResponse {
            access: Some(access_to_pb(access)),
        }))
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
            )?
            .delivered_as(
                &message.event_id,
                message
                    .occurred_at
                    .as_ref()
                    .map(|ts| from_timestamp("occurred_at", ts))
                    .transpose()?,
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
            // A resource id alone filters on the id, whatever the type
            // (ids are UUIDs): requiring the type as well was arbitrary, and
            // the OpenAPI document cannot tie two query parameters together.
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

    type ExportAuditEventsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::ExportAuditEventsResponse, Status>> + Send>,
    >;

    async fn export_audit_events(
        &self,
        request: Request<pb::ExportAuditEventsRequest>,
    ) -> Reply<Self::ExportAuditEventsStream> {
        use tokio_stream::StreamExt as _;
        let context = context_of(&request)?;
        let message = request.into_inner();
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
        // As in ListAuditEvents: an id alone filters on the id.
        let events = self.tenants.export_audit(&context, filter).await?;
        let stream: Self::ExportAuditEventsStream = Box::pin(events.map(|event| {
            event
                .map(|e| pb::ExportAuditEventsResponse {
                    event: Some(audit_to_pb(e)),
                })
                .map_err(Status::from)
        }));
        Ok(Response::new(stream))
    }
}
