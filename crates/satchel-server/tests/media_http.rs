//! `POST /v1/media` end to end: a real server on a random port, a real HTTP client, every test
//! on SQLite and on PostgreSQL.

mod common;

use base64::Engine;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ALICE: &str = "alice";
const BOB: &str = "bob";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

on_both_backends!(
    return_formats,
    workspace_inputs,
    malformed_requests,
    refused_inputs,
    body_limit,
    exec_folder_limit,
    infected_media,
    metrics_and_openapi,
);

/// A server whose execution folders live in a temp dir of the test's own.
struct MediaApp {
    app: TestApp,
    exec: tempfile::TempDir,
}

impl MediaApp {
    async fn spawn(backend: Backend, vars: &[(&str, &str)]) -> MediaApp {
        let exec = tempfile::tempdir().expect("exec dir");
        let exec_dir = exec.path().display().to_string();
        let mut all = vec![("EXEC_FILE_DIR", exec_dir.as_str())];
        all.extend_from_slice(vars);
        let app = spawn_app_with(backend, &all).await;
        MediaApp { app, exec }
    }

    fn folder(&self, exec_id: &str) -> PathBuf {
        self.exec.path().join(exec_id)
    }

    async fn post(&self, user: &str, body: &Value) -> reqwest::Response {
        self.app
            .req(user, Method::POST, "/v1/media")
            .json(body)
            .send()
            .await
            .expect("send")
    }

    /// Expects 200 and returns `result`.
    async fn store(&self, user: &str, body: Value) -> String {
        let r = self.post(user, &body).await;
        let status = r.status();
        let answer: Value = r.json().await.expect("json");
        assert_eq!(status, StatusCode::OK, "{body}: {answer}");
        answer["result"]
            .as_str()
            .unwrap_or_else(|| panic!("no result in {answer}"))
            .to_owned()
    }
}

fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", B64.encode(bytes))
}

fn decode_data_uri(uri: &str) -> (String, Vec<u8>) {
    let rest = uri.strip_prefix("data:").expect("a data URI");
    let (mime, payload) = rest.split_once(";base64,").expect("base64 data URI");
    (mime.to_owned(), B64.decode(payload).expect("valid base64"))
}

/// `workspace://{id}#{mime}` → (id, mime).
fn split_workspace_ref(result: &str) -> (String, String) {
    let rest = result
        .strip_prefix("workspace://")
        .unwrap_or_else(|| panic!("not a workspace reference: {result}"));
    let (id, mime) = rest.split_once('#').expect("a #mime fragment");
    (id.to_owned(), mime.to_owned())
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn return_formats(backend: Backend) {
    let m = MediaApp::spawn(backend, &[]).await;
    let content = b"hello media";
    let uri = data_uri("text/plain", content);

    // for_local_processing: a name relative to {exec_file_dir}/{exec_id}/.
    let name = m
        .store(
            ALICE,
            json!({"file": uri, "graph_exec_id": "e1", "return_format": "for_local_processing"}),
        )
        .await;
    assert!(!name.contains('/') && name.ends_with(".txt"), "{name}");
    assert_eq!(std::fs::read(m.folder("e1").join(&name)).unwrap(), content);
    // Storing again is a second file (data URIs get fresh names), not an error.
    let again = m
        .store(
            ALICE,
            json!({"file": uri, "graph_exec_id": "e1", "return_format": "for_local_processing"}),
        )
        .await;
    assert_ne!(again, name);
    assert_eq!(std::fs::read(m.folder("e1").join(&again)).unwrap(), content);
    // A path inside the execution folder is taken as is.
    let local = m
        .store(
            ALICE,
            json!({"file": name, "graph_exec_id": "e1", "return_format": "for_external_api"}),
        )
        .await;
    assert_eq!(
        decode_data_uri(&local),
        ("text/plain".into(), content.to_vec())
    );

    // for_external_api: the data URI of the same bytes.
    let out = m
        .store(
            ALICE,
            json!({"file": uri, "graph_exec_id": "e2", "return_format": "for_external_api"}),
        )
        .await;
    assert_eq!(out, uri);
    assert_eq!(
        decode_data_uri(&out),
        ("text/plain".into(), content.to_vec())
    );

    // for_block_output without a session (a graph run): the data URI, nothing in the workspace.
    let out = m
        .store(
            ALICE,
            json!({"file": uri, "graph_exec_id": "e3", "return_format": "for_block_output"}),
        )
        .await;
    assert_eq!(decode_data_uri(&out).1, content);
    assert_eq!(m.app.get_json(ALICE, "/v1/files/count").await["count"], 0);

    // for_block_output with a session: saved to /sessions/{S}/, answered as workspace://id#mime.
    let out = m
        .store(
            ALICE,
            json!({
                "file": uri,
                "graph_exec_id": "e4",
                "return_format": "for_block_output",
                "session_id": "chat-1",
            }),
        )
        .await;
    let (id, mime) = split_workspace_ref(&out);
    assert_eq!(mime, "text/plain");
    let info = m.app.get_json(ALICE, &format!("/v1/files/{id}")).await;
    assert!(
        info["path"]
            .as_str()
            .unwrap()
            .starts_with("/sessions/chat-1/"),
        "{info}"
    );
    assert_eq!(info["size_bytes"], content.len());
    let r = m.app.get(ALICE, &format!("/v1/files/{id}/content")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..], content);
    // The same content again: a second file next to it (on_conflict=rename), not an error.
    let second = m
        .store(
            ALICE,
            json!({
                "file": uri,
                "graph_exec_id": "e4",
                "return_format": "for_block_output",
                "session_id": "chat-1",
            }),
        )
        .await;
    assert_ne!(split_workspace_ref(&second).0, id);
    assert_eq!(
        m.app
            .get_json(ALICE, "/v1/files/count?session_id=chat-1")
            .await["count"],
        2
    );
    // Bob sees none of it.
    let r = m.app.get(BOB, &format!("/v1/files/{id}/content")).await;
    expect_error(r, 404, "not_found").await;

    // The folders are per execution.
    for exec_id in ["e1", "e2", "e3", "e4"] {
        assert!(!files_in(&m.folder(exec_id)).is_empty(), "{exec_id}");
    }
}

async fn workspace_inputs(backend: Backend) {
    let m = MediaApp::spawn(backend, &[]).await;
    let file = m
        .app
        .create(ALICE, "filename=notes.md&path=/docs/notes.md", b"# notes")
        .await;
    let id = file["id"].as_str().unwrap().to_owned();

    // By id: copied into the execution folder under its name.
    let name = m
        .store(
            ALICE,
            json!({
                "file": format!("workspace://{id}"),
                "graph_exec_id": "w1",
                "return_format": "for_local_processing",
            }),
        )
        .await;
    assert_eq!(name, "notes.md");
    assert_eq!(
        std::fs::read(m.folder("w1").join(&name)).unwrap(),
        b"# notes"
    );
    // By path, with a MIME hint (informational: the stored type wins).
    let out = m
        .store(
            ALICE,
            json!({
                "file": "workspace:///docs/notes.md#image/png",
                "graph_exec_id": "w1",
                "return_format": "for_external_api",
            }),
        )
        .await;
    assert_eq!(
        decode_data_uri(&out),
        ("text/markdown".into(), b"# notes".to_vec())
    );
    // for_block_output: the reference itself, with the stored MIME type.
    let out = m
        .store(
            ALICE,
            json!({
                "file": format!("workspace://{id}"),
                "graph_exec_id": "w2",
                "return_format": "for_block_output",
                "session_id": "s1",
            }),
        )
        .await;
    assert_eq!(out, format!("workspace://{id}#text/markdown"));

    // Another user's file does not exist for bob, by id or by path.
    for file in [
        format!("workspace://{id}"),
        "workspace:///docs/notes.md".to_owned(),
    ] {
        for format in ["for_local_processing", "for_block_output"] {
            let r = m
                .post(
                    BOB,
                    &json!({
                        "file": file,
                        "graph_exec_id": "w3",
                        "return_format": format,
                        "session_id": "s1",
                    }),
                )
                .await;
            expect_error(r, 404, "not_found").await;
        }
    }
    assert!(files_in(&m.folder("w3")).is_empty());
    // An unknown id: 404 too.
    let r = m
        .post(
            ALICE,
            &json!({
                "file": format!("workspace://{}", uuid::Uuid::new_v4()),
                "graph_exec_id": "w1",
                "return_format": "for_local_processing",
            }),
        )
        .await;
    expect_error(r, 404, "not_found").await;
}

async fn malformed_requests(backend: Backend) {
    let m = MediaApp::spawn(backend, &[]).await;
    let uri = data_uri("text/plain", b"x");
    for body in [
        json!({"file": uri, "graph_exec_id": "e1", "return_format": "for_local"}),
        json!({"file": uri, "graph_exec_id": "e1", "return_format": "FOR_EXTERNAL_API"}),
        json!({"file": uri, "graph_exec_id": "e1", "return_format": ""}),
        json!({"file": uri, "graph_exec_id": "e1"}),
        json!({"file": uri, "return_format": "for_external_api"}),
        json!({"file": uri, "graph_exec_id": "", "return_format": "for_external_api"}),
        json!({"file": uri, "graph_exec_id": null, "return_format": "for_external_api"}),
        json!({"file": uri, "graph_exec_id": 7, "return_format": "for_external_api"}),
        json!({"graph_exec_id": "e1", "return_format": "for_external_api"}),
        json!({"file": "", "graph_exec_id": "e1", "return_format": "for_external_api"}),
        json!({"file": uri, "graph_exec_id": "../x", "return_format": "for_external_api"}),
        json!({"file": uri, "graph_exec_id": "a/b", "return_format": "for_external_api"}),
        json!({"file": uri, "graph_exec_id": "e".repeat(129), "return_format": "for_external_api"}),
        json!({"file": uri, "graph_exec_id": "e1", "return_format": "x".repeat(100_000)}),
        json!({"file": uri, "graph_exec_id": "e1", "return_format": "for_external_api", "session_id": "bad id"}),
        json!({"file": uri, "graph_exec_id": "e1", "return_format": "for_external_api", "session_id": ""}),
        json!({"file": uri, "graph_exec_id": "e1", "return_format": "for_external_api", "user_id": "bob"}),
        json!([uri]),
    ] {
        let r = m.post(ALICE, &body).await;
        let (status, code, answer) = error_of(r).await;
        assert_eq!(
            (status.as_u16(), code.as_str()),
            (400, "invalid_input"),
            "{body}: {answer}"
        );
    }
    for raw in ["", "{", "not json", "{\"file\": 1}"] {
        let r = m
            .app
            .req(ALICE, Method::POST, "/v1/media")
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "invalid_input").await;
    }
    // The Content-Type is not required (curl -d).
    let r = m
        .app
        .req(ALICE, Method::POST, "/v1/media")
        .body(
            json!({"file": uri, "graph_exec_id": "e1", "return_format": "for_external_api"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // No (or a bad) token: 401, before the body is looked at.
    let body = json!({"file": uri, "graph_exec_id": "e1", "return_format": "for_external_api"});
    let r = m
        .app
        .anon(Method::POST, "/v1/media")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthenticated").await;
    let r = m
        .app
        .anon(Method::POST, "/v1/media")
        .bearer_auth("not.a.jwt")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthenticated").await;
    // Only POST.
    let r = m.app.get(ALICE, "/v1/media").await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(files_in(m.exec.path()).iter().all(|n| n == "e1"));
}

async fn refused_inputs(backend: Backend) {
    let m = &MediaApp::spawn(backend, &[]).await;
    let port = m.app.addr.port();
    let post = |file: String| {
        let body =
            json!({"file": file, "graph_exec_id": "r1", "return_format": "for_local_processing"});
        async move { m.post(ALICE, &body).await }
    };
    for file in [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://example.com/a.png",
        "javascript:alert(1)",
    ] {
        expect_error(post(file.to_owned()).await, 400, "invalid_input").await;
    }
    // SSRF: the service itself, and other internal addresses, are refused before connecting.
    for file in [
        format!("http://127.0.0.1:{port}/healthz"),
        format!("http://localhost:{port}/healthz"),
        format!("HTTP://[::1]:{port}/healthz"),
        format!("http://user:pw@127.0.0.1:{port}/readyz"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://[::ffff:127.0.0.1]/".to_owned(),
    ] {
        let body = expect_error(post(file.clone()).await, 400, "url_not_allowed").await;
        assert!(body["error"]["message"].is_string(), "{file}");
    }
    // Bad data URIs.
    for file in [
        "data:text/plain;base64,@@@@",
        "data:text/plain;base64,aGVsbG8=x",
    ] {
        expect_error(post(file.to_owned()).await, 400, "invalid_data_uri").await;
    }
    // Local paths: escaping the folder, or missing.
    expect_error(post("../../etc/passwd".into()).await, 400, "invalid_path").await;
    expect_error(post("missing.png".into()).await, 404, "not_found").await;
    // Cloud paths that are not the caller's files.
    expect_error(post("s3://bucket/key".into()).await, 404, "not_found").await;
    // Nothing was kept.
    assert!(files_in(&m.folder("r1")).is_empty());
}

async fn body_limit(backend: Backend) {
    let m = MediaApp::spawn(backend, &[("MAX_FILE_SIZE_MB", "1")]).await;
    const MIB: usize = 1024 * 1024;
    let limit = 1_398_104 + 65_536; // ceil(1 MiB / 3) * 4 + 64 KiB

    // A file of exactly max_file_size_mb is accepted.
    let exact: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
    let name = m
        .store(
            ALICE,
            json!({
                "file": data_uri("application/octet-stream", &exact),
                "graph_exec_id": "big",
                "return_format": "for_local_processing",
            }),
        )
        .await;
    assert_eq!(
        std::fs::metadata(m.folder("big").join(&name))
            .unwrap()
            .len(),
        MIB as u64
    );
    // One byte more fits in the body limit but not in the file limit: the library refuses it.
    let over: Vec<u8> = vec![1; MIB + 1];
    let r = m
        .post(
            ALICE,
            &json!({
                "file": data_uri("application/octet-stream", &over),
                "graph_exec_id": "big",
                "return_format": "for_local_processing",
            }),
        )
        .await;
    expect_error(r, 413, "file_too_large").await;

    // ~2 MiB of base64: over the body limit, refused with the JSON error (Content-Length).
    let huge = json!({
        "file": format!("data:text/plain;base64,{}", "QUFB".repeat(2 * MIB / 4)),
        "graph_exec_id": "big",
        "return_format": "for_local_processing",
    })
    .to_string();
    assert!(huge.len() > limit);
    let r = m
        .app
        .req(ALICE, Method::POST, "/v1/media")
        .header("content-type", "application/json")
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    let body = expect_error(r, 413, "file_too_large").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&limit.to_string()),
        "{body}"
    );
    // The same without a Content-Length (chunked): cut off at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = huge
        .as_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let r = m
        .app
        .req(ALICE, Method::POST, "/v1/media")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "file_too_large").await;
    // A body of exactly the limit is read (and then judged on its content).
    let head = r#"{"file": "x", "graph_exec_id": "big", "return_format": "nope"}"#;
    let padded = format!("{head}{}", " ".repeat(limit - head.len()));
    assert_eq!(padded.len(), limit);
    let r = m
        .app
        .req(ALICE, Method::POST, "/v1/media")
        .body(padded)
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_input").await;
    assert_eq!(files_in(&m.folder("big")), vec![name]);
}

async fn exec_folder_limit(backend: Backend) {
    let m = &MediaApp::spawn(backend, &[("EXEC_DIR_MAX_MB", "1")]).await;
    let part = |seed: u8| -> Vec<u8> { vec![seed; 700 * 1024] };
    let store = |seed: u8, exec_id: &'static str| {
        let body = json!({
            "file": data_uri("application/octet-stream", &part(seed)),
            "graph_exec_id": exec_id,
            "return_format": "for_local_processing",
        });
        async move { m.post(ALICE, &body).await }
    };
    assert_eq!(store(1, "q1").await.status(), StatusCode::OK);
    let body = expect_error(store(2, "q1").await, 413, "quota_exceeded").await;
    assert!(body["error"]["limit_bytes"].is_u64(), "{body}");
    assert_eq!(files_in(&m.folder("q1")).len(), 1);
    // Another execution has a folder of its own.
    assert_eq!(store(2, "q2").await.status(), StatusCode::OK);
}

async fn infected_media(backend: Backend) {
    let Ok(addr) = std::env::var("CLAMD_ADDR") else {
        assert!(
            skip_external(),
            "CLAMD_ADDR is not set (host:port of clamd); set SATCHEL_SKIP_EXTERNAL=1 to skip"
        );
        eprintln!("skipped: CLAMD_ADDR is not set");
        return;
    };
    let (host, port) = addr.rsplit_once(':').expect("CLAMD_ADDR is host:port");
    let m = MediaApp::spawn(
        backend,
        &[
            ("CLAMAV_SERVICE_ENABLED", "true"),
            ("CLAMAV_SERVICE_HOST", host),
            ("CLAMAV_SERVICE_PORT", port),
        ],
    )
    .await;
    let eicar = concat!(
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    );
    for format in ["for_local_processing", "for_block_output"] {
        let r = m
            .post(
                ALICE,
                &json!({
                    "file": data_uri("text/plain", eicar.as_bytes()),
                    "graph_exec_id": "v1",
                    "return_format": format,
                    "session_id": "s1",
                }),
            )
            .await;
        let body = expect_error(r, 422, "virus_detected").await;
        let threat = body["error"]["threat"].as_str().unwrap_or_default();
        assert!(threat.to_ascii_lowercase().contains("eicar"), "{body}");
    }
    assert!(files_in(&m.folder("v1")).is_empty());
    assert_eq!(m.app.get_json(ALICE, "/v1/files/count").await["count"], 0);
    m.store(
        ALICE,
        json!({
            "file": data_uri("text/plain", b"clean"),
            "graph_exec_id": "v1",
            "return_format": "for_local_processing",
        }),
    )
    .await;
    let metrics = m
        .app
        .anon(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("satchel_scans_total{outcome=\"infected\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("satchel_scans_total{outcome=\"clean\"} 1"),
        "{metrics}"
    );
}

async fn metrics_and_openapi(backend: Backend) {
    let m = MediaApp::spawn(backend, &[]).await;
    m.store(
        ALICE,
        json!({
            "file": data_uri("text/plain", b"m"),
            "graph_exec_id": "m1",
            "return_format": "for_external_api",
        }),
    )
    .await;
    let r = m
        .post(
            ALICE,
            &json!({"file": "x", "graph_exec_id": "m1", "return_format": "x"}),
        )
        .await;
    expect_error(r, 400, "invalid_input").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = m
        .app
        .anon(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "satchel_http_requests_total{route=\"/v1/media\",method=\"POST\",status=\"200\"} 1",
        "satchel_http_requests_total{route=\"/v1/media\",method=\"POST\",status=\"400\"} 1",
        "satchel_http_request_duration_seconds_count{route=\"/v1/media\"} 2",
    ] {
        assert!(text.contains(expected), "{expected} not in:\n{text}");
    }

    let doc: Value = m
        .app
        .anon(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = &doc["paths"]["/v1/media"]["post"];
    assert!(op.is_object(), "{doc}");
    for status in ["200", "400", "404", "413", "422", "502"] {
        assert!(op["responses"][status].is_object(), "{status}");
    }
    let request = &doc["components"]["schemas"]["MediaRequest"];
    let mut required: Vec<&str> = request["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    required.sort();
    assert_eq!(required, ["file", "graph_exec_id", "return_format"]);
    assert_eq!(
        doc["components"]["schemas"]["MediaReturnFormat"]["enum"],
        json!([
            "for_local_processing",
            "for_external_api",
            "for_block_output"
        ])
    );
}
