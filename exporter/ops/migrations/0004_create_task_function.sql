-- Creating a task in one round trip: the owner's lock, the idempotency key, the identical
-- unfinished task, both quotas and the insert ran as six statements from the API; here they
-- run in the database and the API sends one.
--
-- outcome is one of:
--   created        task is the new task
--   found          task is the one this request already stands for (same key or same request)
--   key_conflict   the idempotency key was used with another request; task is NULL
--   quota          the owner has `active` unfinished tasks, at the limit; task is NULL
--   queue_full     p_queue_full: the caller found the queue at its cap; task is NULL
CREATE FUNCTION create_export_task(
    p_id uuid,
    p_owner bigint,
    p_type text,
    p_format text,
    p_params jsonb,
    p_idempotency_key text,
    p_request_hash text,
    p_max_active integer,
    p_queue_full boolean,
    OUT outcome text,
    OUT active bigint,
    OUT task export_tasks
)
LANGUAGE plpgsql AS $$
BEGIN
    -- Creates of one account are serialised so its count of unfinished tasks is exact. Each
    -- statement below takes a fresh snapshot (read committed), so it sees what the previous
    -- holder of the lock committed.
    PERFORM pg_advisory_xact_lock(hashtextextended('export_tasks:' || p_owner, 0));

    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO task FROM export_tasks
        WHERE created_by_id = p_owner AND idempotency_key = p_idempotency_key;
        IF FOUND THEN
            IF task.request_hash IS DISTINCT FROM p_request_hash THEN
                outcome := 'key_conflict';
                task := NULL;
            ELSE
                outcome := 'found';
            END IF;
            RETURN;
        END IF;
    END IF;

    SELECT * INTO task FROM export_tasks
    WHERE created_by_id = p_owner AND type = p_type AND format = p_format AND params = p_params
      AND status IN ('pending', 'running');
    IF FOUND THEN
        outcome := 'found';
        RETURN;
    END IF;

    SELECT count(*) INTO active FROM export_tasks
    WHERE created_by_id = p_owner AND status IN ('pending', 'running');
    IF active >= p_max_active THEN
        outcome := 'quota';
        RETURN;
    END IF;

    -- Known before the call (the queue's length in Redis, O(1)), and applied here so that a
    -- request that finds its task above is still answered with it while the queue is full.
    IF p_queue_full THEN
        outcome := 'queue_full';
        RETURN;
    END IF;

    INSERT INTO export_tasks
        (id, type, format, params, created_by_id, idempotency_key, request_hash,
         enqueue_count, enqueued_at)
    VALUES (p_id, p_type, p_format, p_params, p_owner, p_idempotency_key, p_request_hash,
            1, now())
    RETURNING * INTO task;
    outcome := 'created';
END;
$$;
