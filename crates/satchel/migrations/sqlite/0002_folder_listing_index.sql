-- Folder listings of small folders in large workspaces: the ids of one page are picked from
-- this index alone (path range, then a sort of the small (created_at, id) entries), and only
-- that page's rows are read. See `SqliteCatalog::fetch_page`.
CREATE INDEX files_live_path_order ON files (workspace_id, path, created_at, id) WHERE is_deleted = 0;
