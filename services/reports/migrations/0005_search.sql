-- Full-text search over reports: `ListReports` with `q` matches the title
-- (weight A), the scope (B) and the latest version's content (C), ranked.
--
-- The vector is kept on the report row, written by the store in the same
-- statement that moves `latest_version` (so it always describes the version
-- a reader gets) and at creation from the scope. Only string values of the
-- JSON documents are indexed, never their keys. Row-level security confines
-- a search like every other read: the GIN index finds candidates, the
-- organisation policy (and the store's own `org_id` filter) keeps them.
ALTER TABLE reports ADD COLUMN search tsvector NOT NULL DEFAULT ''::tsvector;

-- The vector of a report: its title, its scope and one version's content.
-- IMMUTABLE is true for a fixed text search configuration, which is named.
CREATE FUNCTION report_search_vector(title text, scope jsonb, content jsonb)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A')
    || setweight(jsonb_to_tsvector('english'::regconfig, coalesce(scope, '{}'::jsonb), '["string"]'), 'B')
    || setweight(jsonb_to_tsvector('english'::regconfig, coalesce(content, '{}'::jsonb), '["string"]'), 'C');

GRANT EXECUTE ON FUNCTION report_search_vector(text, jsonb, jsonb) TO treven_app;

UPDATE reports r
SET search = report_search_vector(
    r.title,
    r.scope,
    (SELECT v.content FROM report_versions v
     WHERE v.org_id = r.org_id AND v.report_id = r.id AND v.number = r.latest_version));

CREATE INDEX reports_search_idx ON reports USING gin (search);
