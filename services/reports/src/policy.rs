//! Who may call each reports RPC: the edge (a signed-in user through the
//! gateway, or an operator) and, for reads, the agents service, with the
//! roles the user must hold. Enforced by [`treven_mesh::policy::Guarded`]
//! before any handler runs; the role-table test walks every RPC of the
//! service against it.

use treven_mesh::Principal::{Agents, Gateway, Operator};
use treven_mesh::Role;
use treven_mesh::policy::{EDGE, Policy, Roles, Rule, rule};

/// The reports table.
pub static POLICY: Policy = Policy {
    service: crate::SERVICE_NAME,
    audience: treven_mesh::Principal::Reports,
    rules: &[
        rule("ListReports", EDGE, Role::MEMBERS),
        rule("CreateReport", EDGE, Role::EDITORS),
        // The social agent reads approved judgements for its user.
        rule("GetReport", &[Gateway, Agents, Operator], Role::MEMBERS),
        rule("UpdateSection", EDGE, Role::EDITORS),
        rule("RegenerateSection", EDGE, Role::EDITORS),
        rule("RejectSection", EDGE, Role::EDITORS),
        rule("ListReportVersions", EDGE, Role::MEMBERS),
        rule("DiffReportVersions", EDGE, Role::MEMBERS),
        rule("SubmitReport", EDGE, Role::EDITORS),
        rule("ApproveReport", EDGE, Role::EDITORS),
        rule("ExportReport", EDGE, Role::EDITORS),
        rule("ShareReport", EDGE, Role::EDITORS),
        rule("CreatePartnerLink", EDGE, Role::EDITORS),
        // A partner link is opened without an account: the gateway passes
        // the token on for an unauthenticated request (a context of no
        // organisation and no role); the handler trusts only the token's
        // signature and acts for the organisation it names.
        Rule {
            method: "OpenPartnerLink",
            callers: &[Gateway],
            roles: Roles::Any,
        },
        rule("ArchiveReport", EDGE, Role::EDITORS),
        rule("UnarchiveReport", EDGE, Role::EDITORS),
        rule("DeleteReport", EDGE, Role::ADMINS),
        rule("ListTrends", EDGE, Role::MEMBERS),
        // The review workflow: editors comment, request changes and assign
        // reviewers; every member reads comments and their own inbox.
        rule("AddReviewComment", EDGE, Role::EDITORS),
        rule("ListReviewComments", EDGE, Role::MEMBERS),
        rule("ResolveReviewComment", EDGE, Role::EDITORS),
        rule("ReopenReviewComment", EDGE, Role::EDITORS),
        rule("RequestChanges", EDGE, Role::EDITORS),
        rule("AssignReviewer", EDGE, Role::EDITORS),
        rule("UnassignReviewer", EDGE, Role::EDITORS),
        rule("ListNotifications", EDGE, Role::MEMBERS),
        rule("MarkNotificationRead", EDGE, Role::MEMBERS),
        rule("MarkAllNotificationsRead", EDGE, Role::MEMBERS),
    ],
};
