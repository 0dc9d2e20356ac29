//! Report values this service sends in its own proto types, both as
//! answers (the gRPC adapter) and as requests to other services (the agents
//! generator): the scope and its enums. Used by `api` and `clients`.

use treven_mesh::wire::timestamp;
use treven_proto::treven::reports::v1 as pb;
use treven_proto::treven::tenants::v1 as tenants;

use crate::model::{ClientType, ExploitationType, Scope};

/// An exploitation type as its proto value.
pub fn exploitation_to_pb(e: ExploitationType) -> pb::ExploitationType {
    match e {
        ExploitationType::Labour => pb::ExploitationType::Labour,
        ExploitationType::Sexual => pb::ExploitationType::Sexual,
        ExploitationType::Online => pb::ExploitationType::Online,
        ExploitationType::Criminal => pb::ExploitationType::Criminal,
        ExploitationType::Mixed => pb::ExploitationType::Mixed,
        ExploitationType::Other => pb::ExploitationType::Other,
    }
}

/// A client type as its proto organisation kind.
pub fn client_to_pb(c: ClientType) -> tenants::OrganisationKind {
    match c {
        ClientType::Fi => tenants::OrganisationKind::Fi,
        ClientType::Ngo => tenants::OrganisationKind::Ngo,
        ClientType::Le => tenants::OrganisationKind::Le,
    }
}

/// Domain scope as proto scope.
pub fn scope_to_pb(s: &Scope) -> pb::ReportScope {
    pb::ReportScope {
        country: s.country.clone(),
        region: s.region.clone(),
        sector: s.sector.clone(),
        exploitation_type: exploitation_to_pb(s.exploitation_type).into(),
        time_range: Some(treven_proto::treven::common::v1::TimeRange {
            start: Some(timestamp(s.time_start)),
            end: Some(timestamp(s.time_end)),
        }),
        client_type: client_to_pb(s.client_type).into(),
    }
}
