-- Timestamps are microseconds since the Unix epoch (UTC); ids are 16-byte UUID blobs.
CREATE TABLE workspaces (
    id          BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL UNIQUE,
    used_bytes  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE files (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces(id),
    name          TEXT NOT NULL,
    path          TEXT NOT NULL,
    storage_path  TEXT NOT NULL,
    mime_type     TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL,
    checksum      TEXT NOT NULL,
    is_deleted    INTEGER NOT NULL DEFAULT 0,
    deleted_at    INTEGER,
    original_path TEXT,
    metadata      TEXT NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- At most one live file per path: the race-proof guard of SPEC §1.
CREATE UNIQUE INDEX files_live_path ON files (workspace_id, path) WHERE is_deleted = 0;
-- Listing order, and keyset pagination.
CREATE INDEX files_live_recent ON files (workspace_id, created_at DESC, id DESC) WHERE is_deleted = 0;
CREATE INDEX files_trash ON files (workspace_id, created_at DESC, id DESC) WHERE is_deleted = 1;
CREATE INDEX files_trash_expiry ON files (deleted_at) WHERE is_deleted = 1;
CREATE INDEX files_storage_path ON files (storage_path);
