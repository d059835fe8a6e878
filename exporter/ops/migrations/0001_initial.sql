-- Accounts and roles of the admin back office, and the export tasks themselves.

CREATE TABLE roles (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    permissions text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id            bigserial PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    nickname      text,
    email         text,
    phone         text,
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'disabled', 'locked')),
    role_id       bigint REFERENCES roles (id) ON DELETE SET NULL,
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

CREATE INDEX accounts_role_id_idx ON accounts (role_id);
CREATE INDEX accounts_created_at_idx ON accounts (created_at);

CREATE TABLE export_tasks (
    id            uuid PRIMARY KEY,
    type          text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled',
                                    'expired')),
    format        text NOT NULL CHECK (format IN ('xlsx', 'csv')),
    params        jsonb NOT NULL DEFAULT '{}',
    file_name     text,
    file_path     text,
    file_size     bigint,
    row_count     bigint,
    rows_done     bigint NOT NULL DEFAULT 0,
    rows_total    bigint,
    error         text,
    created_by_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at    timestamptz,
    finished_at   timestamptz,
    attempts      integer NOT NULL DEFAULT 0
);

-- "My tasks, newest first", with and without a status filter.
CREATE INDEX export_tasks_owner_created_idx
    ON export_tasks (created_by_id, created_at DESC, id DESC);
CREATE INDEX export_tasks_owner_status_created_idx
    ON export_tasks (created_by_id, status, created_at DESC, id DESC);
-- Workers and sweepers look for the few unfinished tasks.
CREATE INDEX export_tasks_unfinished_idx
    ON export_tasks (status, created_at) WHERE status IN ('pending', 'running');
