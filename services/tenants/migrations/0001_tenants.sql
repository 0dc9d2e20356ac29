-- Tenants: organisations, users, partners, report-access grants, audit log.
--
-- Isolation: every row carries its organisation, and row-level security
-- limits the role `treven_app` to the organisation in `app.org_id`. The
-- service switches to `treven_app` and sets `app.org_id` at the start of
-- every transaction (SET LOCAL), so a query that forgets its org filter still
-- cannot see or write another organisation's rows. The connecting role (the
-- owner) is the operator's path: migrations and `treven admin`.

DO $$
BEGIN
    CREATE ROLE treven_app NOLOGIN;
EXCEPTION
    -- Roles are cluster-wide: another database (or a concurrent migration)
    -- may have created it.
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

CREATE TABLE organisations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    kind        text NOT NULL CHECK (kind IN ('fi', 'ngo', 'le', 'owner')),
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX organisations_name_key ON organisations (lower(name));

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organisations (id),
    cognito_sub text CHECK (char_length(cognito_sub) BETWEEN 1 AND 128),
    email       text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    role        text NOT NULL CHECK (role IN ('admin', 'analyst', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_org_email_key ON users (org_id, lower(email));
CREATE UNIQUE INDEX users_org_sub_key ON users (org_id, cognito_sub);
CREATE INDEX users_org_name_idx ON users (org_id, name, id);

CREATE TABLE partners (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organisations (id),
    name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    kind          text NOT NULL CHECK (kind IN ('fi', 'ngo', 'le')),
    contact_email text NOT NULL CHECK (char_length(contact_email) BETWEEN 3 AND 254),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, id)
);
CREATE UNIQUE INDEX partners_org_name_key ON partners (org_id, lower(name));
CREATE INDEX partners_org_name_idx ON partners (org_id, name, id);

CREATE TABLE report_access (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL,
    report_id   uuid NOT NULL,
    partner_id  uuid NOT NULL,
    permission  text NOT NULL CHECK (permission IN ('view', 'download')),
    granted_by  text NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    -- The partner must belong to the same organisation as the grant.
    FOREIGN KEY (org_id, partner_id) REFERENCES partners (org_id, id) ON DELETE CASCADE,
    UNIQUE (org_id, report_id, partner_id)
);
CREATE INDEX report_access_org_time_idx ON report_access (org_id, granted_at DESC, id DESC);
CREATE INDEX report_access_partner_idx ON report_access (org_id, partner_id);

CREATE TABLE audit_log (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organisations (id),
    actor_id      text NOT NULL,
    action        text NOT NULL,
    resource_type text NOT NULL,
    resource_id   text NOT NULL,
    details       jsonb NOT NULL DEFAULT '{}'::jsonb,
    request_id    text NOT NULL DEFAULT '',
    occurred_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX audit_log_org_time_idx ON audit_log (org_id, occurred_at DESC, id DESC);
CREATE INDEX audit_log_org_resource_idx
    ON audit_log (org_id, resource_type, resource_id, occurred_at DESC, id DESC);

-- The audit log is append-only for everyone, owner included.
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- Row-level security: `app.org_id` is unset ('' or NULL) outside a
-- service transaction, which matches no row.
ALTER TABLE organisations ENABLE ROW LEVEL SECURITY;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE partners ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_access ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;

CREATE POLICY organisation_isolation ON organisations
    USING (id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY user_isolation ON users
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY partner_isolation ON partners
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY report_access_isolation ON report_access
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY audit_isolation ON audit_log
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);

-- The service role reads and writes tenant data, may change (not create or
-- delete) its own organisation, and may only append to the audit log.
GRANT USAGE ON SCHEMA public TO treven_app;
GRANT SELECT, UPDATE ON organisations TO treven_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON users, partners, report_access TO treven_app;
GRANT SELECT, INSERT ON audit_log TO treven_app;
