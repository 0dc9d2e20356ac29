-- Four-eyes approval: who submitted which version for review, and when.
-- Approval compares the approver with the submitter (and with the author of
-- the version); NULL for reports never submitted (or submitted before this
-- migration, whose approval then compares with the author only).
ALTER TABLE reports
    ADD COLUMN submitted_by      text,
    ADD COLUMN submitted_at      timestamptz,
    ADD COLUMN submitted_version integer;

ALTER TABLE reports
    ADD CONSTRAINT reports_submission_complete
    CHECK ((submitted_by IS NULL) = (submitted_at IS NULL)
           AND (submitted_by IS NULL) = (submitted_version IS NULL));
