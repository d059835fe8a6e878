"""The audit trail: append-only rows of who did what to which task, from where, and how it
ended (migration 0020 holds the table and what the database refuses)."""
