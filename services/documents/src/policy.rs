//! Who may call each documents RPC: the edge (a signed-in user through the
//! gateway, or an operator) for the public ones, named services for the
//! rest, and the roles the user must hold. Enforced by
//! [`treven_mesh::policy::Guarded`] before any handler runs; the role-table
//! test walks every RPC of the service against it.

use treven_mesh::Principal::{AgentRuntime, Agents, Gateway, Operator, Reports};
use treven_mesh::Role;
use treven_mesh::policy::{EDGE, Policy, rule};

/// The documents table.
pub static POLICY: Policy = Policy {
    service: crate::SERVICE_NAME,
    audience: treven_mesh::Principal::Documents,
    rules: &[
        rule("CreateUpload", EDGE, Role::EDITORS),
        rule("CompleteUpload", EDGE, Role::EDITORS),
        rule("ListDocuments", EDGE, Role::MEMBERS),
        rule("GetDocument", EDGE, Role::MEMBERS),
        rule("DeleteDocument", EDGE, Role::EDITORS),
        rule("GetDocumentDownload", EDGE, Role::MEMBERS),
        rule("ListDocumentVersions", EDGE, Role::MEMBERS),
        rule("UpsertSource", EDGE, Role::EDITORS),
        // The agents' tools (in the service or the AgentCore runtime) search
        // the library for the user they serve.
        rule(
            "SearchSources",
            &[Gateway, Agents, AgentRuntime, Operator],
            Role::MEMBERS,
        ),
        // Evidence and artifacts follow a report's workflow, which only the
        // services that run it may record.
        rule("StoreEvidence", &[Reports, Agents, Operator], Role::EDITORS),
        // Reports hands a partner link's evidence pack out, acting for the
        // organisation that shared it.
        rule(
            "GetEvidencePack",
            &[Gateway, Operator, Reports],
            Role::MEMBERS,
        ),
        rule("PutArtifact", &[Reports, Operator], Role::EDITORS),
        rule("PresignArtifact", &[Reports, Operator], Role::MEMBERS),
    ],
};
