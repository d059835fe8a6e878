-- The file formats a task may have: a table, not a CHECK list, so that a new format module
-- reaches the database without a migration. `exporter migrate` adds the names of the formats
-- it knows (exporter.exports.formats.FORMATS) after the migrations; the names existing tasks
-- have are added here, so that every row satisfies the key when it is made.
CREATE TABLE file_formats (
    name text PRIMARY KEY
);

INSERT INTO file_formats (name) SELECT DISTINCT format FROM export_tasks;

ALTER TABLE export_tasks
    DROP CONSTRAINT export_tasks_format_check,
    ADD CONSTRAINT export_tasks_format_fkey FOREIGN KEY (format) REFERENCES file_formats (name);
