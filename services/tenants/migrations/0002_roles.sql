-- Roles: who may do what, with row-level security forced on the owner too.
--
-- - The owner (the role `treven migrate` connects as) owns every object and
--   runs the migrations. With FORCE ROW LEVEL SECURITY it is confined by the
--   policies like everyone else (superusers and BYPASSRLS roles are not: the
--   RDS master user is neither).
-- - The service logs in as its own login role (`treven_tenants_svc` in the
--   dev stack and the CDK app; `treven migrate` creates it and sets its
--   password). It owns nothing, is not superuser, has no BYPASSRLS and is a
--   member of `treven_app`: with no `app.org_id` it sees no row and writes
--   none.
-- - `treven_app` (0001): one organisation, the one in `app.org_id`.
-- - `treven_operator` (here): the operator's `ensure-org`, which looks an
--   organisation up by name across organisations and creates one. Only the
--   owner is a member; entered with SET LOCAL ROLE
--   (`treven_mesh::postgres::begin_operator`).
-- - `treven_worker`: cross-organisation background work (an outbox relay).
--   Its policies name `current_user`, so a login role that is a member (and
--   inherits) gets nothing from them without SET LOCAL ROLE
--   (`treven_mesh::postgres::begin_background`).

DO $$
BEGIN
    CREATE ROLE treven_operator NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    CREATE ROLE treven_worker NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT treven_operator, treven_worker TO %I', current_user);
EXCEPTION
    WHEN duplicate_object OR unique_violation OR invalid_grant_operation THEN NULL;
END
$$;

-- Every table with an organisation column: RLS enabled and forced. A table
-- with RLS and no policy for a role shows that role nothing.
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
ALTER TABLE organisations FORCE ROW LEVEL SECURITY;

-- The operator finds an organisation by name and creates one; nothing else.
GRANT USAGE ON SCHEMA public TO treven_operator;
GRANT SELECT, INSERT ON organisations TO treven_operator;
CREATE POLICY organisation_operator ON organisations
    TO treven_operator
    USING (current_user = 'treven_operator')
    WITH CHECK (current_user = 'treven_operator');

-- A cross-organisation outbox relay (when the service has an `outbox`
-- table): reads pending rows of every organisation and marks them sent.
GRANT USAGE ON SCHEMA public TO treven_worker;
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
