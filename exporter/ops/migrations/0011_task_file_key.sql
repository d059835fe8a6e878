-- A finished task keeps its file's storage key (`<deployment id>/<task id>.xlsx`) instead of
-- its absolute path, so that rows stay valid wherever the storage lives (another directory,
-- an object store). The storage directory is not known here, but a stored path ends the same
-- way as its key: `<storage dir>/<deployment id>/<name>` becomes `<deployment id>/<name>`, and
-- a file kept directly in the storage directory, before deployments had their own folder,
-- keeps the key `<name>`.
ALTER TABLE export_tasks RENAME COLUMN file_path TO file_key;

UPDATE export_tasks AS task
SET file_key = CASE
        WHEN substring(task.file_key FROM '([^/]+)/[^/]+$') = deployment.id::text
            THEN deployment.id::text || '/' || substring(task.file_key FROM '[^/]+$')
        ELSE substring(task.file_key FROM '[^/]+$')
    END
FROM deployment
WHERE task.file_key LIKE '/%';
