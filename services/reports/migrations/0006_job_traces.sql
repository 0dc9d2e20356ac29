-- The W3C trace context (`traceparent`) of the request that queued a job, so
-- the worker that runs it continues the same trace; empty when there was none.
ALTER TABLE report_jobs ADD COLUMN traceparent text NOT NULL DEFAULT '';
