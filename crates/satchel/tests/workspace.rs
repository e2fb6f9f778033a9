//! The WorkspaceManager behaviour suite: every test body runs on SQLite and on PostgreSQL, and
//! selected bodies also on GCS and S3 (`on_cloud_stores!`, SQLite catalog).

mod common;

use bytes::Bytes;
use common::{Backend, TestEnv};
use futures::StreamExt;
use satchel::{ErrorCode, ListOptions, OnConflict, WorkspaceManager, WriteOptions};
use std::collections::HashSet;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

async fn env(backend: Backend) -> Option<TestEnv> {
    TestEnv::new(backend, &[]).await
}

async fn ws(env: &TestEnv, user: &str) -> WorkspaceManager {
    env.satchel.workspace(user, None).await.expect("workspace")
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn overwrite() -> WriteOptions {
    WriteOptions {
        on_conflict: OnConflict::Overwrite,
        ..Default::default()
    }
}

fn at(path: &str) -> WriteOptions {
    WriteOptions {
        path: Some(path.into()),
        ..Default::default()
    }
}

fn folder(path: &str) -> ListOptions {
    ListOptions {
        path: Some(path.into()),
        ..Default::default()
    }
}

async fn write_read_round_trip(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let out = w
        .write_file(&b"hello world"[..], "hello.txt", WriteOptions::default())
        .await
        .unwrap();
    assert!(out.created);
    let f = out.file;
    assert_eq!(f.path, "/hello.txt");
    assert_eq!(f.name, "hello.txt");
    assert_eq!(f.mime_type, "text/plain");
    assert_eq!(f.size_bytes, 11);
    assert_eq!(f.checksum, sha256(b"hello world"));
    assert!(f.metadata.is_empty());
    assert!(f
        .storage_path
        .starts_with(&env.satchel.store().storage_path(w.workspace_id(), f.id, "")));
    assert_eq!(
        &w.read_file("/hello.txt").await.unwrap()[..],
        b"hello world"
    );
    assert_eq!(&w.read_file_by_id(f.id).await.unwrap()[..], b"hello world");
    assert_eq!(w.get_file_info(f.id).await.unwrap(), f);
    assert_eq!(w.get_file_info_by_path("hello.txt").await.unwrap(), f);

    // Streaming variant from an AsyncRead, with a folder path and explicit MIME (lowercased,
    // parameters dropped).
    let data: Vec<u8> = (0..3 * MIB).map(|i| (i % 251) as u8).collect();
    let f2 = w
        .write_reader(
            std::io::Cursor::new(data.clone()),
            "dir/../blob.bin",
            WriteOptions {
                path: Some("/docs/".into()),
                mime_type: Some("Application/X-Thing; charset=utf-8".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .file;
    assert_eq!(f2.path, "/docs/blob.bin");
    assert_eq!(f2.name, "blob.bin");
    assert_eq!(f2.mime_type, "application/x-thing");
    assert_eq!(f2.checksum, sha256(&data));
    let (_, stream) = w
        .open_file(
            f2.id,
            Some(satchel::storage::ByteRange { start: 10, end: 19 }),
        )
        .await
        .unwrap();
    let ranged: Vec<Bytes> = stream.map(|c| c.unwrap()).collect().await;
    assert_eq!(ranged.concat(), data[10..20].to_vec());
    // Unknown extension → octet-stream; empty content is a valid file.
    let f3 = w
        .write_file(Bytes::new(), "empty.zzzq", WriteOptions::default())
        .await
        .unwrap()
        .file;
    assert_eq!(f3.mime_type, "application/octet-stream");
    assert_eq!(f3.size_bytes, 0);
    assert_eq!(f3.checksum, sha256(b""));
    assert_eq!(w.read_file_by_id(f3.id).await.unwrap().len(), 0);
    assert_eq!(env.staged_uploads().await, 0);
}

async fn conflicts_overwrite_and_rename(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let mut meta = serde_json::Map::new();
    meta.insert("k".into(), "v".into());
    let first = w
        .write_file(
            &b"v1"[..],
            "report.pdf",
            WriteOptions {
                metadata: Some(meta.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .file;
    let err = w
        .write_file(&b"v2"[..], "report.pdf", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PathExists);
    assert_eq!(env.blob_count().await, 1, "a refused write keeps no blob");

    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = w
        .write_file(&b"v2-longer"[..], "report.pdf", overwrite())
        .await
        .unwrap();
    assert!(!second.created);
    let second = second.file;
    assert_eq!(second.id, first.id, "overwrite keeps the id");
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at);
    assert_eq!(
        second.metadata, meta,
        "metadata kept unless new metadata is given"
    );
    assert_ne!(
        second.storage_path, first.storage_path,
        "versions never share a key"
    );
    assert_eq!(&w.read_file("/report.pdf").await.unwrap()[..], b"v2-longer");
    // The previous content is a trash entry with a new id.
    let trash = w.list_trash(&ListOptions::default()).await.unwrap().files;
    assert_eq!(trash.len(), 1);
    let old = &trash[0];
    assert_ne!(old.id, first.id);
    assert_eq!(old.original_path.as_deref(), Some("/report.pdf"));
    assert!(old.path.starts_with("/report.pdf__deleted__"));
    assert!(old.path.ends_with(&format!("_{}", old.id)));
    assert_eq!(old.checksum, first.checksum);
    assert_eq!(old.created_at, first.created_at);
    assert_eq!(old.metadata, meta);
    assert!(old.deleted_at.is_some());
    // Restoring the old version onto the taken path fails; to a new path works.
    assert_eq!(
        w.restore_file(old.id, None).await.unwrap_err().code,
        ErrorCode::PathExists
    );
    let restored = w
        .restore_file(old.id, Some("/report-v1.pdf"))
        .await
        .unwrap();
    assert_eq!(&w.read_file_by_id(restored.id).await.unwrap()[..], b"v1");

    // Rename policy.
    let renamed = |n: &str| WriteOptions {
        on_conflict: OnConflict::Rename,
        path: Some(format!("/r/{n}")),
        ..Default::default()
    };
    let a = w
        .write_file(&b"a"[..], "x.tar.gz", renamed("x.tar.gz"))
        .await
        .unwrap()
        .file;
    let b = w
        .write_file(&b"b"[..], "x.tar.gz", renamed("x.tar.gz"))
        .await
        .unwrap()
        .file;
    let c = w
        .write_file(&b"c"[..], "x.tar.gz", renamed("x.tar.gz"))
        .await
        .unwrap()
        .file;
    assert_eq!(a.path, "/r/x.tar.gz");
    assert_eq!(b.path, "/r/x.tar (1).gz");
    assert_eq!(c.path, "/r/x.tar (2).gz");
    assert_eq!(c.name, "x.tar (2).gz");
    let d = w
        .write_file(&b"d"[..], ".env", renamed(".env"))
        .await
        .unwrap()
        .file;
    let e = w
        .write_file(&b"e"[..], ".env", renamed(".env"))
        .await
        .unwrap()
        .file;
    assert_eq!(
        (d.path.as_str(), e.path.as_str()),
        ("/r/.env", "/r/.env (1)")
    );
    // Rename together with overwrite is refused.
    let bad = WriteOptions {
        on_conflict: OnConflict::Rename,
        if_match: Some("*".into()),
        ..Default::default()
    };
    assert_eq!(
        w.write_file(&b"z"[..], "z", bad).await.unwrap_err().code,
        ErrorCode::InvalidInput
    );
}

async fn preconditions_and_checksums(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let if_match = |m: &str| WriteOptions {
        if_match: Some(m.into()),
        ..Default::default()
    };
    // No live file: any If-Match fails.
    for m in ["*", "\"abc\""] {
        let e = w
            .write_file(&b"x"[..], "f.txt", if_match(m))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::PreconditionFailed, "{m}");
    }
    let v1 = w
        .write_file(&b"one"[..], "f.txt", WriteOptions::default())
        .await
        .unwrap()
        .file;
    for m in ["\"0000\"", &format!("W/\"{}\"", v1.checksum)] {
        let e = w
            .write_file(&b"x"[..], "f.txt", if_match(m))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::PreconditionFailed, "{m}");
    }
    let v2 = w
        .write_file(
            &b"two"[..],
            "f.txt",
            if_match(&format!("\"{}\"", v1.checksum.to_uppercase())),
        )
        .await
        .unwrap();
    assert!(!v2.created);
    assert_eq!(v2.file.id, v1.id);
    let v3 = w
        .write_file(&b"three"[..], "f.txt", if_match("*"))
        .await
        .unwrap();
    assert_eq!(v3.file.checksum, sha256(b"three"));

    // Client checksum: accepted in either case, mismatch stores nothing, malformed refused.
    let good = WriteOptions {
        expected_sha256: Some(sha256(b"data").to_uppercase()),
        ..Default::default()
    };
    w.write_file(&b"data"[..], "c1", good).await.unwrap();
    let blobs = env.blob_count().await;
    let bad = WriteOptions {
        expected_sha256: Some(sha256(b"other")),
        ..Default::default()
    };
    let e = w.write_file(&b"data"[..], "c2", bad).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::ChecksumMismatch);
    assert_eq!(env.blob_count().await, blobs);
    assert!(w.get_file_info_by_path("/c2").await.is_err());
    let malformed = WriteOptions {
        expected_sha256: Some("xyz".into()),
        ..Default::default()
    };
    assert_eq!(
        w.write_file(&b"data"[..], "c3", malformed)
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidInput
    );
    assert_eq!(env.staged_uploads().await, 0);
}

async fn size_cap(backend: Backend) {
    let Some(env) = TestEnv::new(backend, &[("MAX_FILE_SIZE_MB", "1")]).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    // Exactly the cap is accepted.
    w.write_file(vec![7u8; MIB], "exact", WriteOptions::default())
        .await
        .unwrap();
    // Known size over the cap: refused before storing.
    let e = w
        .write_file(vec![7u8; MIB + 1], "over", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::FileTooLarge);
    // Unknown size: cut off while streaming, after at most cap + one chunk read. An endless
    // stream proves the pipeline never reads it all.
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = read.clone();
    let endless = futures::stream::repeat_with(move || {
        counter.fetch_add(64 * 1024, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 64 * 1024]))
    });
    let e = w
        .write_stream(endless, "endless", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::FileTooLarge);
    assert!(read.load(std::sync::atomic::Ordering::SeqCst) <= MIB + 64 * 1024);
    assert_eq!(env.blob_count().await, 1);
    assert_eq!(env.staged_uploads().await, 0);
    assert_eq!(w.get_file_count(&ListOptions::default()).await.unwrap(), 1);
}

async fn quota(backend: Backend) {
    let Some(env) = TestEnv::new(backend, &[("WORKSPACE_QUOTA_MB", "1")]).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let half = MIB / 2;
    let a = w
        .write_file(vec![1u8; half], "a", WriteOptions::default())
        .await
        .unwrap()
        .file;
    w.write_file(vec![1u8; half], "b", WriteOptions::default())
        .await
        .unwrap();
    let u = w.usage().await.unwrap();
    assert_eq!(
        (u.used_bytes, u.limit_bytes, u.file_count),
        (MIB as u64, MIB as u64, 2)
    );
    // Full: a new byte is refused, with the usage in the error.
    let e = w
        .write_file(vec![1u8; 1], "c", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::QuotaExceeded);
    assert_eq!(
        e.detail,
        satchel::ErrorDetail::Quota {
            used_bytes: MIB as u64,
            limit_bytes: MIB as u64
        }
    );
    // Streaming (no size hint) is refused at the commit, and keeps no blob.
    let s = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]);
    let e = w
        .write_stream(s, "d", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::QuotaExceeded);
    assert_eq!(env.blob_count().await, 2);
    // Overwrite counts only the difference: same size passes, smaller frees space.
    w.write_file(vec![2u8; half], "a", overwrite())
        .await
        .unwrap();
    w.write_file(vec![2u8; 100], "a", overwrite())
        .await
        .unwrap();
    assert_eq!(w.usage().await.unwrap().used_bytes, (half + 100) as u64);
    // Reads and deletes are allowed; delete frees the quota; restore charges it again.
    w.read_file("/a").await.unwrap();
    w.delete_file(a.id).await.unwrap();
    assert_eq!(w.usage().await.unwrap().used_bytes, half as u64);
    w.write_file(vec![3u8; half], "e", WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        w.restore_file(a.id, None).await.unwrap_err().code,
        ErrorCode::QuotaExceeded
    );
}

async fn listing_and_paging(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let f = w
            .write_file(
                format!("{i}").into_bytes(),
                &format!("Report{i}.txt"),
                at(&format!("/docs/sub/r{i}.txt")),
            )
            .await
            .unwrap()
            .file;
        ids.push(f.id);
    }
    w.write_file(&b"x"[..], "x", at("/docs2/x")).await.unwrap();
    w.write_file(&b"x"[..], "x", at("/docs")).await.unwrap(); // a file named like the folder
                                                              // Newest first; /docs/ never includes /docs2/x or the file /docs itself.
    let all = w.list_files(&folder("/docs")).await.unwrap();
    let listed: Vec<_> = all.files.iter().map(|f| f.id).collect();
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(listed, expected);
    assert!(!all.has_more);
    assert_eq!(all.next_cursor, None);
    assert_eq!(w.get_file_count(&folder("/docs/")).await.unwrap(), 7);
    assert_eq!(w.get_file_count(&ListOptions::default()).await.unwrap(), 9);
    // Offset pages and cursor pages agree.
    let page = |offset: Option<u64>, cursor: Option<String>| ListOptions {
        path: Some("/docs".into()),
        limit: Some(3),
        offset,
        cursor,
        ..Default::default()
    };
    let mut by_cursor = Vec::new();
    let mut cursor = None;
    loop {
        let p = w.list_files(&page(None, cursor.clone())).await.unwrap();
        by_cursor.extend(p.files.iter().map(|f| f.id));
        if !p.has_more {
            break;
        }
        cursor = p.next_cursor;
        assert!(cursor.is_some());
    }
    assert_eq!(by_cursor, expected);
    let p2 = w.list_files(&page(Some(3), None)).await.unwrap();
    assert_eq!(
        p2.files.iter().map(|f| f.id).collect::<Vec<_>>(),
        expected[3..6]
    );
    assert!(p2.has_more);
    // Name filter: case-insensitive substring.
    let named = ListOptions {
        name_contains: Some("REPORT3".into()),
        ..Default::default()
    };
    let found = w.list_files(&named).await.unwrap().files;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, "Report3.txt");
    assert_eq!(w.get_file_count(&named).await.unwrap(), 1);
    // Bad paging input.
    for bad in [
        ListOptions {
            limit: Some(0),
            ..Default::default()
        },
        ListOptions {
            limit: Some(1001),
            ..Default::default()
        },
        ListOptions {
            cursor: Some("garbage".into()),
            ..Default::default()
        },
        ListOptions {
            offset: Some(1),
            cursor: Some(by_cursor[0].to_string()),
            ..Default::default()
        },
    ] {
        assert_eq!(
            w.list_files(&bad).await.unwrap_err().code,
            ErrorCode::InvalidInput
        );
    }
}

async fn sessions(backend: Backend) {
    let Some(env) = TestEnv::new(backend, &[("SHARED_ROOTS", "/shared")]).await else {
        return;
    };
    let s1 = env.satchel.workspace("alice", Some("S1")).await.unwrap();
    let s2 = env.satchel.workspace("alice", Some("S2")).await.unwrap();
    let plain = ws(&env, "alice").await;
    let a = s1
        .write_file(&b"a"[..], "image.png", WriteOptions::default())
        .await
        .unwrap()
        .file;
    assert_eq!(a.path, "/sessions/S1/image.png");
    let b = s1
        .write_file(&b"b"[..], "b", at("/out/b.txt"))
        .await
        .unwrap()
        .file;
    assert_eq!(b.path, "/sessions/S1/out/b.txt");
    let shared = s1
        .write_file(&b"s"[..], "s", at("/shared/s.txt"))
        .await
        .unwrap()
        .file;
    assert_eq!(shared.path, "/shared/s.txt");
    let cross = s1
        .write_file(&b"c"[..], "c", at("/sessions/S2/c"))
        .await
        .unwrap()
        .file;
    assert_eq!(cross.path, "/sessions/S2/c");
    // Each session sees its own folder by default; relative reads are scoped.
    assert_eq!(s1.get_file_count(&ListOptions::default()).await.unwrap(), 2);
    assert_eq!(s2.get_file_count(&ListOptions::default()).await.unwrap(), 1);
    assert_eq!(&s1.read_file("image.png").await.unwrap()[..], b"a");
    assert_eq!(
        s2.read_file("image.png").await.unwrap_err().code,
        ErrorCode::NotFound
    );
    // include_all_sessions takes the folder as given; no session, no folder: everything.
    let all = ListOptions {
        include_all_sessions: true,
        ..Default::default()
    };
    assert_eq!(s2.get_file_count(&all).await.unwrap(), 4);
    assert_eq!(
        plain.get_file_count(&ListOptions::default()).await.unwrap(),
        4
    );
    // delete_session soft-deletes exactly that session's files.
    assert_eq!(plain.delete_session("S1").await.unwrap(), 2);
    assert_eq!(plain.delete_session("S1").await.unwrap(), 0);
    assert_eq!(
        plain.get_file_count(&ListOptions::default()).await.unwrap(),
        2
    );
    assert_eq!(
        plain
            .list_trash(&ListOptions::default())
            .await
            .unwrap()
            .files
            .len(),
        2
    );
    assert_eq!(
        plain.delete_session("../x").await.unwrap_err().code,
        ErrorCode::InvalidInput
    );
    assert_eq!(
        env.satchel
            .workspace("alice", Some("a/b"))
            .await
            .err()
            .map(|e| e.code),
        Some(ErrorCode::InvalidInput)
    );
}

async fn delete_and_restore(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let f = w
        .write_file(&b"1"[..], "a.txt", WriteOptions::default())
        .await
        .unwrap()
        .file;
    let deleted = w.delete_file(f.id).await.unwrap();
    assert!(deleted.is_deleted);
    assert!(deleted.path.starts_with("/a.txt__deleted__"));
    assert_eq!(
        w.get_file_info(f.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        w.delete_file(f.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        w.delete_file(uuid::Uuid::new_v4()).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    // The path is free at once; the bytes stay for restore.
    let g = w
        .write_file(&b"2"[..], "a.txt", WriteOptions::default())
        .await
        .unwrap()
        .file;
    assert_eq!(env.blob_count().await, 2);
    assert_eq!(
        w.restore_file(f.id, None).await.unwrap_err().code,
        ErrorCode::PathExists
    );
    w.delete_file(g.id).await.unwrap();
    let r = w.restore_file(f.id, None).await.unwrap();
    assert_eq!(
        (r.id, r.path.as_str(), r.is_deleted),
        (f.id, "/a.txt", false)
    );
    assert_eq!(r.deleted_at, None);
    assert_eq!(&w.read_file("/a.txt").await.unwrap()[..], b"1");
    assert_eq!(
        w.restore_file(f.id, None).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    // Trash paging and folder filter on the original path.
    let trash = w.list_trash(&folder("/")).await.unwrap().files;
    assert_eq!(trash.iter().map(|t| t.id).collect::<Vec<_>>(), vec![g.id]);
    assert!(w
        .list_trash(&folder("/other"))
        .await
        .unwrap()
        .files
        .is_empty());
}

async fn metadata(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let mut m = serde_json::Map::new();
    m.insert("nested".into(), serde_json::json!({"a": [1, 2, "é"]}));
    let f = w
        .write_file(
            &b"x"[..],
            "m",
            WriteOptions {
                metadata: Some(m.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .file;
    assert_eq!(w.get_file_info(f.id).await.unwrap().metadata, m);
    let mut m2 = serde_json::Map::new();
    m2.insert("b".into(), 2.into());
    let f2 = w
        .write_file(
            &b"y"[..],
            "m",
            WriteOptions {
                metadata: Some(m2.clone()),
                ..overwrite()
            },
        )
        .await
        .unwrap()
        .file;
    assert_eq!(f2.metadata, m2);
    assert_eq!(w.set_metadata(f.id, m.clone()).await.unwrap().metadata, m);
    let mut big = serde_json::Map::new();
    big.insert("x".into(), "a".repeat(17 * 1024).into());
    let e = w
        .write_file(
            &b"x"[..],
            "big",
            WriteOptions {
                metadata: Some(big.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput);
    assert_eq!(
        w.set_metadata(f.id, big).await.unwrap_err().code,
        ErrorCode::InvalidInput
    );
}

async fn isolation_between_users(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let alice = ws(&env, "alice").await;
    let bob = ws(&env, "bob").await;
    assert_ne!(alice.workspace_id(), bob.workspace_id());
    let f = alice
        .write_file(&b"secret"[..], "s.txt", WriteOptions::default())
        .await
        .unwrap()
        .file;
    assert_eq!(
        bob.get_file_info(f.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        bob.read_file_by_id(f.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        bob.read_file("/s.txt").await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        bob.open_record(&f, None).await.err().map(|e| e.code),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        bob.delete_file(f.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        bob.set_metadata(f.id, Default::default())
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    alice.delete_file(f.id).await.unwrap();
    assert_eq!(
        bob.restore_file(f.id, None).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert!(bob
        .list_trash(&ListOptions::default())
        .await
        .unwrap()
        .files
        .is_empty());
    assert_eq!(
        bob.get_file_count(&ListOptions::default()).await.unwrap(),
        0
    );
}

async fn bad_input_corpus(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let w = env.satchel.workspace("alice", Some("S1")).await.unwrap();
    let long_path = format!("/{}", "abcdefgh/".repeat(120));
    let long_segment = format!("/{}", "a".repeat(256));
    let bad_paths = [
        "/../etc/passwd",
        "../../x",
        "/a/../../b",
        "/a/..",
        "/a\0b",
        "/a\u{1}b",
        "/a\u{1b}[31m",
        "/a\u{7f}",
        "/a\u{9f}",
        "/a\\..\\b",
        "C:\\windows",
        long_path.as_str(),
        long_segment.as_str(),
        "",
        ".",
    ];
    for p in bad_paths {
        let e = w.write_file(&b"x"[..], "f.txt", at(p)).await.unwrap_err();
        assert!(
            matches!(e.code, ErrorCode::InvalidPath | ErrorCode::InvalidInput),
            "{p:?} gave {e}"
        );
    }
    let bad_names = [
        "",
        ".",
        "..",
        "/",
        "a/..",
        "x\\..",
        "nul\0.txt",
        "bell\u{7}",
        &"n".repeat(256),
    ];
    for n in bad_names {
        let e = w
            .write_file(&b"x"[..], n, WriteOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{n:?}");
    }
    // Traversal-looking names are reduced to their last segment and stored inside the root.
    let f = w
        .write_file(&b"x"[..], "../../../etc/passwd", WriteOptions::default())
        .await
        .unwrap()
        .file;
    assert_eq!(f.path, "/sessions/S1/passwd");
    let f = w
        .write_file(&b"x"[..], "..\\..\\evil.txt", WriteOptions::default())
        .await
        .unwrap()
        .file;
    assert_eq!(f.name, "evil.txt");
    // Non-NFC input is stored NFC, so both spellings name the same file.
    let nfd = w
        .write_file(&b"x"[..], "cafe\u{301}.txt", WriteOptions::default())
        .await
        .unwrap()
        .file;
    assert_eq!(nfd.path, "/sessions/S1/caf\u{e9}.txt");
    assert_eq!(
        w.write_file(&b"x"[..], "caf\u{e9}.txt", WriteOptions::default())
            .await
            .unwrap_err()
            .code,
        ErrorCode::PathExists
    );
    // Bad session ids.
    for s in ["..", "a/b", "", "a.b", &"s".repeat(129)] {
        assert!(
            env.satchel.workspace("alice", Some(s)).await.is_err(),
            "{s:?}"
        );
    }
    // Nothing was written outside the storage dir (only the database lives beside it).
    let storage = env.storage_dir();
    for p in env.all_files() {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            p.starts_with(&storage) || name.starts_with("satchel.db"),
            "stray file {p:?}"
        );
    }
    assert_eq!(env.blob_count().await, 3);
}

async fn race_workspace_creation(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let s = env.satchel.clone();
            tokio::spawn(async move { s.workspace("racer", None).await.map(|w| w.workspace_id()) })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().expect("no error"));
    }
    assert_eq!(ids.len(), 1);
}

async fn race_creates_of_one_path(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                w.write_file(
                    format!("content {i}").into_bytes(),
                    "same.txt",
                    WriteOptions::default(),
                )
                .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code, ErrorCode::PathExists),
        }
    }
    assert_eq!(ok, 1);
    settle(&env, 1).await;
    assert_eq!(env.staged_uploads().await, 0);
}

/// Waits briefly for blob deletions of refused writes, then checks the blob count.
async fn settle(env: &TestEnv, expected: usize) {
    for _ in 0..50 {
        if env.blob_count().await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(env.blob_count().await, expected);
}

async fn race_overwrites_of_one_path(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                w.write_file(
                    format!("version {i}").repeat(100).into_bytes(),
                    "hot.txt",
                    overwrite(),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every overwrite succeeds");
    }
    let live = w.list_files(&ListOptions::default()).await.unwrap().files;
    assert_eq!(live.len(), 1, "one live file");
    let bytes = w.read_file("/hot.txt").await.unwrap();
    assert_eq!(sha256(&bytes), live[0].checksum, "bytes match the checksum");
    let trash = w
        .list_trash(&ListOptions {
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        trash.files.len(),
        31,
        "every replaced version is in the trash"
    );
    // Catalog and blobs agree exactly: no orphans, nothing missing.
    let report = satchel::maintenance::fsck(&env.satchel, true, false)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.records_checked, 32);
    assert_eq!(env.blob_count().await, 32);
    assert_eq!(w.usage().await.unwrap().used_bytes, live[0].size_bytes);
}

async fn race_at_the_quota_edge(backend: Backend) {
    let Some(env) = TestEnv::new(backend, &[("WORKSPACE_QUOTA_MB", "1")]).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let size = 100 * 1024;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                // A stream (no size hint) so the only check that can stop it is the commit's.
                let s = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![
                    i as u8;
                    size
                ]))]);
                w.write_stream(s, &format!("q{i}"), WriteOptions::default())
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code, ErrorCode::QuotaExceeded),
        }
    }
    assert_eq!(ok, MIB / size, "exactly as many as fit");
    let usage = w.usage().await.unwrap();
    assert!(usage.used_bytes <= MIB as u64);
    assert_eq!(usage.used_bytes, (ok * size) as u64);
    settle(&env, ok).await;
}

async fn cancelled_write_leaves_nothing(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    let stream = tokio_stream_from(rx);
    let writer = w.clone();
    let task = tokio::spawn(async move {
        writer
            .write_stream(stream, "cancel.bin", WriteOptions::default())
            .await
    });
    for _ in 0..4 {
        tx.send(Ok(Bytes::from(vec![0u8; 64 * 1024])))
            .await
            .unwrap();
    }
    // The upload is mid-stream: a staged file exists.
    for _ in 0..100 {
        if env.staged_uploads().await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(env.staged_uploads().await, 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(
        env.staged_uploads().await,
        0,
        "the drop guard removed the staged file"
    );
    assert_eq!(env.blob_count().await, 0);
    assert!(w.get_file_info_by_path("/cancel.bin").await.is_err());

    // A source that fails mid-stream (client gone) is the same.
    let failing = futures::stream::iter([
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client gone",
        )),
    ]);
    let e = w
        .write_stream(failing, "gone.bin", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput);
    assert_eq!(env.staged_uploads().await, 0);
    assert_eq!(env.blob_count().await, 0);
    assert_eq!(w.get_file_count(&ListOptions::default()).await.unwrap(), 0);
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn gc_and_fsck(backend: Backend) {
    let Some(env) = TestEnv::new(backend, &[("TRASH_RETENTION_DAYS", "0")]).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let keep = w
        .write_file(&b"keep"[..], "keep", WriteOptions::default())
        .await
        .unwrap()
        .file;
    let gone = w
        .write_file(&b"gone"[..], "gone", WriteOptions::default())
        .await
        .unwrap()
        .file;
    w.delete_file(gone.id).await.unwrap();
    assert!(satchel::maintenance::fsck(&env.satchel, true, false)
        .await
        .unwrap()
        .is_clean());
    // An orphan blob (a crash between store and commit) and a stale staged file, both old; a
    // fresh orphan that an upload in flight may still own.
    let orphan_dir = env
        .storage_dir()
        .join(w.workspace_id().to_string())
        .join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir_all(&orphan_dir).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    let orphan = orphan_dir.join("orphan.bin");
    std::fs::write(&orphan, b"o").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let staged = env.storage_dir().join(".staging").join("old.part");
    std::fs::write(&staged, b"s").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let young_dir = env
        .storage_dir()
        .join(w.workspace_id().to_string())
        .join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir_all(&young_dir).unwrap();
    std::fs::write(young_dir.join("young.bin"), b"y").unwrap();

    let report = satchel::maintenance::fsck(&env.satchel, false, false)
        .await
        .unwrap();
    assert_eq!(report.problems.len(), 2, "{report}");
    assert!(report.problems.iter().all(|p| p.kind == "orphan_blob"));

    let dry = satchel::maintenance::gc(&env.satchel, true).await.unwrap();
    assert_eq!(
        (
            dry.trash_purged.len(),
            dry.orphan_blobs.len(),
            dry.staged_files.len()
        ),
        (1, 1, 1)
    );
    assert!(
        orphan.exists() && staged.exists(),
        "dry run removes nothing"
    );
    let done = satchel::maintenance::gc(&env.satchel, false).await.unwrap();
    assert_eq!(done.trash_purged, vec![gone.id]);
    assert!(!orphan.exists() && !staged.exists());
    assert!(
        young_dir.join("young.bin").exists(),
        "young orphans are kept"
    );
    assert_eq!(
        w.restore_file(gone.id, None).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(&w.read_file_by_id(keep.id).await.unwrap()[..], b"keep");
    // Idempotent.
    assert!(satchel::maintenance::gc(&env.satchel, false)
        .await
        .unwrap()
        .trash_purged
        .is_empty());

    // A record whose blob vanished: fsck reports it; --repair moves it to the trash, tagged.
    std::fs::remove_file(young_dir.join("young.bin")).unwrap();
    let blob = env.blob_files().into_iter().next().unwrap();
    std::fs::remove_file(&blob).unwrap();
    let report = satchel::maintenance::fsck(&env.satchel, false, true)
        .await
        .unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, "missing_blob");
    assert_eq!(report.repaired, vec![keep.id]);
    let trashed = w.list_trash(&ListOptions::default()).await.unwrap().files;
    assert_eq!(
        trashed[0].metadata.get("fsck"),
        Some(&serde_json::json!("missing_blob"))
    );
    // Corruption of content is found by a deep check only.
    let f = w
        .write_file(&b"abc"[..], "c", WriteOptions::default())
        .await
        .unwrap()
        .file;
    let blob = env
        .blob_files()
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&f.id.to_string()))
        .unwrap();
    std::fs::write(&blob, b"abd").unwrap();
    assert_eq!(
        satchel::maintenance::fsck(&env.satchel, false, false)
            .await
            .unwrap()
            .problems
            .len(),
        1, // the missing blob of the repaired (now trashed) record
    );
    let deep = satchel::maintenance::fsck(&env.satchel, true, false)
        .await
        .unwrap();
    assert!(
        deep.problems.iter().any(|p| p.kind == "checksum_mismatch"),
        "{deep}"
    );
}

async fn download_urls(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let w = ws(&env, "alice").await;
    let f = w
        .write_file(&b"link me"[..], "l.txt", WriteOptions::default())
        .await
        .unwrap()
        .file;
    for bad in [0, 7 * 24 * 3600 + 1] {
        let e = w
            .get_download_url(f.id, Duration::from_secs(bad))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{bad}");
    }
    let before = chrono::Utc::now();
    let link = w
        .get_download_url(f.id, Duration::from_secs(600))
        .await
        .unwrap();
    let lifetime = (link.expires_at - before).num_seconds();
    assert!((599..=601).contains(&lifetime), "{lifetime}");
    match env.satchel.store().backend() {
        // The local backend signs its own links, served by `GET /v1/download/{token}`.
        "local" => {
            let base = format!("{}/v1/download/", env.satchel.config().public_base_url);
            let token = link
                .url
                .strip_prefix(&base)
                .expect("a link of this service");
            let claims = satchel::signing::verify_download_token(
                env.satchel.secrets().unwrap(),
                token,
                before.timestamp(),
            )
            .unwrap();
            assert_eq!(
                (claims.file_id, claims.checksum.as_str()),
                (f.id, f.checksum.as_str())
            );
        }
        // Cloud backends answer with their native signed URL, fetchable without credentials.
        _ => {
            let bytes = reqwest::get(&link.url)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(&bytes[..], b"link me");
        }
    }
    let bob = ws(&env, "bob").await;
    assert_eq!(
        bob.get_download_url(f.id, Duration::from_secs(60))
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
}

on_both_catalogs!(
    download_urls,
    write_read_round_trip,
    conflicts_overwrite_and_rename,
    preconditions_and_checksums,
    size_cap,
    quota,
    listing_and_paging,
    sessions,
    delete_and_restore,
    metadata,
    isolation_between_users,
    bad_input_corpus,
    race_workspace_creation,
    race_creates_of_one_path,
    race_overwrites_of_one_path,
    race_at_the_quota_edge,
    cancelled_write_leaves_nothing,
    gc_and_fsck,
);

// The same bodies on GCS and S3 (SQLite catalog). gc_and_fsck is local-only: it plants and
// backdates blobs on disk; tests/storage_conformance.rs covers gc and fsck on object stores.
on_cloud_stores!(
    download_urls,
    write_read_round_trip,
    conflicts_overwrite_and_rename,
    preconditions_and_checksums,
    size_cap,
    quota,
    listing_and_paging,
    sessions,
    delete_and_restore,
    metadata,
    isolation_between_users,
    bad_input_corpus,
    race_creates_of_one_path,
    race_overwrites_of_one_path,
    race_at_the_quota_edge,
    cancelled_write_leaves_nothing,
);
