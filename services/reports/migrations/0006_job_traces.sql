-- The W3C trace context (`traceparent`) of the request that queued a job, so
-- the worker that runs it continues the same trace; empty when there was none.
ALTER TABLE report_jobs ADD COLUMN traceparent text NOT NULL DEFAULT '';
-- The worker reads it when it claims a job (as `treven_worker`, which sees
-- only the columns granted to it in 0004_roles).
GRANT SELECT (traceparent) ON report_jobs TO treven_worker;
