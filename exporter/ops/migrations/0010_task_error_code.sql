-- Why a task failed, as a stable code and the values its message names (the row limit, the
-- seconds of a deadline), so that a page says it in its reader's language; `error` keeps the
-- English text for API clients. Failures recorded before this migration have no code.
ALTER TABLE export_tasks
    ADD COLUMN error_code   text,
    ADD COLUMN error_params jsonb;

-- The task list shows the two next to `error`, in TaskOut's order (see migration 0006).
CREATE OR REPLACE FUNCTION export_task_page(
    p_owner bigint, p_status text, p_type text, p_page integer, p_page_size integer
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
           (SELECT coalesce(sum(n), 0) FROM export_task_counts
            WHERE owner_id = p_owner
              AND (p_status IS NULL OR status = p_status)
              AND (p_type IS NULL OR type = p_type))
    INTO v_known, v_total;
    IF NOT v_known THEN
        RETURN NULL;
    END IF;
    IF p_status IS NULL THEN
        v_ids := ARRAY(
            SELECT id FROM export_tasks
            WHERE created_by_id = p_owner AND (p_type IS NULL OR type = p_type)
            ORDER BY created_at DESC, id DESC
            LIMIT p_page_size OFFSET v_offset
        );
    ELSE
        v_ids := ARRAY(
            SELECT id FROM export_tasks
            WHERE created_by_id = p_owner AND status = p_status
              AND (p_type IS NULL OR type = p_type)
            ORDER BY created_at DESC, id DESC
            LIMIT p_page_size OFFSET v_offset
        );
    END IF;
    -- Each task as TaskOut shows it: the file's path on the server stays private, and the
    -- history is only in a single task's own answer.
    SELECT json_agg(task ORDER BY task.created_at DESC, task.id DESC) INTO v_items
    FROM (
        SELECT id, type, format, status, params, file_name, file_size, row_count, rows_done,
               rows_total, error, error_code, error_params, created_at, started_at, finished_at, attempts,
               cancel_requested, status_note,
               CASE WHEN status = 'completed'
                    THEN '/api/export-tasks/' || id || '/download' END AS download_url,
               NULL AS history
        FROM export_tasks
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
