-- Leases, cancellation, idempotency and history: what keeps every task moving to an end.

ALTER TABLE export_tasks
    ADD COLUMN worker_id        text,
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN enqueue_count    integer NOT NULL DEFAULT 0,
    ADD COLUMN enqueued_at      timestamptz,
    ADD COLUMN idempotency_key  text,
    ADD COLUMN request_hash     text,
    -- Why the status last changed (requeued, cancelled, expired …); the history keeps each one.
    ADD COLUMN status_note      text;

-- A double click while the first task is unfinished finds that task instead of making another.
CREATE UNIQUE INDEX export_tasks_one_active_per_request_idx
    ON export_tasks (created_by_id, type, format, params)
    WHERE status IN ('pending', 'running');

CREATE UNIQUE INDEX export_tasks_idempotency_key_idx
    ON export_tasks (created_by_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The retention job looks for old completed files.
CREATE INDEX export_tasks_completed_finished_idx
    ON export_tasks (finished_at) WHERE status = 'completed';

CREATE TABLE export_task_events (
    id         bigserial PRIMARY KEY,
    task_id    uuid NOT NULL REFERENCES export_tasks (id) ON DELETE CASCADE,
    status     text NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempt    integer NOT NULL,
    worker_id  text,
    detail     text
);

CREATE INDEX export_task_events_task_idx ON export_task_events (task_id, id);

-- Every status change is recorded by the database itself, so no code path can forget one.
CREATE FUNCTION record_export_task_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO export_task_events (task_id, status, attempt, worker_id, detail)
        VALUES (NEW.id, NEW.status, NEW.attempts,
                CASE WHEN NEW.status = 'running' OR OLD.status = 'running'
                     THEN coalesce(NEW.worker_id, OLD.worker_id) END,
                CASE WHEN NEW.status = 'failed' THEN NEW.error ELSE NEW.status_note END);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER export_tasks_record_event
    AFTER INSERT OR UPDATE OF status ON export_tasks
    FOR EACH ROW EXECUTE FUNCTION record_export_task_event();
