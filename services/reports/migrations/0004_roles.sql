-- Roles: who may do what, with row-level security forced on the owner too
-- (the same scheme as tenants' 0002_roles.sql).
--
-- - The owner (the role `treven migrate` connects as) owns every object and
--   runs the migrations; with FORCE ROW LEVEL SECURITY the policies confine
--   it too (superusers and BYPASSRLS roles excepted: the RDS master user is
--   neither).
-- - The service logs in as its own login role (`treven_reports_svc` in the
--   dev stack and the CDK app; `treven migrate` creates it and sets its
--   password): owns nothing, not superuser, no BYPASSRLS, a member of
--   `treven_app` (inherited: with no `app.org_id` it sees and writes no row)
--   and of `treven_worker` (entered with SET LOCAL ROLE only).
-- - `treven_app` (0001): one organisation, the one in `app.org_id`.
-- - `treven_worker`: the generation workers' claim, heartbeat and release
--   of jobs across organisations, and an outbox relay's reads and marks
--   across organisations: only those columns of only those tables. Entered
--   with SET LOCAL ROLE (`treven_mesh::postgres::begin_background`); its
--   policies name `current_user`, so members that inherit it (the login
--   role) get nothing from them without switching.

DO $$
BEGIN
    CREATE ROLE treven_worker NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT treven_worker TO %I', current_user);
EXCEPTION
    WHEN duplicate_object OR unique_violation OR invalid_grant_operation THEN NULL;
END
$$;

-- Every table of this schema with an organisation column (whichever
-- migration added it): RLS enabled and forced. A table with RLS and no
-- policy for a role shows that role nothing.
DO $$
DECLARE
    org_table regclass;
BEGIN
    FOR org_table IN
        SELECT c.oid::regclass
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema()
          AND c.relkind IN ('r', 'p')
          AND EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped)
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', org_table);
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', org_table);
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA reports TO treven_worker;

-- The job queue across organisations: claim (the next due or lapsed job),
-- heartbeat and release. Only the lease columns are writable; the rest of
-- the job (and every other table) stays behind `treven_app`.
GRANT SELECT (id, org_id, report_id, requested_by, requester_roles, request_id, state,
              attempts, run_after, lease_owner, lease_expires_at)
    ON report_jobs TO treven_worker;
GRANT UPDATE (state, attempts, run_after, lease_owner, lease_expires_at, heartbeat_at)
    ON report_jobs TO treven_worker;
CREATE POLICY report_job_worker ON report_jobs
    TO treven_worker
    USING (current_user = 'treven_worker')
    WITH CHECK (current_user = 'treven_worker');

-- The outbox relay (when the schema has an `outbox` table): reads pending
-- rows of every organisation and marks them relayed.
DO $$
BEGIN
    IF to_regclass('outbox') IS NOT NULL THEN
        EXECUTE 'GRANT SELECT, UPDATE, DELETE ON outbox TO treven_worker';
        EXECUTE 'CREATE POLICY outbox_relay ON outbox TO treven_worker '
                'USING (current_user = ''treven_worker'') '
                'WITH CHECK (current_user = ''treven_worker'')';
    END IF;
END
$$;

-- A login role checks that the schema is current before serving.
GRANT SELECT ON _sqlx_migrations TO treven_app;
