-- Imports from a database of the Node identity service (`import-node-db`): which source, and
-- whether the import finished. A database holding one accepts the same import again (it is
-- idempotent); one holding other data of its own is refused without --force.
CREATE TABLE node_imports (
    source TEXT PRIMARY KEY NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT
);
