-- Workers record themselves, so that an operator sees which are alive. A row is written at start
-- and on every maintenance round (the sweep interval), and marked stopped on a clean shutdown;
-- a worker that died keeps its last heartbeat, which the reader judges against its interval.
-- What a worker runs now is not stored here: the tasks' lease columns (worker_id) say it.
CREATE TABLE workers (
    id                   text PRIMARY KEY,
    host                 text NOT NULL,
    pid                  integer NOT NULL,
    queue_name           text NOT NULL,
    started_at           timestamptz NOT NULL DEFAULT now(),
    heartbeat_at         timestamptz NOT NULL DEFAULT now(),
    heartbeat_interval_s double precision NOT NULL CHECK (heartbeat_interval_s > 0),
    -- Rows its tasks reported between its last two heartbeats, per second.
    rows_per_s           double precision NOT NULL DEFAULT 0,
    stopped_at           timestamptz
);
CREATE INDEX workers_heartbeat_idx ON workers (heartbeat_at);

-- The operators' view lists the failed and the recently finished tasks of every account.
CREATE INDEX tasks_status_finished_idx ON tasks (status, finished_at DESC);
