//! SQLite catalog: the embedded default. WAL mode; every write transaction starts with
//! `BEGIN IMMEDIATE` so concurrent writers queue on the write lock (with `busy_timeout`) instead
//! of failing with `SQLITE_BUSY` when a deferred transaction tries to upgrade.

use super::{
    deleted_path, folder_upper_bound, quota_error, Catalog, CatalogError, CatalogResult, Committed,
    ListQuery, NewFile, Page, Precondition,
};
use crate::domain::{FileRecord, FolderPath, VirtualPath, Workspace};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

const FILE_COLUMNS: &str = "id, workspace_id, name, path, storage_path, mime_type, size_bytes, \
     checksum, is_deleted, deleted_at, original_path, metadata, created_at, updated_at";

/// Folders with at most this many live files are listed through `files_live_path_order`.
const NARROW_FOLDER_ROWS: u64 = 50_000;

pub struct SqliteCatalog {
    pool: SqlitePool,
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!("../../migrations/sqlite/0001_init.sql")),
            false,
        ),
        Migration::new(
            2,
            "folder listing index".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!(
                "../../migrations/sqlite/0002_folder_listing_index.sql"
            )),
            false,
        ),
    ])
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(v: i64) -> CatalogResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| CatalogError::Database(format!("timestamp out of range: {v}")))
}

fn file_from_row(row: &SqliteRow) -> CatalogResult<FileRecord> {
    let metadata: String = row.try_get("metadata")?;
    let metadata = match serde_json::from_str(&metadata) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            return Err(CatalogError::Database(
                "metadata is not a JSON object".into(),
            ))
        }
    };
    Ok(FileRecord {
        id: row.try_get("id")?,
        workspace_id: row.try_get("workspace_id")?,
        name: row.try_get("name")?,
        path: row.try_get("path")?,
        storage_path: row.try_get("storage_path")?,
        mime_type: row.try_get("mime_type")?,
        size_bytes: row.try_get::<i64, _>("size_bytes")?.max(0) as u64,
        checksum: row.try_get("checksum")?,
        is_deleted: row.try_get::<i64, _>("is_deleted")? != 0,
        deleted_at: row
            .try_get::<Option<i64>, _>("deleted_at")?
            .map(from_micros)
            .transpose()?,
        original_path: row.try_get("original_path")?,
        metadata,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}

fn workspace_from_row(row: &SqliteRow) -> CatalogResult<Workspace> {
    Ok(Workspace {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        used_bytes: row.try_get::<i64, _>("used_bytes")?.max(0) as u64,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}

fn metadata_text(metadata: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::Value::Object(metadata.clone()).to_string()
}

/// Adds `delta` to the workspace's `used_bytes`, refusing (inside the caller's transaction) an
/// increase that would pass `limit_bytes` (0 = unlimited). Decreases always pass.
async fn charge(
    conn: &mut SqliteConnection,
    workspace_id: Uuid,
    delta: i64,
    limit_bytes: u64,
    now: DateTime<Utc>,
) -> CatalogResult<()> {
    let limit = i64::try_from(limit_bytes).unwrap_or(i64::MAX);
    let updated = sqlx::query(
        "UPDATE workspaces SET used_bytes = used_bytes + ?2, updated_at = ?4 \
         WHERE id = ?1 AND (?2 <= 0 OR ?3 = 0 OR used_bytes + ?2 <= ?3) RETURNING used_bytes",
    )
    .bind(workspace_id)
    .bind(delta)
    .bind(limit)
    .bind(micros(now))
    .fetch_optional(&mut *conn)
    .await?;
    if updated.is_some() {
        return Ok(());
    }
    let used: i64 = sqlx::query_scalar("SELECT used_bytes FROM workspaces WHERE id = ?1")
        .bind(workspace_id)
        .fetch_one(&mut *conn)
        .await?;
    Err(quota_error(used, limit_bytes))
}

async fn insert_live(conn: &mut SqliteConnection, file: &NewFile) -> CatalogResult<FileRecord> {
    let metadata = file.metadata.clone().unwrap_or_default();
    let sql = format!(
        "INSERT INTO files (id, workspace_id, name, path, storage_path, mime_type, size_bytes, \
         checksum, is_deleted, deleted_at, original_path, metadata, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, NULL, NULL, ?9, ?10, ?10) RETURNING {FILE_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(file.id)
        .bind(file.workspace_id)
        .bind(&file.name)
        .bind(file.path.as_str())
        .bind(&file.storage_path)
        .bind(&file.mime_type)
        .bind(file.size_bytes as i64)
        .bind(&file.checksum)
        .bind(metadata_text(&metadata))
        .bind(micros(file.now))
        .fetch_one(&mut *conn)
        .await?;
    file_from_row(&row)
}

async fn live_at_path(
    conn: &mut SqliteConnection,
    workspace_id: Uuid,
    path: &str,
) -> CatalogResult<Option<FileRecord>> {
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE workspace_id = ?1 AND path = ?2 AND is_deleted = 0"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(workspace_id)
        .bind(path)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(file_from_row)
        .transpose()
}

/// Marks one live file deleted inside the caller's transaction; returns the deleted record.
async fn mark_deleted(
    conn: &mut SqliteConnection,
    workspace_id: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> CatalogResult<FileRecord> {
    let current = sqlx::query(
        "SELECT path FROM files WHERE id = ?1 AND workspace_id = ?2 AND is_deleted = 0",
    )
    .bind(id)
    .bind(workspace_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(CatalogError::NotFound)?;
    let path: String = current.try_get("path")?;
    let sql = format!(
        "UPDATE files SET is_deleted = 1, deleted_at = ?2, original_path = path, path = ?3, \
         updated_at = ?2 WHERE id = ?1 RETURNING {FILE_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(micros(now))
        .bind(deleted_path(&path, now, id))
        .fetch_one(&mut *conn)
        .await?;
    let record = file_from_row(&row)?;
    charge(conn, workspace_id, -(record.size_bytes as i64), 0, now).await?;
    Ok(record)
}

/// Appends the shared WHERE clauses of listings and counts.
fn push_filters(
    qb: &mut QueryBuilder<Sqlite>,
    path_column: &str,
    folder: &FolderPath,
    name_contains: Option<&str>,
) {
    if !folder.is_root() {
        qb.push(format_args!(" AND {path_column} >= "))
            .push_bind(folder.as_prefix().to_owned())
            .push(format_args!(" AND {path_column} < "))
            .push_bind(folder_upper_bound(folder));
    }
    if let Some(needle) = name_contains {
        // SQLite's lower() folds ASCII only; fold the needle the same way.
        qb.push(" AND instr(lower(name), ")
            .push_bind(needle.to_ascii_lowercase())
            .push(") > 0");
    }
}

fn push_page(qb: &mut QueryBuilder<Sqlite>, query: &ListQuery) {
    if let Page::After(cursor) = &query.page {
        qb.push(" AND (created_at, id) < (")
            .push_bind(micros(cursor.created_at))
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
    qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(query.limit));
    if let Page::Offset(offset) = query.page {
        qb.push(" OFFSET ").push_bind(offset as i64);
    }
}

impl SqliteCatalog {
    pub async fn connect(database_url: &str) -> CatalogResult<Self> {
        let options = SqliteConnectOptions::from_str(database_url)
            .map_err(|e| CatalogError::Database(format!("database_url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    CatalogError::Database(format!("database_url: cannot create {dir:?}: {e}"))
                })?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| CatalogError::Database(format!("migration failed: {e}")))?;
        Ok(SqliteCatalog { pool })
    }

    async fn begin_write(&self) -> CatalogResult<sqlx::Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn fetch_page(
        &self,
        workspace_id: Uuid,
        deleted: bool,
        query: &ListQuery,
    ) -> CatalogResult<Vec<FileRecord>> {
        let path_column = if deleted { "original_path" } else { "path" };
        // SQLite's planner sorts a whole folder's rows for a folder listing. For a folder that
        // is small next to its workspace, picking the page's ids from the covering
        // `files_live_path_order` index first and reading only those rows is ~8× faster at
        // 1,000,000 files (1.9 ms vs 15.6 ms); for a folder holding most of the workspace the
        // recency index is the fast way, so the folder's size (an index-only count) decides.
        let narrow = !deleted
            && !query.folder.is_root()
            && self.count_files(workspace_id, &query.folder, None).await? <= NARROW_FOLDER_ROWS;
        let mut qb = QueryBuilder::<Sqlite>::new(if narrow {
            format!(
                "SELECT {FILE_COLUMNS} FROM files WHERE id IN (SELECT id FROM files \
                 INDEXED BY files_live_path_order WHERE workspace_id = "
            )
        } else {
            format!("SELECT {FILE_COLUMNS} FROM files WHERE workspace_id = ")
        });
        qb.push_bind(workspace_id).push(if deleted {
            " AND is_deleted = 1"
        } else {
            " AND is_deleted = 0"
        });
        push_filters(
            &mut qb,
            path_column,
            &query.folder,
            query.name_contains.as_deref(),
        );
        push_page(&mut qb, query);
        if narrow {
            qb.push(") ORDER BY created_at DESC, id DESC");
        }
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(file_from_row).collect()
    }
}

#[async_trait]
impl Catalog for SqliteCatalog {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> CatalogResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn get_or_create_workspace(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> CatalogResult<Workspace> {
        // The common case is a read; only a user's first request writes.
        let existing = sqlx::query(
            "SELECT id, user_id, used_bytes, created_at, updated_at FROM workspaces \
             WHERE user_id = ?1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = existing {
            return workspace_from_row(&row);
        }
        // Upsert whose no-op update makes RETURNING yield the existing row on conflict, so
        // concurrent first requests all get the one workspace and none gets an error.
        let row = sqlx::query(
            "INSERT INTO workspaces (id, user_id, used_bytes, created_at, updated_at) \
             VALUES (?1, ?2, 0, ?3, ?3) \
             ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id \
             RETURNING id, user_id, used_bytes, created_at, updated_at",
        )
        .bind(Uuid::new_v4())
        .bind(user_id)
        .bind(micros(now))
        .fetch_one(&self.pool)
        .await?;
        workspace_from_row(&row)
    }

    async fn get_workspace(&self, workspace_id: Uuid) -> CatalogResult<Option<Workspace>> {
        sqlx::query(
            "SELECT id, user_id, used_bytes, created_at, updated_at FROM workspaces WHERE id = ?1",
        )
        .bind(workspace_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(workspace_from_row)
        .transpose()
    }

    async fn live_file_count(&self, workspace_id: Uuid) -> CatalogResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM files WHERE workspace_id = ?1 AND is_deleted = 0",
        )
        .bind(workspace_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn insert_file(&self, file: &NewFile, limit_bytes: u64) -> CatalogResult<FileRecord> {
        let mut tx = self.begin_write().await?;
        let record = insert_live(&mut tx, file).await?;
        charge(
            &mut tx,
            file.workspace_id,
            file.size_bytes as i64,
            limit_bytes,
            file.now,
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn overwrite_file(
        &self,
        file: &NewFile,
        precondition: &Precondition,
        limit_bytes: u64,
    ) -> CatalogResult<Committed> {
        let mut tx = self.begin_write().await?;
        let existing = live_at_path(&mut tx, file.workspace_id, file.path.as_str()).await?;
        let old = match (existing, precondition) {
            (None, Precondition::None) => {
                let record = insert_live(&mut tx, file).await?;
                charge(
                    &mut tx,
                    file.workspace_id,
                    file.size_bytes as i64,
                    limit_bytes,
                    file.now,
                )
                .await?;
                tx.commit().await?;
                return Ok(Committed {
                    record,
                    replaced: false,
                });
            }
            (None, _) => return Err(CatalogError::PreconditionFailed),
            (Some(old), Precondition::Checksum(c)) if &old.checksum != c => {
                return Err(CatalogError::PreconditionFailed)
            }
            (Some(old), _) => old,
        };
        let trash_id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO files (id, workspace_id, name, path, storage_path, mime_type, size_bytes, \
             checksum, is_deleted, deleted_at, original_path, metadata, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?11, ?12, ?9)",
        )
        .bind(trash_id)
        .bind(old.workspace_id)
        .bind(&old.name)
        .bind(deleted_path(&old.path, file.now, trash_id))
        .bind(&old.storage_path)
        .bind(&old.mime_type)
        .bind(old.size_bytes as i64)
        .bind(&old.checksum)
        .bind(micros(file.now))
        .bind(&old.path)
        .bind(metadata_text(&old.metadata))
        .bind(micros(old.created_at))
        .execute(&mut *tx)
        .await?;
        let sql = format!(
            "UPDATE files SET name = ?2, storage_path = ?3, mime_type = ?4, size_bytes = ?5, \
             checksum = ?6, metadata = coalesce(?7, metadata), updated_at = ?8 \
             WHERE id = ?1 RETURNING {FILE_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(old.id)
            .bind(&file.name)
            .bind(&file.storage_path)
            .bind(&file.mime_type)
            .bind(file.size_bytes as i64)
            .bind(&file.checksum)
            .bind(file.metadata.as_ref().map(metadata_text))
            .bind(micros(file.now))
            .fetch_one(&mut *tx)
            .await?;
        let record = file_from_row(&row)?;
        let delta = file.size_bytes as i64 - old.size_bytes as i64;
        charge(&mut tx, file.workspace_id, delta, limit_bytes, file.now).await?;
        tx.commit().await?;
        Ok(Committed {
            record,
            replaced: true,
        })
    }

    async fn get_file(&self, workspace_id: Uuid, id: Uuid) -> CatalogResult<Option<FileRecord>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE id = ?1 AND workspace_id = ?2 AND is_deleted = 0"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(workspace_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(file_from_row)
            .transpose()
    }

    async fn get_trashed(&self, workspace_id: Uuid, id: Uuid) -> CatalogResult<Option<FileRecord>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE id = ?1 AND workspace_id = ?2 AND is_deleted = 1"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(workspace_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(file_from_row)
            .transpose()
    }

    async fn set_metadata(
        &self,
        workspace_id: Uuid,
        id: Uuid,
        metadata: &serde_json::Map<String, serde_json::Value>,
        now: DateTime<Utc>,
    ) -> CatalogResult<FileRecord> {
        let sql = format!(
            "UPDATE files SET metadata = ?3, updated_at = ?4 \
             WHERE id = ?1 AND workspace_id = ?2 AND is_deleted = 0 RETURNING {FILE_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(workspace_id)
            .bind(metadata_text(metadata))
            .bind(micros(now))
            .fetch_optional(&self.pool)
            .await?
            .ok_or(CatalogError::NotFound)?;
        file_from_row(&row)
    }

    async fn get_file_by_storage_path(
        &self,
        workspace_id: Uuid,
        storage_path: &str,
    ) -> CatalogResult<Option<FileRecord>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files \
             WHERE storage_path = ?1 AND workspace_id = ?2 AND is_deleted = 0"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(storage_path)
            .bind(workspace_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(file_from_row)
            .transpose()
    }

    async fn get_file_by_path(
        &self,
        workspace_id: Uuid,
        path: &VirtualPath,
    ) -> CatalogResult<Option<FileRecord>> {
        let mut conn = self.pool.acquire().await?;
        live_at_path(&mut conn, workspace_id, path.as_str()).await
    }

    async fn list_files(
        &self,
        workspace_id: Uuid,
        query: &ListQuery,
    ) -> CatalogResult<Vec<FileRecord>> {
        self.fetch_page(workspace_id, false, query).await
    }

    async fn count_files(
        &self,
        workspace_id: Uuid,
        folder: &FolderPath,
        name_contains: Option<&str>,
    ) -> CatalogResult<u64> {
        let mut qb =
            QueryBuilder::<Sqlite>::new("SELECT count(*) FROM files WHERE workspace_id = ");
        qb.push_bind(workspace_id).push(" AND is_deleted = 0");
        push_filters(&mut qb, "path", folder, name_contains);
        let n: i64 = qb.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(n.max(0) as u64)
    }

    async fn soft_delete(
        &self,
        workspace_id: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> CatalogResult<FileRecord> {
        let mut tx = self.begin_write().await?;
        let record = mark_deleted(&mut tx, workspace_id, id, now).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn soft_delete_folder(
        &self,
        workspace_id: Uuid,
        folder: &FolderPath,
        now: DateTime<Utc>,
    ) -> CatalogResult<u64> {
        let mut tx = self.begin_write().await?;
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT id FROM files WHERE workspace_id = ");
        qb.push_bind(workspace_id).push(" AND is_deleted = 0");
        push_filters(&mut qb, "path", folder, None);
        let ids: Vec<Uuid> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
        for id in &ids {
            mark_deleted(&mut tx, workspace_id, *id, now).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    async fn list_trash(
        &self,
        workspace_id: Uuid,
        query: &ListQuery,
    ) -> CatalogResult<Vec<FileRecord>> {
        self.fetch_page(workspace_id, true, query).await
    }

    async fn restore(
        &self,
        workspace_id: Uuid,
        id: Uuid,
        path: &VirtualPath,
        limit_bytes: u64,
        now: DateTime<Utc>,
    ) -> CatalogResult<FileRecord> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE files SET is_deleted = 0, deleted_at = NULL, original_path = NULL, path = ?3, \
             updated_at = ?4 WHERE id = ?1 AND workspace_id = ?2 AND is_deleted = 1 \
             RETURNING {FILE_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(workspace_id)
            .bind(path.as_str())
            .bind(micros(now))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(CatalogError::NotFound)?;
        let record = file_from_row(&row)?;
        charge(
            &mut tx,
            workspace_id,
            record.size_bytes as i64,
            limit_bytes,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn expired_trash(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> CatalogResult<Vec<FileRecord>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE is_deleted = 1 AND deleted_at <= ?1 \
             ORDER BY deleted_at LIMIT ?2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(micros(before))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(file_from_row).collect()
    }

    async fn set_storage_path(&self, id: Uuid, old: &str, new: &str) -> CatalogResult<bool> {
        let done =
            sqlx::query("UPDATE files SET storage_path = ?3 WHERE id = ?1 AND storage_path = ?2")
                .bind(id)
                .bind(old)
                .bind(new)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_deleted(&self, id: Uuid) -> CatalogResult<()> {
        sqlx::query("DELETE FROM files WHERE id = ?1 AND is_deleted = 1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn storage_path_referenced(&self, storage_path: &str) -> CatalogResult<bool> {
        let found = sqlx::query("SELECT 1 FROM files WHERE storage_path = ?1 LIMIT 1")
            .bind(storage_path)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn all_records(&self, after: Option<Uuid>, limit: u32) -> CatalogResult<Vec<FileRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {FILE_COLUMNS} FROM files"));
        if let Some(after) = after {
            qb.push(" WHERE id > ").push_bind(after);
        }
        qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(file_from_row).collect()
    }
}
