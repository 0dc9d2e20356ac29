//! Partner links between proto and domain.

use treven_mesh::ServiceError;
use treven_mesh::wire::timestamp;
use treven_proto::treven::reports::v1 as pb;
use treven_proto::treven::tenants::v1 as tenants;

use crate::app::{LinkAccess, Opened, PartnerLink, SharedFile};
use crate::links::LinkPermission;

pub(super) fn partner_link_to_pb(link: PartnerLink) -> pb::PartnerLink {
    let claims = link.claims;
    pb::PartnerLink {
        id: claims.link_id.to_string(),
        report_id: claims.report_id.to_string(),
        version: claims.version,
        grant_id: claims.grant_id.to_string(),
        partner_id: claims.partner_id.to_string(),
        permission: match claims.permission {
            LinkPermission::View => tenants::ReportPermission::View,
            LinkPermission::Download => tenants::ReportPermission::Download,
        }
        .into(),
        url: link.url,
        expires_at: Some(timestamp(claims.expires_at())),
    }
}

pub(super) fn shared_file_from_pb(raw: i32) -> Result<SharedFile, ServiceError> {
    match pb::SharedFile::try_from(raw) {
        Ok(pb::SharedFile::Unspecified) => Ok(SharedFile::Default),
        Ok(pb::SharedFile::View) => Ok(SharedFile::View),
        Ok(pb::SharedFile::Report) => Ok(SharedFile::Report),
        Ok(pb::SharedFile::Evidence) => Ok(SharedFile::Evidence),
        Err(_) => Err(ServiceError::invalid_field(
            "file",
            "must be view, report or evidence",
        )),
    }
}

pub(super) fn link_access_to_pb(access: LinkAccess) -> pb::OpenPartnerLinkResponse {
    let (opened, expires_at) = match access.opened {
        Opened::Markdown(markdown) => (
            pb::open_partner_link_response::Opened::Markdown(markdown),
            None,
        ),
        Opened::Download { url, expires_at } => (
            pb::open_partner_link_response::Opened::DownloadUrl(url),
            Some(timestamp(expires_at)),
        ),
    };
    pb::OpenPartnerLinkResponse {
        report_id: access.report_id.to_string(),
        version: access.version,
        title: access.title,
        opened: Some(opened),
        expires_at,
    }
}
