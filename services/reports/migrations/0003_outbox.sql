-- The transactional outbox: events that must follow a change of reports
-- (today: the audit entries tenants keeps) are inserted in the SAME
-- transaction as the change, so an entry exists exactly when its change
-- committed, and no remote call happens while the change holds its locks.
-- After commit the relay (`src/outbox.rs`) delivers them, at least once:
-- `id` is the event id tenants de-duplicates on (it becomes the audit
-- entry's id), so a redelivery stores nothing new.
--
-- A delivered row is deleted: the table holds only what is still pending
-- (what an operator wants to see, and what the relay scans), it never
-- grows with the history, and the delivered entry itself lives in tenants'
-- append-only audit log, the record of truth. `attempts`, `last_error` and
-- `next_attempt_at` say why a row is still here and when it is tried next.
--
-- Writes come from the service role inside an organisation transaction
-- (INSERT only, row-level security on `app.org_id`); the relay reads,
-- reschedules and deletes across organisations as the connecting role, in
-- `src/store/outbox.rs` only.
CREATE TABLE outbox (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('audit')),
    -- Who the change was made by (the relay acts for them, with the roles
    -- and request id of the call that made it).
    actor_id        text NOT NULL,
    actor_roles     jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(actor_roles) = 'array'),
    request_id      text NOT NULL DEFAULT '',
    payload         jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text NOT NULL DEFAULT '',
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, created_at);
CREATE INDEX outbox_org_idx ON outbox (org_id, created_at);

ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY outbox_isolation ON outbox
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);

-- The service role only appends; delivery is the relay's.
GRANT INSERT ON outbox TO treven_app;
