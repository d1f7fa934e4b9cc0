-- The Raft log of the cluster's quorum (openraft): one row per entry, its body as JSON.
CREATE TABLE raft_log (
    idx   INTEGER PRIMARY KEY,
    term  INTEGER NOT NULL,
    entry BLOB    NOT NULL
);

-- Raft's small state as JSON: 'vote', 'committed', 'purged' (the log's side), and 'applied',
-- 'membership' (the state machine's side, written in the same transaction as the objects an
-- entry changes), 'snapshot' (the last snapshot made or installed).
CREATE TABLE raft_state (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
