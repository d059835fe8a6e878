-- The audit trail: who downloaded, applied, cancelled, retried, deleted or signed in, when, from
-- where, and how it ended. One row per action, written by the API (and by the worker for an
-- import's rows being written, in the transaction that writes them).
--
-- Rows are append-only. No foreign key: an account or a task that is deleted keeps its rows
-- (a cascade would have to delete or update them), so a row copies the task's kind and type.
CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    action      text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('ok', 'refused', 'aborted')),
    error_code  text,
    account_id  bigint,
    -- The username tried, for a sign-in (whether or not it names an account).
    username    text,
    address     text,
    user_agent  text,
    task_id     uuid,
    task_kind   text,
    task_type   text,
    -- A download's body bytes handed to the connection; NULL when not known (a redirect).
    bytes_sent  bigint,
    request_id  text,
    detail      jsonb NOT NULL DEFAULT '{}'
);

-- The listing pages by id, newest first, within one account, one task or a time range.
CREATE INDEX audit_events_account_idx ON audit_events (account_id, id);
CREATE INDEX audit_events_task_idx ON audit_events (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX audit_events_at_idx ON audit_events (at);

-- What the database holds the application to, whatever its code does:
--   * an INSERT gets the database's clock, never a time the caller chose (no back-dating);
--   * every UPDATE and every TRUNCATE is refused;
--   * a DELETE is refused unless prune_audit_events() runs it, for rows older than its cutoff,
--     which is at least one day back.
-- The function says which rows may go through a setting local to its transaction. Any role can
-- set that setting itself, so this stops mistakes and code paths that should not delete, not
-- a holder of the table owner's credentials who means to delete rows older than a day; and an
-- owner or superuser can disable triggers (ALTER TABLE … DISABLE TRIGGER, or
-- session_replication_role). Against those, run the service as a role that does not own the
-- tables, granted INSERT and SELECT on audit_events and EXECUTE on prune_audit_events only
-- (docs/configuration.md): it then cannot UPDATE, DELETE or TRUNCATE at all, and the function,
-- SECURITY DEFINER, deletes for it.
CREATE FUNCTION audit_events_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.at := clock_timestamp();
    RETURN NEW;
END
$$;

CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_before timestamptz :=
        nullif(current_setting('exporter.audit_prune_before', true), '')::timestamptz;
BEGIN
    IF TG_OP = 'DELETE' AND v_before IS NOT NULL AND v_before <= now() - interval '1 day'
       AND OLD.at < v_before THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'old events are removed by prune_audit_events() alone';
END
$$;

CREATE TRIGGER audit_events_stamp
    BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_stamp();

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();

-- The retention path (the janitor, EXPORTER_AUDIT_RETENTION_DAYS): removes the events older
-- than p_keep_days days, at least one, and returns how many.
CREATE FUNCTION prune_audit_events(p_keep_days float8) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    v_before timestamptz;
    v_deleted bigint;
BEGIN
    IF p_keep_days IS NULL OR p_keep_days < 1 THEN
        RAISE EXCEPTION 'audit events are kept at least 1 day, not %', p_keep_days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_before := now() - make_interval(secs => p_keep_days * 86400);
    PERFORM set_config('exporter.audit_prune_before', v_before::text, true);
    DELETE FROM audit_events WHERE at < v_before;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    PERFORM set_config('exporter.audit_prune_before', '', true);
    RETURN v_deleted;
END
$$;

-- A SECURITY DEFINER function is callable by everyone unless revoked.
REVOKE ALL ON FUNCTION prune_audit_events(float8) FROM PUBLIC;
REVOKE ALL ON audit_events FROM PUBLIC;

-- A task's downloads, counted in the statement that records each one (a page of tasks reads
-- two columns rather than counting events); changes no NOTIFY or history trigger watches.
ALTER TABLE tasks
    ADD COLUMN download_count integer NOT NULL DEFAULT 0,
    ADD COLUMN last_download_at timestamptz;

-- The pages of tasks (as migration 0019 left them) with the two counters, as TaskOut and
-- ImportTaskOut show them.
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
               notify_url, download_count, last_download_at, NULL AS history,
               NULL AS webhooks
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
               cancel_requested, status_note, notify_url, download_count, last_download_at,
               NULL AS history, NULL AS webhooks
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
