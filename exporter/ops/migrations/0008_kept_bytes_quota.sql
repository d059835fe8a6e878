-- A cap on the bytes of files an account keeps. The active-task quota counts only unfinished
-- tasks, so one account could fill the disk with finished files kept for the retention time.
-- The bytes are kept next to the counts of migration 0005, by the same trigger, so that a
-- create sums a handful of rows instead of reading every task of the owner.

ALTER TABLE export_task_counts ADD COLUMN file_bytes bigint NOT NULL DEFAULT 0;

-- Writes wait while the sums are filled, so no file is counted twice or missed.
LOCK TABLE export_tasks IN SHARE ROW EXCLUSIVE MODE;

UPDATE export_task_counts AS counts
SET file_bytes = sums.file_bytes
FROM (SELECT created_by_id, status, type, sum(file_size) AS file_bytes
      FROM export_tasks WHERE file_size IS NOT NULL GROUP BY 1, 2, 3) AS sums
WHERE (counts.owner_id, counts.status, counts.type) = (sums.created_by_id, sums.status, sums.type);

DROP FUNCTION add_export_task_count(bigint, text, text, integer);

CREATE FUNCTION add_export_task_count(
    p_owner bigint, p_status text, p_type text, p_delta integer, p_bytes bigint
)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO export_task_counts AS counts (owner_id, status, type, n, file_bytes)
    VALUES (p_owner, p_status, p_type, p_delta, p_bytes)
    ON CONFLICT (owner_id, status, type)
    DO UPDATE SET n = counts.n + p_delta, file_bytes = counts.file_bytes + p_bytes;
$$;

CREATE OR REPLACE FUNCTION count_export_task_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM add_export_task_count(
            NEW.created_by_id, NEW.status, NEW.type, 1, coalesce(NEW.file_size, 0));
    ELSIF TG_OP = 'DELETE' THEN
        -- Only an update, never an insert: when an account is deleted, its counts may be gone
        -- before the cascade reaches its tasks.
        UPDATE export_task_counts
        SET n = n - 1, file_bytes = file_bytes - coalesce(OLD.file_size, 0)
        WHERE owner_id = OLD.created_by_id AND status = OLD.status AND type = OLD.type;
    -- A change moves one task (and its file's bytes) between two counts, locked in key order
    -- so that two changes (a claim, a sweep) cannot each hold the count the other waits for.
    ELSIF (OLD.created_by_id, OLD.status, OLD.type) < (NEW.created_by_id, NEW.status, NEW.type)
    THEN
        PERFORM add_export_task_count(
            OLD.created_by_id, OLD.status, OLD.type, -1, -coalesce(OLD.file_size, 0));
        PERFORM add_export_task_count(
            NEW.created_by_id, NEW.status, NEW.type, 1, coalesce(NEW.file_size, 0));
    ELSE
        PERFORM add_export_task_count(
            NEW.created_by_id, NEW.status, NEW.type, 1, coalesce(NEW.file_size, 0));
        PERFORM add_export_task_count(
            OLD.created_by_id, OLD.status, OLD.type, -1, -coalesce(OLD.file_size, 0));
    END IF;
    RETURN NULL;
END
$$;

-- A file's size is set with the status that completes its task today; counted also when it
-- changes alone, so that the sum cannot drift.
DROP TRIGGER export_tasks_count_update ON export_tasks;
CREATE TRIGGER export_tasks_count_update
    AFTER UPDATE OF status, type, created_by_id, file_size ON export_tasks
    FOR EACH ROW
    WHEN ((OLD.status, OLD.type, OLD.created_by_id, OLD.file_size)
          IS DISTINCT FROM (NEW.status, NEW.type, NEW.created_by_id, NEW.file_size))
    EXECUTE FUNCTION count_export_task_change();

-- As in migration 0004, with the kept-bytes check: the owner's completed files, whose bytes are
-- on disk until they expire or are deleted, must total less than p_max_kept_bytes.
--
-- outcome is one of:
--   created        task is the new task
--   found          task is the one this request already stands for (same key or same request)
--   key_conflict   the idempotency key was used with another request; task is NULL
--   quota          the owner has `active` unfinished tasks, at the limit; task is NULL
--   kept_bytes     the owner's files take `kept` bytes, at or over the limit; task is NULL
--   queue_full     p_queue_full: the caller found the queue at its cap; task is NULL
DROP FUNCTION create_export_task(uuid, bigint, text, text, jsonb, text, text, integer, boolean);

CREATE FUNCTION create_export_task(
    p_id uuid,
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

    SELECT coalesce(sum(file_bytes), 0) INTO kept FROM export_task_counts
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

    INSERT INTO export_tasks
        (id, type, format, params, created_by_id, idempotency_key, request_hash,
         enqueue_count, enqueued_at)
    VALUES (p_id, p_type, p_format, p_params, p_owner, p_idempotency_key, p_request_hash,
            1, now())
    RETURNING * INTO task;
    outcome := 'created';
END;
$$;
