CREATE TABLE workspaces (
    id          UUID PRIMARY KEY,
    user_id     TEXT NOT NULL UNIQUE,
    used_bytes  BIGINT NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE files (
    id            UUID PRIMARY KEY,
    workspace_id  UUID NOT NULL REFERENCES workspaces(id),
    name          TEXT NOT NULL,
    -- Byte order ("C"), so a folder prefix is an index range whatever the database locale.
    path          TEXT COLLATE "C" NOT NULL,
    storage_path  TEXT COLLATE "C" NOT NULL,
    mime_type     TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    checksum      TEXT NOT NULL,
    is_deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    deleted_at    TIMESTAMPTZ,
    original_path TEXT COLLATE "C",
    metadata      JSONB NOT NULL DEFAULT '{}',
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- At most one live file per path: the race-proof guard of SPEC §1.
CREATE UNIQUE INDEX files_live_path ON files (workspace_id, path) WHERE NOT is_deleted;
-- Listing order, and keyset pagination.
CREATE INDEX files_live_recent ON files (workspace_id, created_at DESC, id DESC) WHERE NOT is_deleted;
CREATE INDEX files_trash ON files (workspace_id, created_at DESC, id DESC) WHERE is_deleted;
CREATE INDEX files_trash_expiry ON files (deleted_at) WHERE is_deleted;
CREATE INDEX files_storage_path ON files (storage_path);
