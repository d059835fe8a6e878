-- How many tasks each owner has, by status and type, kept by the database itself. The task list
-- shows the total that matches its filters on every page; counting it from export_tasks read
-- every task of the owner each time (10,000 tasks: about a millisecond of the server per page).
-- Here it is a sum over a handful of rows.

CREATE TABLE export_task_counts (
    owner_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    status   text NOT NULL,
    type     text NOT NULL,
    n        bigint NOT NULL,
    PRIMARY KEY (owner_id, status, type)
);

-- Writes wait while the counts are filled, so no task is counted twice or missed.
LOCK TABLE export_tasks IN SHARE ROW EXCLUSIVE MODE;

INSERT INTO export_task_counts (owner_id, status, type, n)
SELECT created_by_id, status, type, count(*) FROM export_tasks GROUP BY 1, 2, 3;

CREATE FUNCTION add_export_task_count(p_owner bigint, p_status text, p_type text, p_delta integer)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO export_task_counts AS counts (owner_id, status, type, n)
    VALUES (p_owner, p_status, p_type, p_delta)
    ON CONFLICT (owner_id, status, type) DO UPDATE SET n = counts.n + p_delta;
$$;

CREATE FUNCTION count_export_task_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM add_export_task_count(NEW.created_by_id, NEW.status, NEW.type, 1);
    ELSIF TG_OP = 'DELETE' THEN
        -- Only an update, never an insert: when an account is deleted, its counts may be gone
        -- before the cascade reaches its tasks.
        UPDATE export_task_counts SET n = n - 1
        WHERE owner_id = OLD.created_by_id AND status = OLD.status AND type = OLD.type;
    -- A status change moves one task between two counts, locked in key order so that two
    -- changes (a claim, a sweep) cannot each hold the count the other waits for.
    ELSIF (OLD.created_by_id, OLD.status, OLD.type) < (NEW.created_by_id, NEW.status, NEW.type)
    THEN
        PERFORM add_export_task_count(OLD.created_by_id, OLD.status, OLD.type, -1);
        PERFORM add_export_task_count(NEW.created_by_id, NEW.status, NEW.type, 1);
    ELSE
        PERFORM add_export_task_count(NEW.created_by_id, NEW.status, NEW.type, 1);
        PERFORM add_export_task_count(OLD.created_by_id, OLD.status, OLD.type, -1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER export_tasks_count_insert_delete
    AFTER INSERT OR DELETE ON export_tasks
    FOR EACH ROW EXECUTE FUNCTION count_export_task_change();

CREATE TRIGGER export_tasks_count_update
    AFTER UPDATE OF status, type, created_by_id ON export_tasks
    FOR EACH ROW
    WHEN ((OLD.status, OLD.type, OLD.created_by_id)
          IS DISTINCT FROM (NEW.status, NEW.type, NEW.created_by_id))
    EXECUTE FUNCTION count_export_task_change();
