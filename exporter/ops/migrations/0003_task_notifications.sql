-- Every change a user can see in an export task is announced on one channel, so the API can push
-- it to the owner's open pages without the worker knowing about them. The payload names the task
-- and its owner only: the API re-reads the task for that owner, and nothing else travels.

CREATE FUNCTION notify_export_task_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    task export_tasks;
BEGIN
    IF TG_OP = 'DELETE' THEN
        task := OLD;
    ELSE
        task := NEW;
    END IF;
    PERFORM pg_notify(
        'export_task_changes',
        json_build_object('id', task.id, 'owner', task.created_by_id, 'op', lower(TG_OP))::text
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER export_tasks_notify_insert_delete
    AFTER INSERT OR DELETE ON export_tasks
    FOR EACH ROW EXECUTE FUNCTION notify_export_task_change();

-- Bookkeeping a user never sees (a worker renewing its lease, a re-enqueue) announces nothing.
CREATE TRIGGER export_tasks_notify_update
    AFTER UPDATE ON export_tasks
    FOR EACH ROW
    WHEN ((OLD.status, OLD.rows_done, OLD.rows_total, OLD.error, OLD.file_name, OLD.file_size,
           OLD.row_count, OLD.started_at, OLD.finished_at, OLD.attempts, OLD.cancel_requested,
           OLD.status_note)
          IS DISTINCT FROM
          (NEW.status, NEW.rows_done, NEW.rows_total, NEW.error, NEW.file_name, NEW.file_size,
           NEW.row_count, NEW.started_at, NEW.finished_at, NEW.attempts, NEW.cancel_requested,
           NEW.status_note))
    EXECUTE FUNCTION notify_export_task_change();
