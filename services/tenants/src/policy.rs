//! Who may call each tenants RPC: the edge (a signed-in user through the
//! gateway, or an operator) for the public ones, named services for the
//! rest, and the roles the user must hold. Enforced by
//! [`treven_mesh::policy::Guarded`] before any handler runs; the role-table
//! test walks every RPC of the service against it.

use treven_mesh::Principal::{AgentRuntime, Agents, Documents, Gateway, Operator, Reports};
use treven_mesh::Role;
use treven_mesh::policy::{EDGE, Policy, Roles, Rule, rule};

/// The tenants table.
pub static POLICY: Policy = Policy {
    service: crate::SERVICE_NAME,
    audience: treven_mesh::Principal::Tenants,
    rules: &[
        rule("GetMe", EDGE, Role::MEMBERS),
        // The gateway resolves a caller's role before it knows it; the
        // handler lets a caller look up only themselves unless admin.
        Rule {
            method: "LookupUserBySub",
            callers: &[Gateway, Operator],
            roles: Roles::Any,
        },
        // Reports reads the settings (`allow_self_approval`) at approval.
        rule(
            "GetOrganisation",
            &[Gateway, Operator, Reports],
            Role::MEMBERS,
        ),
        rule("UpdateOrganisation", EDGE, Role::ADMINS),
        // Admins of the platform owner only: the handler checks the
        // caller's organisation is the owner (FORBIDDEN otherwise).
        rule("CreateOrganisation", EDGE, Role::ADMINS),
        // Reports checks a reviewer (GetUser) and finds who to notify of a
        // submission nobody is assigned to review (ListUsers), as the user.
        rule("ListUsers", &[Gateway, Operator, Reports], Role::MEMBERS),
        rule("GetUser", &[Gateway, Operator, Reports], Role::MEMBERS),
        rule("CreateUser", EDGE, Role::ADMINS),
        rule("UpdateUser", EDGE, Role::ADMINS),
        rule("DeleteUser", EDGE, Role::ADMINS),
        rule("ListPartners", EDGE, Role::MEMBERS),
        rule("GetPartner", EDGE, Role::MEMBERS),
        rule("CreatePartner", EDGE, Role::ADMINS),
        rule("DeletePartner", EDGE, Role::ADMINS),
        // Sharing goes through reports, which enforces "approved only".
        rule("GrantReportAccess", &[Reports, Operator], Role::EDITORS),
        // Who a report is shared with, and withdrawing a share, need no
        // workflow rule: editors do it at the edge.
        rule("ListReportAccess", EDGE, Role::EDITORS),
        rule("RevokeReportAccess", EDGE, Role::EDITORS),
        // A partner link's grant, checked by reports on every access with
        // the link, acting for the organisation that owns the report (as
        // the partner, with the viewer role), and when a link is minted.
        rule("GetReportAccess", &[Reports], Role::MEMBERS),
        // The audit log is append-only and written by the services that
        // make the changes, for the user who made them (documents: views,
        // downloads, deletes and retention erasures).
        rule(
            "RecordAuditEvent",
            &[Reports, Agents, AgentRuntime, Documents, Operator],
            Role::MEMBERS,
        ),
        rule("ListAuditEvents", EDGE, Role::EDITORS),
        // A compliance export of everything in a range: admins only.
        rule("ExportAuditEvents", EDGE, Role::ADMINS),
    ],
};
