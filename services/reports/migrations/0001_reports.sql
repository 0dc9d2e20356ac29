-- Reports: reports, their versions, generation jobs (and the sections a job
-- has saved so far), and the trends derived from approved reports.
--
-- Everything lives in the schema `reports` (the service connects with
-- `search_path=reports`, and its migration history is `reports._sqlx_migrations`),
-- so reports can share one database with tenants or use its own.
--
-- Isolation: as in tenants, every row carries its organisation and
-- row-level security limits the role `treven_app` to the organisation in
-- `app.org_id`; the service switches to `treven_app` and sets `app.org_id`
-- at the start of every transaction. The job queue is claimed across
-- organisations by the connecting role (the owner), the workers' path.

DO $$
BEGIN
    CREATE ROLE treven_app NOLOGIN;
EXCEPTION
    -- Roles are cluster-wide: tenants (or a concurrent migration) may have
    -- created it.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT treven_app TO %I', current_user);
EXCEPTION
    WHEN duplicate_object OR unique_violation OR invalid_grant_operation THEN NULL;
END
$$;

CREATE TABLE reports (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL,
    title             text NOT NULL DEFAULT '',
    scope             jsonb NOT NULL CHECK (jsonb_typeof(scope) = 'object'),
    country           text NOT NULL DEFAULT '',
    exploitation_type text NOT NULL,
    status            text NOT NULL CHECK (status IN ('generating', 'draft', 'in_review', 'approved', 'exported', 'failed')),
    latest_version    integer NOT NULL DEFAULT 0 CHECK (latest_version >= 0),
    approved_by       text,
    approved_at       timestamptz,
    approved_version  integer,
    failure_reason    text NOT NULL DEFAULT '',
    document_ids      jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (org_id, id),
    -- Approved and exported reports always say who approved which version.
    CHECK (status NOT IN ('approved', 'exported')
           OR (approved_by IS NOT NULL AND approved_at IS NOT NULL AND approved_version IS NOT NULL))
);
CREATE INDEX reports_org_time_idx ON reports (org_id, created_at DESC, id DESC);
CREATE INDEX reports_org_status_idx ON reports (org_id, status, created_at DESC, id DESC);
CREATE INDEX reports_org_country_idx ON reports (org_id, country, created_at DESC, id DESC);

CREATE TABLE report_versions (
    org_id            uuid NOT NULL,
    report_id         uuid NOT NULL,
    number            integer NOT NULL CHECK (number >= 1),
    content           jsonb NOT NULL CHECK (jsonb_typeof(content) = 'object'),
    content_hash      text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    cause             text NOT NULL CHECK (cause IN ('generated', 'edited', 'regenerated', 'rejected')),
    section           text,
    author_id         text NOT NULL,
    reason            text NOT NULL DEFAULT '',
    change_summary    text NOT NULL DEFAULT '',
    rejected_sections jsonb NOT NULL DEFAULT '[]'::jsonb,
    quality_checks    jsonb NOT NULL DEFAULT '[]'::jsonb,
    pii_decisions     jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (report_id, number),
    FOREIGN KEY (org_id, report_id) REFERENCES reports (org_id, id) ON DELETE CASCADE
);

-- One generation job per report; retried with backoff, leased by a worker
-- that heartbeats. A lease that lapses lets another worker take the job.
CREATE TABLE report_jobs (
    id               uuid PRIMARY KEY,
    org_id           uuid NOT NULL,
    report_id        uuid NOT NULL UNIQUE,
    requested_by     text NOT NULL,
    requester_roles  jsonb NOT NULL DEFAULT '[]'::jsonb,
    request_id       text NOT NULL DEFAULT '',
    state            text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    run_after        timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_owner      uuid,
    lease_expires_at timestamptz,
    heartbeat_at     timestamptz,
    last_error       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at      timestamptz,
    FOREIGN KEY (org_id, report_id) REFERENCES reports (org_id, id) ON DELETE CASCADE,
    CHECK (state <> 'running' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);
CREATE INDEX report_jobs_ready_idx ON report_jobs (run_after) WHERE state = 'queued';
CREATE INDEX report_jobs_lease_idx ON report_jobs (lease_expires_at) WHERE state = 'running';

-- Sections a job has received and saved, so a retry asks only for the rest.
CREATE TABLE report_job_sections (
    org_id     uuid NOT NULL,
    job_id     uuid NOT NULL REFERENCES report_jobs (id) ON DELETE CASCADE,
    section    text NOT NULL,
    content    jsonb NOT NULL,
    redactions integer NOT NULL DEFAULT 0,
    saved_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (job_id, section)
);

-- Trends derived from the key judgements of approved reports; replaced at
-- every approval of the report.
CREATE TABLE trends (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL,
    report_id         uuid NOT NULL,
    report_version    integer NOT NULL,
    country           text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    exploitation_type text NOT NULL,
    statement         text NOT NULL,
    confidence        text NOT NULL DEFAULT '',
    tags              jsonb NOT NULL DEFAULT '[]'::jsonb,
    sources           jsonb NOT NULL DEFAULT '[]'::jsonb,
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (org_id, report_id) REFERENCES reports (org_id, id) ON DELETE CASCADE
);
CREATE INDEX trends_org_country_idx ON trends (org_id, country, updated_at DESC, id DESC);

ALTER TABLE reports ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_job_sections ENABLE ROW LEVEL SECURITY;
ALTER TABLE trends ENABLE ROW LEVEL SECURITY;

CREATE POLICY report_isolation ON reports
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY report_version_isolation ON report_versions
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY report_job_isolation ON report_jobs
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY report_job_section_isolation ON report_job_sections
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY trend_isolation ON trends
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);

-- Versions are append-only for the service role: no UPDATE or DELETE grant.
GRANT USAGE ON SCHEMA reports TO treven_app;
GRANT SELECT, INSERT, UPDATE ON reports TO treven_app;
GRANT SELECT, INSERT ON report_versions TO treven_app;
GRANT SELECT, INSERT, UPDATE ON report_jobs TO treven_app;
GRANT SELECT, INSERT, UPDATE ON report_job_sections TO treven_app;
GRANT SELECT, INSERT, DELETE ON trends TO treven_app;
