-- The current state: one row per object, its body as JSON (Secrets encrypted).
CREATE TABLE objects (
    kind      TEXT    NOT NULL,
    namespace TEXT    NOT NULL, -- '' for cluster-scoped kinds
    name      TEXT    NOT NULL,
    revision  INTEGER NOT NULL, -- the object's resourceVersion
    body      BLOB    NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;

-- The ordered log of changes: one row per revision. Watches replay it; compaction trims it.
CREATE TABLE log (
    revision  INTEGER PRIMARY KEY,
    kind      TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    event     TEXT    NOT NULL, -- ADDED, MODIFIED, DELETED
    body      BLOB    NOT NULL
);

-- Counters: 'revision' (last assigned), 'compacted' (log rows at or below it are gone).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);
