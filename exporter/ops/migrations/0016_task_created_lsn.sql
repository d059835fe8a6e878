-- Where the primary's write-ahead log stood when a task was created: every row committed before
-- the create lies before it. A worker reading an export's rows from a replica waits until the
-- replica has replayed this far, so that the export sees what its owner wrote just before
-- asking. The insert position, not the flushed one: it is past every commit already reported.
-- Set by the column's default, so create_task (migration 0014) stays as it is. Tasks created
-- before this migration keep NULL and are read without waiting.
ALTER TABLE tasks ADD COLUMN created_lsn pg_lsn;
ALTER TABLE tasks ALTER COLUMN created_lsn SET DEFAULT pg_current_wal_insert_lsn();
