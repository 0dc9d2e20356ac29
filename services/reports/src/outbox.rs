//! The outbox relay: delivers the events each change stored in its own
//! transaction (the `outbox` table, [`crate::store::OutboxEvent`]) after
//! that transaction committed — today the audit entries tenants keeps.
//!
//! Guarantee: at least once. An event stays in the outbox until its
//! receiver accepted it; its id is the receiver's de-duplication key (the
//! audit entry's id in tenants), so an event delivered twice — a relay that
//! crashed after delivering and before deleting the row, two relays racing
//! after a lease lapsed — is recorded once. A failed delivery is retried
//! after a backoff that doubles per failure ([`OutboxOptions::backoff`]);
//! when the receiver is unreachable the rest of the batch waits as well.
//!
//! Promptness: every commit that stored events wakes the relay (the
//! `Notify` given to [`Relay::new`]); a periodic sweep ([`OutboxOptions::sweep_interval`])
//! delivers whatever is due besides, so a relay that was down, or a service
//! that restarted, catches up on its own.

use std::sync::Arc;

use tokio::sync::Notify;
use treven_mesh::{CancellationToken, ErrorCode, MeshContext, ServiceError, Signer};
use uuid::Uuid;

use crate::clients::{AuditEntry, Clients};
use crate::config::OutboxOptions;
use crate::store::{NewOutboxEvent, OrgTx, OutboxEvent, OutboxKind, PgStore, StoreError};

/// What one pass over the due events did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Events claimed.
    pub claimed: usize,
    /// Events delivered.
    pub delivered: usize,
    /// Events whose delivery failed (retried after a backoff).
    pub failed: usize,
    /// Events given back untried because their receiver was unreachable.
    pub deferred: usize,
}

/// The relay of one process (run it with [`Relay::run`]).
#[derive(Debug, Clone)]
pub struct Relay {
    store: PgStore,
    clients: Clients,
    signer: Signer,
    options: OutboxOptions,
    wake: Arc<Notify>,
}

impl Relay {
    /// A relay over `store`, delivering with `clients` and tokens minted by
    /// `signer` acting for each change's actor; `wake` is notified after
    /// every commit that stored events.
    pub fn new(
        store: PgStore,
        clients: Clients,
        signer: Signer,
        options: OutboxOptions,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            clients,
            signer,
            options,
            wake,
        }
    }

    /// Delivers due events until `shutdown`: at once when woken, else
    /// every sweep interval. Events claimed when shutdown comes are
    /// delivered or come due again after the claim's lease.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            sweep_ms = self.options.sweep_interval.as_millis() as u64,
            "outbox relay started"
        );
        while !shutdown.is_cancelled() {
            let more = match self.deliver_due().await {
                Ok(pass) => pass.claimed == self.options.batch as usize && pass.deferred == 0,
                Err(error) => {
                    tracing::warn!(%error, "outbox relay cannot read the outbox; retrying at the next sweep");
                    false
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.options.sweep_interval) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// One pass: claims a batch of due events and delivers them in order,
    /// one at a time, stopping at the first receiver that is unreachable.
    pub async fn deliver_due(&self) -> Result<Pass, StoreError> {
        let events = self
            .store
            .claim_outbox(self.options.batch, self.options.lease)
            .await?;
        let mut pass = Pass {
            claimed: events.len(),
            ..Pass::default()
        };
        for (index, event) in events.iter().enumerate() {
            match self.deliver(event).await {
                Ok(()) => {
                    pass.delivered += 1;
                    tracing::debug!(event_id = %event.id, org_id = %event.org_id, kind = event.kind.as_str(), attempts = event.attempts, "outbox event delivered");
                    if let Err(error) = self.store.outbox_delivered(event.id).await {
                        // Delivered but still pending: it is delivered again
                        // after the lease, and the receiver ignores it then.
                        tracing::warn!(event_id = %event.id, %error, "outbox event delivered but not removed; it will be redelivered");
                    }
                }
                Err(error) => {
                    pass.failed += 1;
                    let failures = event.attempts.saturating_add(1);
                    let delay = self.options.backoff(failures);
                    let unreachable = error.code() == ErrorCode::Unavailable;
                    if unreachable {
                        tracing::warn!(event_id = %event.id, org_id = %event.org_id, kind = event.kind.as_str(), failures, retry_in_ms = delay.as_millis() as u64, %error, "outbox event not delivered: receiver unavailable");
                    } else {
                        tracing::error!(event_id = %event.id, org_id = %event.org_id, kind = event.kind.as_str(), failures, retry_in_ms = delay.as_millis() as u64, %error, "outbox event refused by its receiver; retrying");
                    }
                    self.store
                        .outbox_failed(event.id, &error.to_string(), delay)
                        .await?;
                    if unreachable {
                        let rest: Vec<_> = events[index + 1..].iter().map(|e| e.id).collect();
                        pass.deferred = rest.len();
                        self.store.outbox_release(&rest, delay).await?;
                        break;
                    }
                }
            }
        }
        if pass.claimed > 0 {
            tracing::info!(
                claimed = pass.claimed,
                delivered = pass.delivered,
                failed = pass.failed,
                deferred = pass.deferred,
                "outbox pass"
            );
        }
        Ok(pass)
    }

    async fn deliver(&self, event: &OutboxEvent) -> Result<(), ServiceError> {
        let context = self.signer.acting_for(
            event.org_id,
            &event.actor_id,
            &event.actor_roles,
            &event.request_id,
        );
        match event.kind {
            OutboxKind::Audit => {
                let entry: AuditEntry =
                    serde_json::from_value(event.payload.clone()).map_err(|e| {
                        ServiceError::internal(anyhow::anyhow!("outbox audit payload: {e}"))
                    })?;
                self.clients
                    .record_audit(&context, &entry, event.id, event.created_at)
                    .await
            }
        }
    }
}

/// Stores `entry` in `tx`'s outbox, acting for the user `context` acts for
/// (with their roles and request id): it reaches tenants after, and only
/// if, the transaction commits. Wake the relay after the commit.
pub async fn enqueue_audit(
    tx: &mut OrgTx,
    context: &MeshContext,
    entry: &AuditEntry,
) -> Result<Uuid, StoreError> {
    let payload = serde_json::to_value(entry)
        .map_err(|e| StoreError::Internal(sqlx::Error::Encode(Box::new(e))))?;
    tx.enqueue(NewOutboxEvent {
        kind: OutboxKind::Audit,
        actor_id: context.user_id(),
        actor_roles: context.roles(),
        request_id: context.request_id(),
        payload,
    })
    .await
}
