-- The X-Request-ID of the API request that created a task, so that the worker's log lines for
-- the task carry the same id as the API's lines for the request.
ALTER TABLE tasks ADD COLUMN request_id text;

-- As in 0014, with the request's id.
DROP FUNCTION create_task(
    uuid, text, bigint, text, text, jsonb, text, text, integer, bigint, boolean, text, text, bigint
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
         enqueue_count, enqueued_at, upload_key, upload_name, upload_size, request_id)
    VALUES (p_id, p_kind, p_type, p_format, p_params, p_owner, p_idempotency_key,
            p_request_hash, 1, now(), p_upload_key, p_upload_name, p_upload_size, p_request_id)
    RETURNING * INTO task;
    outcome := 'created';
END;
$$;
