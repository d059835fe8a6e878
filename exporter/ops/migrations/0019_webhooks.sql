-- Webhooks (issue 15): a task may name a URL told of its end; the deployment's own URL (which
-- the worker records in deployment.webhook_url at start) is told of every task's.
ALTER TABLE tasks ADD COLUMN notify_url text;
ALTER TABLE deployment ADD COLUMN webhook_url text;

-- One event sent to one URL, until a 2xx or the last attempt; every attempt sends the same
-- event id and body, so that a receiver can drop a repeat.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    task_id         uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    url             text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- When a worker may take it next; a worker taking it moves this past its attempt's end, so
    -- that a worker killed mid-attempt leaves it due again for another.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- The JSON body, written at the first attempt and sent unchanged by every retry.
    body            text,
    UNIQUE (event_id, url)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_task_idx ON webhook_deliveries (task_id);

CREATE TABLE webhook_attempts (
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error       text,
    PRIMARY KEY (delivery_id, attempt)
);

-- Every place a task ends (the worker, the sweeper, a cancel, retention's expiry, a lost file)
-- is an UPDATE of its status: the event is made here, once per change, in the change's own
-- transaction, whichever code made it.
CREATE FUNCTION tasks_webhook_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event uuid := gen_random_uuid();
BEGIN
    INSERT INTO webhook_deliveries (event_id, event_type, task_id, url)
    SELECT DISTINCT event, 'task.' || NEW.status, NEW.id, target
    FROM (SELECT NEW.notify_url AS target
          UNION ALL SELECT webhook_url FROM deployment) AS targets
    WHERE target IS NOT NULL;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_webhook_event
    AFTER UPDATE OF status ON tasks
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('completed', 'failed', 'cancelled', 'expired'))
    EXECUTE FUNCTION tasks_webhook_event();

-- As in 0018, with the URL told of the task's end.
DROP FUNCTION create_task(
    uuid, text, bigint, text, text, jsonb, text, text, integer, bigint, boolean, text, text, bigint,
    text
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
    p_upload_key text,
    p_upload_name text,
    p_upload_size bigint,
    p_request_id text,
    p_notify_url text,
    OUT outcome text,
    OUT active bigint,
    OUT kept bigint,
    OUT task tasks
)
LANGUAGE plpgsql AS $$
BEGIN
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

    IF p_queue_full THEN
        outcome := 'queue_full';
        RETURN;
    END IF;

    INSERT INTO tasks
        (id, kind, type, format, params, created_by_id, idempotency_key, request_hash,
         enqueue_count, enqueued_at, upload_key, upload_name, upload_size, request_id,
         notify_url)
    VALUES (p_id, p_kind, p_type, p_format, p_params, p_owner, p_idempotency_key,
            p_request_hash, 1, now(), p_upload_key, p_upload_name, p_upload_size, p_request_id,
            p_notify_url)
    RETURNING * INTO task;
    outcome := 'created';
END;
$$;

-- The task lists as TaskOut and ImportTaskOut now show a task (migrations 0013, 0015): with its
-- notify_url; the delivery log, like the history, only in a single task's own answer.
CREATE OR REPLACE FUNCTION task_page(
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
               notify_url, NULL AS history, NULL AS webhooks
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

CREATE OR REPLACE FUNCTION import_task_page(
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
            WHERE created_by_id = p_owner AND kind = p_kind
              AND (p_type IS NULL OR type = p_type)
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
    SELECT json_agg(task ORDER BY task.created_at DESC, task.id DESC) INTO v_items
    FROM (
        SELECT id, type, format, status, params ->> 'mode' AS mode,
               params ->> 'on_error' AS on_error, upload_name AS file_name,
               upload_size AS file_size, rows_done, rows_total, outcome -> 'counts' AS counts,
               coalesce(outcome -> 'errors', '[]'::jsonb) AS errors,
               file_key IS NOT NULL AS has_report,
               CASE WHEN file_key IS NOT NULL THEN p_base || id || '/report' END AS report_url,
               error, error_code, error_params, created_at, started_at, finished_at, attempts,
               cancel_requested, status_note, notify_url, NULL AS history, NULL AS webhooks
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
