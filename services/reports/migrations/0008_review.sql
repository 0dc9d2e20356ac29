-- The review workflow: the reviewer assigned to a report, review comments
-- (threaded, resolvable, anchored to a version and optionally a section),
-- and each user's notification inbox.
--
-- Identities are Cognito subjects, as everywhere in this schema
-- (`created_by`, `submitted_by`, `author_id`); the reviewer also keeps the
-- tenants user id it was assigned by. Every new table carries `org_id`,
-- with row-level security enabled and forced and the organisation policy,
-- like the tables of 0001 (0004 only covered the tables that existed then).

-- Who reviews a report (a draft or a report in review), set by
-- AssignReviewer; all four columns are set together or not at all.
ALTER TABLE reports
    ADD COLUMN reviewer_id          text,
    ADD COLUMN reviewer_user_id     uuid,
    ADD COLUMN reviewer_assigned_by text,
    ADD COLUMN reviewer_assigned_at timestamptz;

ALTER TABLE reports
    ADD CONSTRAINT reports_reviewer_complete
    CHECK ((reviewer_id IS NULL) = (reviewer_user_id IS NULL)
           AND (reviewer_id IS NULL) = (reviewer_assigned_by IS NULL)
           AND (reviewer_id IS NULL) = (reviewer_assigned_at IS NULL));

-- Review comments. A comment starts a thread or replies inside one
-- (`thread_id` is the first comment's id, its own for the first); replies
-- take their thread's version and section. Resolution belongs to the
-- thread: only its first comment carries `resolved_by`/`resolved_at`.
-- The body passed the PII gate before it was stored; `pii_decisions` are
-- the decisions taken then.
CREATE TABLE report_comments (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL,
    report_id      uuid NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    section        text,
    thread_id      uuid NOT NULL,
    parent_id      uuid,
    author_id      text NOT NULL,
    body           text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 4000),
    pii_decisions  jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(pii_decisions) = 'array'),
    resolved_by    text,
    resolved_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (org_id, report_id) REFERENCES reports (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (report_id, version) REFERENCES report_versions (report_id, number) ON DELETE CASCADE,
    FOREIGN KEY (thread_id) REFERENCES report_comments (id) ON DELETE CASCADE,
    FOREIGN KEY (parent_id) REFERENCES report_comments (id) ON DELETE CASCADE,
    CHECK ((parent_id IS NULL) = (thread_id = id)),
    CHECK ((resolved_by IS NULL) = (resolved_at IS NULL)),
    CHECK (resolved_by IS NULL OR thread_id = id)
);
CREATE INDEX report_comments_report_idx ON report_comments (org_id, report_id, created_at, id);
CREATE INDEX report_comments_thread_idx ON report_comments (thread_id);

-- Each user's inbox: one row per recipient, written in the transaction of
-- the change it reports (so it exists exactly when the change committed),
-- then pushed on the WebSocket channel `user:<subject>` after commit
-- (best-effort; this table is the record). No personal data: the kind,
-- the report, the comment and who acted.
CREATE TABLE notifications (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL,
    recipient_id text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('report_submitted', 'changes_requested', 'report_approved',
                                               'comment_added', 'reviewer_assigned')),
    report_id    uuid NOT NULL,
    comment_id   uuid,
    actor_id     text NOT NULL,
    version      integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    read_at      timestamptz,
    FOREIGN KEY (org_id, report_id) REFERENCES reports (org_id, id) ON DELETE CASCADE
);
CREATE INDEX notifications_recipient_idx ON notifications (org_id, recipient_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (org_id, recipient_id, created_at DESC, id DESC)
    WHERE read_at IS NULL;

ALTER TABLE report_comments ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_comments FORCE ROW LEVEL SECURITY;
ALTER TABLE notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE notifications FORCE ROW LEVEL SECURITY;

CREATE POLICY report_comment_isolation ON report_comments
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY notification_isolation ON notifications
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);

-- Comments are never deleted by the service (resolution is an UPDATE);
-- notifications are only marked read.
GRANT SELECT, INSERT, UPDATE ON report_comments TO treven_app;
GRANT SELECT, INSERT ON notifications TO treven_app;
GRANT UPDATE (read_at) ON notifications TO treven_app;
