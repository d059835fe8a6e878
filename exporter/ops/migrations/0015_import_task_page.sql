-- A page of one owner's imports as the API lists them, written here as task_page (migration
-- 0013) writes exports, and with its arguments: each task as ImportTaskOut shows it, field by
-- field, and a test compares each field with what ImportTaskOut makes of the same task. The
-- file shown is the upload; the file the task made, if any, is its report of rejected rows.
CREATE FUNCTION import_task_page(
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
               cancel_requested, status_note, NULL AS history
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
