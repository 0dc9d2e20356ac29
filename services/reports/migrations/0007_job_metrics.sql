-- The job metrics (`report_jobs_oldest_age_seconds`): the worker reads how
-- long the oldest unfinished job has waited, as `treven_worker`, which sees
-- only the columns granted to it.
GRANT SELECT (created_at) ON report_jobs TO treven_worker;
