-- Who this database's deployment is. Its files are kept in a directory named for it, so two
-- deployments sharing one storage directory never take each other's files for orphans.
CREATE TABLE deployment (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- One row only: the identity is the database's, not a process's.
    one_row    boolean NOT NULL DEFAULT true UNIQUE CHECK (one_row)
);

INSERT INTO deployment DEFAULT VALUES;
