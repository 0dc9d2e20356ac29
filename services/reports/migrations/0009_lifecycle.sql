-- Lifecycle: archive and (soft) delete of reports.
--
-- An archived report is hidden from the default list and search but stays
-- readable; a deleted report is gone from every read of the service (the
-- store filters `deleted_at IS NULL`), while its rows, versions and the
-- exported files documents keeps are retained, with who deleted it and
-- when. Both are plain columns of `reports`, which already has row-level
-- security forced (0001, 0004) and UPDATE granted to `treven_app`: no new
-- table, no new grant.
ALTER TABLE reports
    ADD COLUMN archived_at timestamptz,
    ADD COLUMN archived_by text,
    ADD COLUMN deleted_at  timestamptz,
    ADD COLUMN deleted_by  text,
    ADD CONSTRAINT reports_archived_by_check CHECK ((archived_at IS NULL) = (archived_by IS NULL)),
    ADD CONSTRAINT reports_deleted_by_check CHECK ((deleted_at IS NULL) = (deleted_by IS NULL));

-- The default list: live, unarchived reports of one organisation, newest
-- first.
CREATE INDEX reports_org_live_idx ON reports (org_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL AND archived_at IS NULL;
