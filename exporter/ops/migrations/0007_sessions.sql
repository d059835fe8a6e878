-- The pages' sign-ins. A session cookie names its row (the token's `sid` claim), and the API
-- reads the row on every cookie request, so deleting it ends the session at once in every API
-- process: signing out deletes one row.
--
-- Disabling, locking or re-keying an account ends all its sessions here, in the database, so an
-- admin backend that updates `accounts` directly ends them too. Rows are deleted, not flagged:
-- setting the account active again brings no old cookie back.

CREATE TABLE sessions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX sessions_account_id_idx ON sessions (account_id);

CREATE FUNCTION end_sessions_of_account() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sessions WHERE account_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER accounts_end_sessions
AFTER UPDATE OF status, password_hash ON accounts
FOR EACH ROW
WHEN (NEW.status <> 'active' OR NEW.password_hash IS DISTINCT FROM OLD.password_hash)
EXECUTE FUNCTION end_sessions_of_account();
