//! Who may call each agents RPC (and the AgentCore runtime's
//! `/invocations`): the edge (a signed-in user through the gateway, or an
//! operator) for the public ones, the reports service for generation, and
//! the roles the user must hold. Enforced by
//! [`treven_mesh::policy::Guarded`] before any handler runs; the role-table
//! test walks every RPC of the service against it.

use treven_mesh::Principal::{Operator, Reports};
use treven_mesh::Role;
use treven_mesh::policy::{EDGE, Policy, rule};

/// The agents table.
pub static POLICY: Policy = Policy {
    service: crate::SERVICE_NAME,
    audience: treven_mesh::Principal::Agents,
    rules: &[
        rule("CreateConversation", EDGE, Role::EDITORS),
        rule("ListConversations", EDGE, Role::MEMBERS),
        rule("ListMessages", EDGE, Role::MEMBERS),
        rule("SendMessage", EDGE, Role::EDITORS),
        rule("GetUsage", EDGE, Role::MEMBERS),
        // Model spend on a report's behalf: only the reports service starts
        // it, for an analyst or admin.
        rule("GenerateReport", &[Reports, Operator], Role::EDITORS),
        rule("DetectPii", &[Reports, Operator], Role::MEMBERS),
        rule("RunAgent", EDGE, Role::EDITORS),
        rule("GetRun", EDGE, Role::MEMBERS),
    ],
};

/// The AgentCore runtime's one operation, `POST /invocations` (a chat
/// message), checked with the same machinery.
pub static RUNTIME_POLICY: Policy = Policy {
    service: "agentcore.runtime",
    audience: treven_mesh::Principal::AgentRuntime,
    rules: &[rule("invocations", EDGE, Role::EDITORS)],
};
