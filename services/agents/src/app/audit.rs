//! What agents records in the organisation's audit log (kept by the
//! tenants service; the client and its delivery are
//! [`treven_mesh::audit`]'s), with tokens minted by the agents key: admins'
//! oversight reads (before anything is shown), PII decisions on chat
//! messages (before the message is stored), the redactions of model output
//! (after, best-effort, logged when lost), and runs' starts and ends.

pub use treven_mesh::audit::{AuditEntry, AuditLog, RECORD_ATTEMPTS, derived_event_id};

/// Attempts of an entry recorded in the background (a run's start and
/// end): about 9 s of retries before it is logged as lost.
pub const BACKGROUND_ATTEMPTS: u32 = 9;
