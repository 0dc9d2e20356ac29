-- Invitations that sign in, and organisations created through the API.
--
-- Tenants is the source of truth for who may sign in; the Cognito user pool
-- follows it. Every change that Cognito must follow (invite, role or e-mail
-- change, removal) writes its tenants row and a `cognito_sync` job in one
-- transaction; the service applies the job right after the commit, and a
-- background relay retries what is still pending with backoff. So a failure
-- halfway never leaves a Cognito user without a tenants user or the reverse
-- for longer than it takes Cognito to answer again.

-- Where a user's Cognito account stands: NULL when tenants does not manage
-- it (no user pool configured, or an operator's `ensure-user`).
ALTER TABLE users
    ADD COLUMN identity_state text CHECK (identity_state IN ('pending', 'synced', 'failed'));

-- One job: bring the Cognito user `username` in line with the tenants user
-- `user_id` of `org_id` (which may no longer exist: then it is disabled and
-- signed out). Jobs are state-based, so applying one twice, or two of the
-- same user in any order, ends in the same place.
CREATE TABLE cognito_sync (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organisations (id),
    user_id         uuid NOT NULL,
    -- The Cognito user to act on: the subject once known, else the e-mail.
    username        text NOT NULL CHECK (char_length(username) BETWEEN 1 AND 254),
    -- Who made the change, and in which request (for the audit entry of a
    -- change Cognito refuses for good).
    actor_id        text NOT NULL,
    request_id      text NOT NULL DEFAULT '',
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A claim by an applier: nobody else applies the job before this.
    locked_until    timestamptz,
    last_error      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cognito_sync_due_idx ON cognito_sync (next_attempt_at) WHERE state = 'pending';
CREATE INDEX cognito_sync_org_user_idx ON cognito_sync (org_id, user_id);

ALTER TABLE cognito_sync ENABLE ROW LEVEL SECURITY;
ALTER TABLE cognito_sync FORCE ROW LEVEL SECURITY;

-- Requests (one organisation) queue and complete jobs of their own
-- organisation.
CREATE POLICY cognito_sync_isolation ON cognito_sync
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON cognito_sync TO treven_app;

-- The relay (treven_worker, cross-organisation) finds due jobs and claims
-- them; everything else it does goes through a transaction of the job's
-- organisation.
GRANT SELECT, UPDATE ON cognito_sync TO treven_worker;
CREATE POLICY cognito_sync_relay ON cognito_sync
    TO treven_worker
    USING (current_user = 'treven_worker')
    WITH CHECK (current_user = 'treven_worker');

-- CreateOrganisation: a request of the platform owner's admin inserts the
-- new organisation from a transaction confined to that new organisation
-- (`app.org_id` set to its fresh id), so it can create exactly that row and
-- nothing else; the policy of 0001 checks the id on insert.
GRANT INSERT ON organisations TO treven_app;
