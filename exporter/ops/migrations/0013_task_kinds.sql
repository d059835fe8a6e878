-- Tasks of every kind in one table. Exports were the only kind; the lifecycle (claim, lease,
-- history, counts, quotas, notifications, retention) is the same for any kind of work, so the
-- table and its functions lose their "export" and gain a `kind` column. Existing rows are
-- exports. The API of exports is unchanged: its queries now name their kind.

ALTER TABLE export_tasks RENAME TO tasks;
ALTER TABLE tasks ADD COLUMN kind text NOT NULL DEFAULT 'export';
ALTER TABLE tasks ALTER COLUMN kind DROP DEFAULT;
ALTER TABLE tasks RENAME CONSTRAINT export_tasks_status_check TO tasks_status_check;
ALTER TABLE tasks RENAME CONSTRAINT export_tasks_created_by_id_fkey TO tasks_created_by_id_fkey;
ALTER TABLE tasks RENAME CONSTRAINT export_tasks_format_fkey TO tasks_format_fkey;
ALTER INDEX export_tasks_pkey RENAME TO tasks_pkey;
ALTER INDEX export_tasks_completed_finished_idx RENAME TO tasks_completed_finished_idx;
ALTER INDEX export_tasks_idempotency_key_idx RENAME TO tasks_idempotency_key_idx;
ALTER INDEX export_tasks_unfinished_idx RENAME TO tasks_unfinished_idx;

-- A type name means something only within its kind (an account export, an account import).
DROP INDEX export_tasks_one_active_per_request_idx;
CREATE UNIQUE INDEX tasks_one_active_per_request_idx
    ON tasks (created_by_id, kind, type, format, params)
    WHERE status IN ('pending', 'running');
DROP INDEX export_tasks_owner_created_idx;
CREATE INDEX tasks_owner_kind_created_idx ON tasks (created_by_id, kind, created_at DESC, id DESC);
DROP INDEX export_tasks_owner_status_created_idx;
CREATE INDEX tasks_owner_kind_status_created_idx
    ON tasks (created_by_id, kind, status, created_at DESC, id DESC);

ALTER TABLE export_task_events RENAME TO task_events;
ALTER INDEX export_task_events_pkey RENAME TO task_events_pkey;
ALTER INDEX export_task_events_task_idx RENAME TO task_events_task_idx;
ALTER SEQUENCE export_task_events_id_seq RENAME TO task_events_id_seq;
ALTER TABLE task_events RENAME CONSTRAINT export_task_events_task_id_fkey TO task_events_task_id_fkey;

-- The counts gain the kind in their key.
DROP TRIGGER export_tasks_count_insert_delete ON tasks;
DROP TRIGGER export_tasks_count_update ON tasks;
DROP FUNCTION count_export_task_change();
DROP FUNCTION add_export_task_count(bigint, text, text, integer, bigint);
ALTER TABLE export_task_counts RENAME TO task_counts;
ALTER TABLE task_counts ADD COLUMN kind text NOT NULL DEFAULT 'export';
ALTER TABLE task_counts ALTER COLUMN kind DROP DEFAULT;
ALTER TABLE task_counts DROP CONSTRAINT export_task_counts_pkey;
ALTER TABLE task_counts ADD PRIMARY KEY (owner_id, kind, status, type);
ALTER TABLE task_counts RENAME CONSTRAINT export_task_counts_owner_id_fkey
    TO task_counts_owner_id_fkey;

CREATE FUNCTION add_task_count(
    p_owner bigint, p_kind text, p_status text, p_type text, p_delta integer, p_bytes bigint
)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO task_counts AS counts (owner_id, kind, status, type, n, file_bytes)
    VALUES (p_owner, p_kind, p_status, p_type, p_delta, p_bytes)
    ON CONFLICT (owner_id, kind, status, type)
    DO UPDATE SET n = counts.n + p_delta, file_bytes = counts.file_bytes + p_bytes;
$$;

-- As count_export_task_change (migration 0008), keyed by kind as well.
CREATE FUNCTION count_task_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM add_task_count(
            NEW.created_by_id, NEW.kind, NEW.status, NEW.type, 1, coalesce(NEW.file_size, 0));
    ELSIF TG_OP = 'DELETE' THEN
        -- Only an update, never an insert: when an account is deleted, its counts may be gone
        -- before the cascade reaches its tasks.
        UPDATE task_counts
        SET n = n - 1, file_bytes = file_bytes - coalesce(OLD.file_size, 0)
        WHERE owner_id = OLD.created_by_id AND kind = OLD.kind AND status = OLD.status
          AND type = OLD.type;
    -- A change moves one task (and its file's bytes) between two counts, locked in key order
    -- so that two changes (a claim, a sweep) cannot each hold the count the other waits for.
    ELSIF (OLD.created_by_id, OLD.kind, OLD.status, OLD.type)
          < (NEW.created_by_id, NEW.kind, NEW.status, NEW.type)
    THEN
        PERFORM add_task_count(
            OLD.created_by_id, OLD.kind, OLD.status, OLD.type, -1, -coalesce(OLD.file_size, 0));
        PERFORM add_task_count(
            NEW.created_by_id, NEW.kind, NEW.status, NEW.type, 1, coalesce(NEW.file_size, 0));
    ELSE
        PERFORM add_task_count(
            NEW.created_by_id, NEW.kind, NEW.status, NEW.type, 1, coalesce(NEW.file_size, 0));
        PERFORM add_task_count(
            OLD.created_by_id, OLD.kind, OLD.status, OLD.type, -1, -coalesce(OLD.file_size, 0));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_count_insert_delete
    AFTER INSERT OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION count_task_change();

CREATE TRIGGER tasks_count_update
    AFTER UPDATE OF status, kind, type, created_by_id, file_size ON tasks
    FOR EACH ROW
    WHEN ((OLD.status, OLD.kind, OLD.type, OLD.created_by_id, OLD.file_size)
          IS DISTINCT FROM (NEW.status, NEW.kind, NEW.type, NEW.created_by_id, NEW.file_size))
    EXECUTE FUNCTION count_task_change();

-- The history trigger and its function, renamed; what they record is unchanged.
DROP TRIGGER export_tasks_record_event ON tasks;
DROP FUNCTION record_export_task_event();

CREATE FUNCTION record_task_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO task_events (task_id, status, attempt, worker_id, detail)
        VALUES (NEW.id, NEW.status, NEW.attempts,
                CASE WHEN NEW.status = 'running' OR OLD.status = 'running'
                     THEN coalesce(NEW.worker_id, OLD.worker_id) END,
                CASE WHEN NEW.status = 'failed' THEN NEW.error ELSE NEW.status_note END);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_record_event
    AFTER INSERT OR UPDATE OF status ON tasks
    FOR EACH ROW EXECUTE FUNCTION record_task_event();

-- Changes are announced on one channel for every kind; the payload names the kind, so that a
-- stream of one kind's tasks ignores the others without reading them.
DROP TRIGGER export_tasks_notify_insert_delete ON tasks;
DROP TRIGGER export_tasks_notify_update ON tasks;
DROP FUNCTION notify_export_task_change();

CREATE FUNCTION notify_task_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    task tasks;
BEGIN
    IF TG_OP = 'DELETE' THEN
        task := OLD;
    ELSE
        task := NEW;
    END IF;
    PERFORM pg_notify(
        'task_changes',
        json_build_object(
            'id', task.id, 'owner', task.created_by_id, 'kind', task.kind, 'op', lower(TG_OP)
        )::text
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_notify_insert_delete
    AFTER INSERT OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION notify_task_change();

-- Bookkeeping a user never sees (a worker renewing its lease, a re-enqueue) announces nothing.
CREATE TRIGGER tasks_notify_update
    AFTER UPDATE ON tasks
    FOR EACH ROW
    WHEN ((OLD.status, OLD.rows_done, OLD.rows_total, OLD.error, OLD.file_name, OLD.file_size,
           OLD.row_count, OLD.started_at, OLD.finished_at, OLD.attempts, OLD.cancel_requested,
           OLD.status_note)
          IS DISTINCT FROM
          (NEW.status, NEW.rows_done, NEW.rows_total, NEW.error, NEW.file_name, NEW.file_size,
           NEW.row_count, NEW.started_at, NEW.finished_at, NEW.attempts, NEW.cancel_requested,
           NEW.status_note))
    EXECUTE FUNCTION notify_task_change();

-- As create_export_task (migration 0008), for a task of any kind. The quotas count the owner's
-- tasks of every kind: they protect the workers and the storage, which all kinds share.
--
-- outcome is one of:
--   created        task is the new task
--   found          task is the one this request already stands for (same key or same request)
--   key_conflict   the idempotency key was used with another request (of this kind or
--                  another); task is NULL
--   quota          the owner has `active` unfinished tasks, at the limit; task is NULL
--   kept_bytes     the owner's files take `kept` bytes, at or over the limit; task is NULL
--   queue_full     p_queue_full: the caller found the queue at its cap; task is NULL
DROP FUNCTION create_export_task(
    uuid, bigint, text, text, jsonb, text, text, integer, bigint, boolean
);

CREATE FUNCTION create_task(
    p_id uuid,
    p_kind text,
    p_owner bigint,
    p_type text,
    p_format text,
    p_params jsonb,
    p_idempotency_key text,
    p_request_hash text,
    p_max_active integer,
    p_max_kept_bytes bigint,
    p_queue_full boolean,
    OUT outcome text,
    OUT active bigint,
    OUT kept bigint,
    OUT task tasks
)
LANGUAGE plpgsql AS $$
BEGIN
    -- Creates of one account are serialised so its count of unfinished tasks is exact. Each
    -- statement below takes a fresh snapshot (read committed), so it sees what the previous
    -- holder of the lock committed.
    PERFORM pg_advisory_xact_lock(hashtextextended('tasks:' || p_owner, 0));

    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO task FROM tasks
        WHERE created_by_id = p_owner AND idempotency_key = p_idempotency_key;
        IF FOUND THEN
            IF task.request_hash IS DISTINCT FROM p_request_hash OR task.kind <> p_kind THEN
                outcome := 'key_conflict';
                task := NULL;
            ELSE
                outcome := 'found';
            END IF;
            RETURN;
        END IF;
    END IF;

    SELECT * INTO task FROM tasks
    WHERE created_by_id = p_owner AND kind = p_kind AND type = p_type AND format = p_format
      AND params = p_params AND status IN ('pending', 'running');
    IF FOUND THEN
        outcome := 'found';
        RETURN;
    END IF;

    SELECT count(*) INTO active FROM tasks
    WHERE created_by_id = p_owner AND status IN ('pending', 'running');
    IF active >= p_max_active THEN
        outcome := 'quota';
        RETURN;
    END IF;

    SELECT coalesce(sum(file_bytes), 0) INTO kept FROM task_counts
    WHERE owner_id = p_owner AND status = 'completed';
    IF kept >= p_max_kept_bytes THEN
        outcome := 'kept_bytes';
        RETURN;
    END IF;

    -- Known before the call (the queue's length in Redis, O(1)), and applied here so that a
    -- request that finds its task above is still answered with it while the queue is full.
    IF p_queue_full THEN
        outcome := 'queue_full';
        RETURN;
    END IF;

    INSERT INTO tasks
        (id, kind, type, format, params, created_by_id, idempotency_key, request_hash,
         enqueue_count, enqueued_at)
    VALUES (p_id, p_kind, p_type, p_format, p_params, p_owner, p_idempotency_key,
            p_request_hash, 1, now())
    RETURNING * INTO task;
    outcome := 'created';
END;
$$;

-- As export_task_page (migrations 0006 and 0010), for the tasks of one kind; a task's own
-- address is under p_base ('/api/export-tasks/' for exports). Each task is written as TaskOut
-- shows it, field by field: taking the list of fields from the caller and picking each out of
-- the row's JSON cost 3.4 ms a page instead of 0.23 ms, so the list is spelled here, and a test
-- compares each field with what TaskOut makes of the same task.
DROP FUNCTION export_task_page(bigint, text, text, integer, integer);

CREATE FUNCTION task_page(
    p_kind text, p_base text, p_owner bigint, p_status text, p_type text, p_page integer,
    p_page_size integer
) RETURNS json
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_offset bigint := (p_page - 1)::bigint * p_page_size;
    v_known boolean;
    v_total bigint;
    v_ids uuid[];
    v_items json;
BEGIN
    SELECT EXISTS (SELECT 1 FROM accounts WHERE id = p_owner),
           (SELECT coalesce(sum(n), 0) FROM task_counts
            WHERE owner_id = p_owner AND kind = p_kind
              AND (p_status IS NULL OR status = p_status)
              AND (p_type IS NULL OR type = p_type))
    INTO v_known, v_total;
    IF NOT v_known THEN
        RETURN NULL;
    END IF;
    IF p_status IS NULL THEN
        v_ids := ARRAY(
            SELECT id FROM tasks
            WHERE created_by_id = p_owner AND kind = p_kind AND (p_type IS NULL OR type = p_type)
            ORDER BY created_at DESC, id DESC
            LIMIT p_page_size OFFSET v_offset
        );
    ELSE
        v_ids := ARRAY(
            SELECT id FROM tasks
            WHERE created_by_id = p_owner AND kind = p_kind AND status = p_status
              AND (p_type IS NULL OR type = p_type)
            ORDER BY created_at DESC, id DESC
            LIMIT p_page_size OFFSET v_offset
        );
    END IF;
    -- Each task as TaskOut shows it: where its file is stored stays private, and the history is
    -- only in a single task's own answer.
    SELECT json_agg(task ORDER BY task.created_at DESC, task.id DESC) INTO v_items
    FROM (
        SELECT id, type, format, status, params, file_name, file_size, row_count, rows_done,
               rows_total, error, error_code, error_params, created_at, started_at,
               finished_at, attempts, cancel_requested, status_note,
               CASE WHEN status = 'completed'
                    THEN p_base || id || '/download' END AS download_url,
               NULL AS history
        FROM tasks
        WHERE id = ANY (v_ids)
    ) AS task;
    RETURN json_build_object(
        'items', coalesce(v_items, '[]'::json),
        'total', v_total,
        'page', p_page,
        'page_size', p_page_size
    );
END
$$;
