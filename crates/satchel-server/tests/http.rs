//! The HTTP API end to end: a real server on a random port, a real HTTP client, every test on
//! SQLite and on PostgreSQL.

mod common;

use common::*;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALICE: &str = "alice";
const BOB: &str = "bob";

fn is_timestamp(v: &Value) -> bool {
    // 2026-12-03T17:09:34.123456Z
    v.as_str().is_some_and(|s| {
        s.len() == 27
            && s.ends_with('Z')
            && s.as_bytes()[19] == b'.'
            && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    })
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

on_both_backends!(
    health_and_readiness,
    authentication_failures,
    audience_when_configured,
    public_key_tokens,
    rsa_public_key_tokens,
    upload_raw_and_read_back,
    upload_multipart,
    malformed_requests,
    conflicts_overwrite_and_rename,
    if_match_preconditions,
    client_checksum,
    file_size_limit,
    quota,
    listing_paging_and_sessions,
    content_headers_and_ranges,
    delete_trash_restore,
    session_delete,
    signed_links,
    cross_user_isolation,
    unknown_routes_and_methods,
    disconnect_mid_upload,
    graceful_shutdown_finishes_uploads,
    scanner_unavailable,
    virus_detected,
    openapi_lists_every_route,
    metrics_and_request_ids,
);

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.anon(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let r = app.anon(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"database": "ok", "storage": "ok", "scanner": "disabled"})
    );
}

async fn authentication_failures(backend: Backend) {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let app = spawn_app(backend).await;
    let now = jsonwebtoken::get_current_timestamp();
    let key = EncodingKey::from_secret(app.secrets.jwt_secret.as_bytes()).unwrap();
    let sign = |claims: Value| encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
    let wrong_key = EncodingKey::from_secret(b"not the secret").unwrap();

    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing header", None),
        (
            "not bearer",
            Some(format!(
                "Basic {}",
                sign(json!({"sub": "a", "exp": now + 60}))
            )),
        ),
        ("malformed", Some("Bearer not.a.jwt".into())),
        ("empty token", Some("Bearer ".into())),
        (
            "bad signature",
            Some(format!(
                "Bearer {}",
                encode(
                    &Header::new(Algorithm::HS256),
                    &json!({"sub": "a", "exp": now + 60}),
                    &wrong_key
                )
                .unwrap()
            )),
        ),
        (
            "expired past leeway",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": "a", "exp": now - 60}))
            )),
        ),
        (
            "no exp",
            Some(format!("Bearer {}", sign(json!({"sub": "a"})))),
        ),
        (
            "empty sub",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": "", "exp": now + 60}))
            )),
        ),
        (
            "no sub",
            Some(format!("Bearer {}", sign(json!({"exp": now + 60})))),
        ),
        (
            "sub not a string",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": 7, "exp": now + 60}))
            )),
        ),
        (
            "alg none",
            Some(format!("Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(json!({"sub": "a", "exp": now + 60}).to_string())
            })),
        ),
    ];
    for (why, authorization) in bad {
        let mut request = app.anon(Method::GET, "/v1/workspace");
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        let r = request.send().await.unwrap();
        assert_eq!(header(&r, "www-authenticate"), "Bearer", "{why}");
        expect_error(r, 401, "unauthenticated").await;
    }

    // An unauthenticated upload gets its 401, even while it is still sending its body.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..48)
        .map(|_| Ok(bytes::Bytes::from(vec![1u8; 64 * 1024])))
        .collect();
    let r = app
        .anon(Method::POST, "/v1/files?filename=big.bin")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthenticated").await;

    // Within the 30 s leeway: accepted.
    let r = app
        .anon(Method::GET, "/v1/workspace")
        .bearer_auth(sign(json!({"sub": "a", "exp": now - 10})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Every /v1 route but the signed download needs a token.
    for (method, path) in satchel_server::api::route_list() {
        if !path.starts_with("/v1/") || path.starts_with("/v1/download/") {
            continue;
        }
        let path = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{session_id}", "s1");
        let r = app
            .anon(method.parse().unwrap(), &path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

async fn audience_when_configured(backend: Backend) {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let app = spawn_app_with(backend, &[("JWT_AUDIENCE", "satchel")]).await;
    let now = jsonwebtoken::get_current_timestamp();
    let key = EncodingKey::from_secret(app.secrets.jwt_secret.as_bytes()).unwrap();
    let with = |claims: Value| {
        let token = encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        app.anon(Method::GET, "/v1/workspace")
            .bearer_auth(token)
            .send()
    };
    let r = with(json!({"sub": "a", "exp": now + 60})).await.unwrap();
    expect_error(r, 401, "unauthenticated").await;
    let r = with(json!({"sub": "a", "exp": now + 60, "aud": "other"}))
        .await
        .unwrap();
    expect_error(r, 401, "unauthenticated").await;
    let r = with(json!({"sub": "a", "exp": now + 60, "aud": "satchel"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = with(json!({"sub": "a", "exp": now + 60, "aud": ["x", "satchel"]}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

const EC_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg5Qjio3w57Nkqf5wG
h3WbL4tsjVLG9pecjj1VTloMeguhRANCAATTyQNIPG4+xD2iQKL6pA4vs4929u07
ZrdQB/tYlB8P+OatgxTLe9wAfmkdm1FaA5RxGLBT2+10ZI8k4n+nWfar
-----END PRIVATE KEY-----
";
const EC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE08kDSDxuPsQ9okCi+qQOL7OPdvbt
O2a3UAf7WJQfD/jmrYMUy3vcAH5pHZtRWgOUcRiwU9vtdGSPJOJ/p1n2qw==
-----END PUBLIC KEY-----
";

const RSA_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCmg2IGFXT3KTEF
1aIChrJ2z18bPNsYDIszgFedn6EXuTKCsMOqpnPhCYuhkhgKwIZwdIEYzR04boHQ
BEYe3yZihqHCXCrBlox0uz2qOHRTP5x3ks+EAHLpx25kHkeO09HUyCwf4ITL/H5J
SHtnRf1U4SeM1HjQpE/0ZcKQHO72LifuMjGtm8XZ7c4wRfVpyxfUQhmkh2/02IX0
7oK8ztCUYUkfLTiFpWf70jV/c4f4VLCq+sI+dnkC+X+GFwRNUiAvWCBQp3TZiMw5
FEmiK9/WVo2UdxffUXyQ9BVvuMWUusiZwDoNU8mMTRv4Fa0XIdZ2GMQM4c1OPZLS
4Aq7Eq4bAgMBAAECggEAPmzL/37k0lJZhBfyvGK2Hk+hFquKceol96Fad4fkU2oF
UzSkrmHn2IqFFAYayFEkNZ2f1mXzWfgn543qoeFD2TUjCKQYDWp87rhRpnKyvZD/
/l4GOTUX36f6LUOizRuBM3X2AN9hub3HtH6dcPquvjcI5kWzo3iuVvAdcHzAY38Q
TW5egvqY6YouavAnM9pYbP+WKzFMFNjXDMSXgWFB3RqCx50MZyUC1i8kOO6v1XjW
I9NhANzZY9h9qa8VCQ+Z7HK4hQh9eCb4XYYnMRCydLqhnYdjeWK8QvbWda32nkje
uyzoodXM+E0PC5GqQt2gb7eCj2bjdaA9au5Ft1JRfQKBgQDZHzr43S9yHxSqJ650
PZEg3zLyfzpsgRePQea4zwk9j41kFMpfitHN2tXrae1aNvKYzZwmpXHY/YHa8uxx
YdZ1zEt7vmJ61qWXWPv++4msOwFDEvEHTl4mJtcK+9dD+u3bZBCBM+1ALBmO/o1M
YjKhlOvUFY5Kv490Jo1YIl83dwKBgQDEVEUfkx6Na7jd9jIR7gL1KAU8sgP3G93j
mXMDIGL3sVk+YW/d0U5afX1HER90wcRU4mbl8r3CjJ5x2JlJ1NHEQgCv2QW9uRe0
YhO1w/h8Dxo67AqZiCjZpSIa/58sULKsuTLrlC9c05Sen7hnE/NFrrr/g0fKIieS
x7q2lLhvfQKBgEzTDRXDhac2siQm2EaPBkwATdGaDP0ZjFGHOvEHaLick6Xm6Vh3
ERdqqCidGXvDV4GTtv3Bqo/h21GyhND1kmGqAMdvLP9T9dGgjcHCFQuY8TBfgmNY
al3LfmmHhLqsDf+D34cn7Xm4YO7EyRBO6qVbwToQyoFOWJ77iSW3O8OvAoGAFG5A
kzyYHVdscYzBQSRnomN7yAkuaHS57ol1conYQrZt9xPktEynvrr4YoDhqSDQ8ZRt
6NgN70T66BYGPayr96R2tdX7xvaQBPF/45Z1MVPRAvi1Uazds2h/2Bdp1Q7AyUCs
j99n3l0WRjuQ0Qk+c63vP8/FlL9hJuEqCP4JA3ECgYBIcwn41kgo/PIl9XYpbtbK
P6FdqTmmaJVF9oVuVbDEj7kw8dnUFqrZRYD59GM7IUv+dOJNuNwChIQfy0boF+cz
W/LoAVKHYYPFnkeGNzTRRZKufld/pCxiO5Xs1FACzRh4R9FUbfIz6fQo8CxMjLJN
The2WZngnUGHPv1haveqqg==
-----END PRIVATE KEY-----
";
const RSA_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApoNiBhV09ykxBdWiAoay
ds9fGzzbGAyLM4BXnZ+hF7kygrDDqqZz4QmLoZIYCsCGcHSBGM0dOG6B0ARGHt8m
YoahwlwqwZaMdLs9qjh0Uz+cd5LPhABy6cduZB5HjtPR1MgsH+CEy/x+SUh7Z0X9
VOEnjNR40KRP9GXCkBzu9i4n7jIxrZvF2e3OMEX1acsX1EIZpIdv9NiF9O6CvM7Q
lGFJHy04haVn+9I1f3OH+FSwqvrCPnZ5Avl/hhcETVIgL1ggUKd02YjMORRJoivf
1laNlHcX31F8kPQVb7jFlLrImcA6DVPJjE0b+BWtFyHWdhjEDOHNTj2S0uAKuxKu
GwIDAQAB
-----END PUBLIC KEY-----
";

/// RS256 with an RSA public key file; the HS256 tokens of `satchel token` keep working.
async fn rsa_public_key_tokens(backend: Backend) {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("jwt.pub.pem");
    std::fs::write(&key_file, RSA_PUBLIC_KEY).unwrap();
    let app = spawn_app_with(
        backend,
        &[("JWT_PUBLIC_KEY_FILE", key_file.to_str().unwrap())],
    )
    .await;
    let now = jsonwebtoken::get_current_timestamp();
    let rs256 = encode(
        &Header::new(Algorithm::RS256),
        &json!({"sub": "rsa-user", "exp": now + 60}),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE_KEY.as_bytes()).unwrap(),
    )
    .unwrap();
    let r = app
        .anon(Method::GET, "/v1/workspace")
        .bearer_auth(&rs256)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["user_id"], "rsa-user");
    let expired = encode(
        &Header::new(Algorithm::RS256),
        &json!({"sub": "rsa-user", "exp": now - 120}),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE_KEY.as_bytes()).unwrap(),
    )
    .unwrap();
    let r = app
        .anon(Method::GET, "/v1/workspace")
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthenticated").await;
    assert_eq!(
        app.get(ALICE, "/v1/workspace").await.status(),
        StatusCode::OK
    );
}

async fn public_key_tokens(backend: Backend) {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("jwt.pub.pem");
    std::fs::write(&key_file, EC_PUBLIC_KEY).unwrap();
    let app = spawn_app_with(
        backend,
        &[("JWT_PUBLIC_KEY_FILE", key_file.to_str().unwrap())],
    )
    .await;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"sub": "idp-user", "exp": now + 60});
    let es256 = encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(EC_PRIVATE_KEY.as_bytes()).unwrap(),
    )
    .unwrap();
    let r = app
        .anon(Method::GET, "/v1/workspace")
        .bearer_auth(&es256)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["user_id"], "idp-user");

    // The public key is never an HMAC secret (algorithm confusion).
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(EC_PUBLIC_KEY.as_bytes()).unwrap(),
    )
    .unwrap();
    let r = app
        .anon(Method::GET, "/v1/workspace")
        .bearer_auth(confused)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthenticated").await;
    // A token in another asymmetric algorithm than the key's is refused.
    let mut header = Header::new(Algorithm::ES384);
    header.alg = Algorithm::ES384;
    let parts: Vec<&str> = es256.split('.').collect();
    let forged_header = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_string(&header).unwrap())
    };
    let forged = format!("{forged_header}.{}.{}", parts[1], parts[2]);
    let r = app
        .anon(Method::GET, "/v1/workspace")
        .bearer_auth(forged)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthenticated").await;
}

async fn upload_raw_and_read_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let content = b"hello, satchel\n";
    let r = app.upload(ALICE, "filename=hello.txt", &content[..]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = header(&r, "location");
    let file: Value = r.json().await.unwrap();
    let id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/files/{id}"));
    assert_eq!(file["name"], "hello.txt");
    assert_eq!(file["path"], "/hello.txt");
    assert_eq!(file["mime_type"], "text/plain");
    assert_eq!(file["size_bytes"], content.len());
    assert_eq!(file["checksum"], sha256_hex(content));
    assert_eq!(file["metadata"], json!({}));
    assert!(is_timestamp(&file["created_at"]), "{file}");
    assert!(is_timestamp(&file["updated_at"]), "{file}");
    let keys: Vec<&String> = file.as_object().unwrap().keys().collect();
    assert_eq!(
        keys.len(),
        10,
        "exactly the FileInfo fields (no storage_path): {keys:?}"
    );
    assert!(file.get("storage_path").is_none());

    let workspace = app.get_json(ALICE, "/v1/workspace").await;
    assert_eq!(file["workspace_id"], workspace["id"]);
    assert_eq!(workspace["user_id"], ALICE);
    assert_eq!(workspace["used_bytes"], content.len());
    assert_eq!(workspace["limit_bytes"], 0);
    assert_eq!(workspace["file_count"], 1);
    assert!(is_timestamp(&workspace["created_at"]) && is_timestamp(&workspace["updated_at"]));

    assert_eq!(app.get_json(ALICE, &format!("/v1/files/{id}")).await, file);
    assert_eq!(
        app.get_json(ALICE, "/v1/files/by-path?path=/hello.txt")
            .await,
        file
    );
    assert_eq!(
        app.get_json(ALICE, "/v1/files/by-path?path=hello.txt")
            .await,
        file
    );
    let r = app.get(ALICE, "/v1/files/by-path").await;
    expect_error(r, 400, "invalid_input").await;
    let r = app.get(ALICE, "/v1/files/by-path?path=/missing.txt").await;
    expect_error(r, 404, "not_found").await;
    let r = app.get(ALICE, "/v1/files/by-path?path=/a/../b").await;
    expect_error(r, 400, "invalid_path").await;

    let r = app.get(ALICE, &format!("/v1/files/{id}/content")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), &content[..]);

    // Options: path (folder), mime_type, metadata in the query; the request's Content-Type
    // is not trusted.
    let r = app
        .req(ALICE, Method::POST, "/v1/files?filename=data.bin&path=/docs/&mime_type=Application/JSON;%20charset=utf-8&metadata=%7B%22k%22%3A1%7D")
        .header("content-type", "text/html")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let file: Value = r.json().await.unwrap();
    assert_eq!(file["path"], "/docs/data.bin");
    assert_eq!(file["mime_type"], "application/json");
    assert_eq!(file["metadata"], json!({"k": 1}));

    // Empty content is a file too.
    let file = app.create(ALICE, "filename=empty.txt", b"").await;
    assert_eq!(file["size_bytes"], 0);
    assert_eq!(file["checksum"], sha256_hex(b""));
    // A streamed (chunked) body with no Content-Length.
    let chunks = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"part one, ")),
        Ok(bytes::Bytes::from_static(b"part two")),
    ]);
    let r = app
        .upload(
            ALICE,
            "filename=chunked.txt",
            reqwest::Body::wrap_stream(chunks),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let file: Value = r.json().await.unwrap();
    assert_eq!(file["checksum"], sha256_hex(b"part one, part two"));

    // No filename for a raw body.
    let r = app.upload(ALICE, "path=/x.txt", "x").await;
    expect_error(r, 400, "invalid_input").await;
    for bad in ["filename=..", "filename=", "filename=a%2F"] {
        let r = app.upload(ALICE, bad, "x").await;
        expect_error(r, 400, "invalid_input").await;
    }
    let r = app
        .upload(ALICE, "filename=a.txt&path=/a/%00/b.txt", "x")
        .await;
    expect_error(r, 400, "invalid_path").await;
}

async fn upload_multipart(backend: Backend) {
    let app = spawn_app(backend).await;
    let send = |form: Form, query: &str| {
        app.req(ALICE, Method::POST, &format!("/v1/files?{query}"))
            .multipart(form)
            .send()
    };

    // The file part alone; the filename comes from the part.
    let form = Form::new().part("file", Part::bytes(&b"abc"[..]).file_name("résumé.pdf"));
    let r = send(form, "").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let file: Value = r.json().await.unwrap();
    assert_eq!(file["name"], "résumé.pdf");
    assert_eq!(file["path"], "/résumé.pdf");
    assert_eq!(file["mime_type"], "application/pdf");
    assert_eq!(file["checksum"], sha256_hex(b"abc"));

    // metadata before the file.
    let form = Form::new()
        .text("metadata", r#"{"source": "before"}"#)
        .part("file", Part::bytes(&b"1"[..]).file_name("before.txt"));
    let r = send(form, "").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["metadata"],
        json!({"source": "before"})
    );

    // metadata after the file.
    let form = Form::new()
        .part("file", Part::bytes(&b"2"[..]).file_name("after.txt"))
        .text("metadata", r#"{"source": "after"}"#);
    let r = send(form, "").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let file: Value = r.json().await.unwrap();
    assert_eq!(file["metadata"], json!({"source": "after"}));
    let id = file["id"].as_str().unwrap();
    let stored = app.get_json(ALICE, &format!("/v1/files/{id}")).await;
    assert_eq!(stored["metadata"], json!({"source": "after"}));

    // Unknown parts are ignored; a missing part filename falls back to ?filename=.
    let form = Form::new()
        .text("comment", "ignored")
        .part("file", Part::bytes(&b"3"[..]))
        .text("other", "ignored too");
    let r = send(form, "filename=from-query.txt&path=/in/")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["path"],
        "/in/from-query.txt"
    );

    // Errors.
    let form = Form::new()
        .text("metadata", "[1, 2]")
        .part("file", Part::bytes(&b"x"[..]).file_name("m.txt"));
    expect_error(send(form, "").await.unwrap(), 400, "invalid_input").await;
    let form = Form::new()
        .text("metadata", "{not json")
        .part("file", Part::bytes(&b"x"[..]).file_name("m.txt"));
    expect_error(send(form, "").await.unwrap(), 400, "invalid_input").await;
    let form = Form::new()
        .text("metadata", "{}")
        .part("file", Part::bytes(&b"x"[..]).file_name("m.txt"));
    expect_error(
        send(form, "metadata=%7B%7D").await.unwrap(),
        400,
        "invalid_input",
    )
    .await;
    let form = Form::new().text("note", "no file here");
    expect_error(send(form, "").await.unwrap(), 400, "invalid_input").await;
    let form = Form::new()
        .part("file", Part::bytes(&b"x"[..]).file_name("one.txt"))
        .part("file", Part::bytes(&b"y"[..]).file_name("two.txt"));
    expect_error(send(form, "").await.unwrap(), 400, "invalid_input").await;
    let form = Form::new().part("file", Part::bytes(&b"x"[..]));
    expect_error(send(form, "").await.unwrap(), 400, "invalid_input").await;
    let big = format!("{{\"k\": \"{}\"}}", "x".repeat(17 * 1024));
    let form = Form::new()
        .text("metadata", big)
        .part("file", Part::bytes(&b"x"[..]).file_name("big-meta.txt"));
    expect_error(send(form, "").await.unwrap(), 400, "invalid_input").await;
    let r = app.get(ALICE, "/v1/files/by-path?path=/m.txt").await;
    expect_error(r, 404, "not_found").await;

    // A malformed multipart body.
    for body in [
        "this is not multipart",
        "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.txt\"\r\n\r\ntruncated",
    ] {
        let r = app
            .req(ALICE, Method::POST, "/v1/files")
            .header("content-type", "multipart/form-data; boundary=XYZ")
            .body(body)
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "invalid_input").await;
    }
    let r = app
        .req(ALICE, Method::POST, "/v1/files")
        .header("content-type", "multipart/form-data")
        .body("no boundary")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_input").await;
    let r = app.get(ALICE, "/v1/files/by-path?path=/t.txt").await;
    expect_error(r, 404, "not_found").await;
    assert!(app.staged_files().is_empty());
}

async fn malformed_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    for query in [
        "limit=abc",
        "limit=0",
        "limit=1001",
        "limit=-1",
        "offset=x",
        "cursor=garbage",
        "offset=1&cursor=abc",
        "include_all_sessions=maybe",
        "session_id=bad%20id",
    ] {
        let r = app.get(ALICE, &format!("/v1/files?{query}")).await;
        expect_error(r, 400, "invalid_input").await;
    }
    let r = app.get(ALICE, "/v1/files/count?limit=x").await;
    expect_error(r, 400, "invalid_input").await;
    let r = app.get(ALICE, "/v1/trash?limit=5000").await;
    expect_error(r, 400, "invalid_input").await;
    for query in [
        "filename=a.txt&overwrite=perhaps",
        "filename=a.txt&on_conflict=merge",
        "filename=a.txt&overwrite=true&on_conflict=rename",
        "filename=a.txt&metadata=5",
        "filename=a.txt&mime_type=not%20a%20mime",
        "filename=a.txt&session_id=bad!",
    ] {
        let r = app.upload(ALICE, query, "x").await;
        expect_error(r, 400, "invalid_input").await;
    }
    // A malformed id names no resource.
    let r = app.get(ALICE, "/v1/files/not-a-uuid").await;
    expect_error(r, 404, "not_found").await;
    let r = app
        .req(ALICE, Method::DELETE, "/v1/files/123")
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;
    assert_eq!(app.get_json(ALICE, "/v1/files/count").await["count"], 0);
}

async fn conflicts_overwrite_and_rename(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app
        .create(
            ALICE,
            "filename=report.pdf&metadata=%7B%22v%22%3A1%7D",
            b"version one",
        )
        .await;
    let id = first["id"].as_str().unwrap().to_owned();

    let r = app.upload(ALICE, "filename=report.pdf", "other").await;
    expect_error(r, 409, "path_exists").await;
    let r = app
        .upload(ALICE, "filename=report.pdf&on_conflict=error", "other")
        .await;
    expect_error(r, 409, "path_exists").await;

    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = app
        .upload(ALICE, "filename=report.pdf&overwrite=true", "version two!")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let second: Value = r.json().await.unwrap();
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["created_at"], first["created_at"]);
    assert_ne!(second["updated_at"], first["updated_at"]);
    assert_eq!(second["checksum"], sha256_hex(b"version two!"));
    assert_eq!(second["metadata"], json!({"v": 1}), "metadata kept");
    let r = app.get(ALICE, &format!("/v1/files/{id}/content")).await;
    assert_eq!(r.text().await.unwrap(), "version two!");

    // on_conflict=overwrite is the same; new metadata replaces the old.
    let r = app
        .upload(
            ALICE,
            "filename=report.pdf&on_conflict=overwrite&metadata=%7B%22v%22%3A3%7D",
            "v3",
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["metadata"],
        json!({"v": 3})
    );

    // The previous versions are in the trash.
    let trash = app.get_json(ALICE, "/v1/trash").await;
    let files = trash["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for f in files {
        assert_eq!(f["original_path"], "/report.pdf");
        assert!(is_timestamp(&f["deleted_at"]));
        assert_ne!(f["id"], first["id"]);
    }
    // overwrite=true on a free path creates.
    let r = app
        .upload(ALICE, "filename=new.txt&overwrite=true", "n")
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Rename.
    let r = app
        .upload(ALICE, "filename=report.pdf&on_conflict=rename", "r1")
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let renamed: Value = r.json().await.unwrap();
    assert_eq!(renamed["path"], "/report (1).pdf");
    assert_eq!(renamed["name"], "report (1).pdf");
    let r = app
        .upload(ALICE, "filename=report.pdf&on_conflict=rename", "r2")
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["path"], "/report (2).pdf");
    let r = app
        .upload(
            ALICE,
            "filename=report.pdf&overwrite=true&on_conflict=rename",
            "x",
        )
        .await;
    expect_error(r, 400, "invalid_input").await;
    assert_eq!(app.get_json(ALICE, "/v1/files/count").await["count"], 4);
}

async fn if_match_preconditions(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = app.create(ALICE, "filename=doc.txt", b"one").await;
    let checksum = file["checksum"].as_str().unwrap().to_owned();
    let put = |if_match: String, body: &'static str, query: &'static str| {
        app.req(
            ALICE,
            Method::POST,
            &format!("/v1/files?filename=doc.txt{query}"),
        )
        .header("if-match", if_match)
        .body(body)
        .send()
    };
    let wrong = format!("\"{}\"", "0".repeat(64));
    expect_error(
        put(wrong, "two", "").await.unwrap(),
        412,
        "precondition_failed",
    )
    .await;
    let weak = format!("W/\"{checksum}\"");
    expect_error(
        put(weak, "two", "").await.unwrap(),
        412,
        "precondition_failed",
    )
    .await;
    let r = put(format!("\"{checksum}\""), "two", "").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let updated: Value = r.json().await.unwrap();
    assert_eq!(updated["id"], file["id"]);
    // The old checksum no longer matches.
    expect_error(
        put(format!("\"{checksum}\""), "three", "").await.unwrap(),
        412,
        "precondition_failed",
    )
    .await;
    let r = put("*".into(), "three", "").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // No live file at the path: 412, even with *.
    let r = app
        .req(ALICE, Method::POST, "/v1/files?filename=absent.txt")
        .header("if-match", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    expect_error(r, 412, "precondition_failed").await;
    let r = put("*".into(), "x", "&on_conflict=rename").await.unwrap();
    expect_error(r, 400, "invalid_input").await;
}

async fn client_checksum(backend: Backend) {
    let app = spawn_app(backend).await;
    let content = b"checked content";
    let good = sha256_hex(content);
    let r = app
        .req(ALICE, Method::POST, "/v1/files?filename=ok.txt")
        .header("x-checksum-sha256", good.to_ascii_uppercase())
        .body(&content[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .req(ALICE, Method::POST, "/v1/files?filename=bad.txt")
        .header("x-checksum-sha256", sha256_hex(b"something else"))
        .body(&content[..])
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "checksum_mismatch").await;
    for malformed in ["abc", &"g".repeat(64), &"a".repeat(65)] {
        let r = app
            .req(ALICE, Method::POST, "/v1/files?filename=bad.txt")
            .header("x-checksum-sha256", malformed)
            .body(&content[..])
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "invalid_input").await;
    }
    assert_eq!(app.get_json(ALICE, "/v1/files/count").await["count"], 1);
    assert_eq!(app.blob_files().len(), 1);
    assert!(app.staged_files().is_empty());
}

async fn file_size_limit(backend: Backend) {
    let app = spawn_app_with(backend, &[("MAX_FILE_SIZE_MB", "1")]).await;
    let limit = 1024 * 1024;
    // Exactly the limit is accepted.
    let r = app
        .upload(ALICE, "filename=exact.bin", vec![7u8; limit])
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // One byte more, with Content-Length: refused before reading.
    let r = app
        .upload(ALICE, "filename=over.bin", vec![7u8; limit + 1])
        .await;
    expect_error(r, 413, "file_too_large").await;

    // Streamed without Content-Length: cut off while streaming.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..20)
        .map(|_| Ok(bytes::Bytes::from(vec![1u8; 64 * 1024])))
        .collect();
    let r = app
        .upload(
            ALICE,
            "filename=stream.bin",
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        )
        .await;
    expect_error(r, 413, "file_too_large").await;

    // Multipart over the limit.
    let form = Form::new().part(
        "file",
        Part::bytes(vec![1u8; limit + 10]).file_name("mp.bin"),
    );
    let r = app
        .req(ALICE, Method::POST, "/v1/files")
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "file_too_large").await;
    // Multipart with a file of exactly the limit (the envelope is not counted).
    let form = Form::new().part(
        "file",
        Part::bytes(vec![1u8; limit]).file_name("mp-exact.bin"),
    );
    let r = app
        .req(ALICE, Method::POST, "/v1/files")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    assert_eq!(app.get_json(ALICE, "/v1/files/count").await["count"], 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.staged_files().is_empty(), "{:?}", app.staged_files());
    assert_eq!(app.blob_files().len(), 2);
}

async fn quota(backend: Backend) {
    let app = spawn_app_with(backend, &[("WORKSPACE_QUOTA_MB", "1")]).await;
    let limit: u64 = 1024 * 1024;
    let r = app
        .upload(ALICE, "filename=a.bin", vec![0u8; 700 * 1024])
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .upload(ALICE, "filename=b.bin", vec![0u8; 400 * 1024])
        .await;
    let body = expect_error(r, 413, "quota_exceeded").await;
    assert_eq!(body["error"]["used_bytes"], 700 * 1024);
    assert_eq!(body["error"]["limit_bytes"], limit);
    // Streamed without a length: refused at the commit.
    let r = app
        .upload(
            ALICE,
            "filename=c.bin",
            reqwest::Body::wrap_stream(futures::stream::iter(vec![Ok::<_, std::io::Error>(
                bytes::Bytes::from(vec![0u8; 400 * 1024]),
            )])),
        )
        .await;
    let body = expect_error(r, 413, "quota_exceeded").await;
    assert_eq!(body["error"]["limit_bytes"], limit);
    // Filling the quota exactly is accepted.
    let r = app
        .upload(ALICE, "filename=d.bin", vec![0u8; 324 * 1024])
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let ws = app.get_json(ALICE, "/v1/workspace").await;
    assert_eq!(ws["used_bytes"], limit);
    assert_eq!(ws["limit_bytes"], limit);
    assert_eq!(ws["file_count"], 2);
    // Another user has their own quota.
    let r = app
        .upload(BOB, "filename=a.bin", vec![0u8; 700 * 1024])
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.staged_files().is_empty());
    assert_eq!(app.blob_files().len(), 3);
}

async fn listing_paging_and_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for name in [
        "Alpha.txt",
        "beta.txt",
        "gamma.txt",
        "ALPHABET.md",
        "delta.txt",
    ] {
        let f = app
            .create(ALICE, &format!("filename={name}&path=/docs/"), b"x")
            .await;
        ids.push(f["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    app.create(ALICE, "filename=other.txt&path=/docs2/", b"x")
        .await;
    app.create(ALICE, "filename=s.txt&session_id=s1", b"x")
        .await;

    let all = app.get_json(ALICE, "/v1/files").await;
    assert_eq!(all["files"].as_array().unwrap().len(), 7);
    assert_eq!(all["has_more"], false);
    assert_eq!(all["next_cursor"], Value::Null);

    // Newest first, then id.
    let page1 = app.get_json(ALICE, "/v1/files?path=/docs&limit=2").await;
    let names = |v: &Value| -> Vec<String> {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&page1), ["delta.txt", "ALPHABET.md"]);
    assert_eq!(page1["has_more"], true);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = app
        .get_json(
            ALICE,
            &format!("/v1/files?path=/docs/&limit=2&cursor={cursor}"),
        )
        .await;
    assert_eq!(names(&page2), ["gamma.txt", "beta.txt"]);
    let cursor = page2["next_cursor"].as_str().unwrap();
    let page3 = app
        .get_json(
            ALICE,
            &format!("/v1/files?path=/docs&limit=2&cursor={cursor}"),
        )
        .await;
    assert_eq!(names(&page3), ["Alpha.txt"]);
    assert_eq!(page3["has_more"], false);
    let by_offset = app
        .get_json(ALICE, "/v1/files?path=/docs&limit=2&offset=2")
        .await;
    assert_eq!(names(&by_offset), ["gamma.txt", "beta.txt"]);

    let alpha = app.get_json(ALICE, "/v1/files?name_contains=alpha").await;
    assert_eq!(names(&alpha), ["ALPHABET.md", "Alpha.txt"]);
    assert_eq!(
        app.get_json(ALICE, "/v1/files/count?name_contains=ALPHA")
            .await,
        json!({"count": 2})
    );
    assert_eq!(
        app.get_json(ALICE, "/v1/files/count?path=/docs").await["count"],
        5
    );
    assert_eq!(app.get_json(ALICE, "/v1/files/count").await["count"], 7);

    // Sessions.
    let s1 = app.get_json(ALICE, "/v1/files?session_id=s1").await;
    assert_eq!(names(&s1), ["s.txt"]);
    assert_eq!(s1["files"][0]["path"], "/sessions/s1/s.txt");
    assert_eq!(
        app.get_json(ALICE, "/v1/files/count?session_id=s2").await["count"],
        0
    );
    let all_sessions = app
        .get_json(
            ALICE,
            "/v1/files/count?session_id=s2&include_all_sessions=true",
        )
        .await;
    assert_eq!(all_sessions["count"], 7);
    let info = app
        .get_json(ALICE, "/v1/files/by-path?path=s.txt&session_id=s1")
        .await;
    assert_eq!(info["path"], "/sessions/s1/s.txt");
    let r = app
        .get(ALICE, "/v1/files/by-path/content?path=s.txt&session_id=s1")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn content_headers_and_ranges(backend: Backend) {
    let app = spawn_app(backend).await;
    let content = b"0123456789";
    let file = app
        .create(ALICE, "filename=%E6%97%A5%E6%9C%AC%20%22q%22.txt", content)
        .await;
    let id = file["id"].as_str().unwrap();
    let etag = format!("\"{}\"", sha256_hex(content));
    let path = format!("/v1/files/{id}/content");
    let get = |headers: &[(&str, &str)]| {
        let mut r = app.req(ALICE, Method::GET, &path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send()
    };

    let r = get(&[]).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "text/plain");
    assert_eq!(header(&r, "content-length"), "10");
    assert_eq!(header(&r, "etag"), etag);
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(
        header(&r, "content-security-policy"),
        "default-src 'none'; sandbox"
    );
    assert_eq!(
        header(&r, "content-disposition"),
        "attachment; filename=\"__ _q_.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%20%22q%22.txt"
    );
    assert_eq!(r.bytes().await.unwrap(), &content[..]);

    for (range, expected, content_range) in [
        ("bytes=0-3", &b"0123"[..], "bytes 0-3/10"),
        ("bytes=7-", &b"789"[..], "bytes 7-9/10"),
        ("bytes=-3", &b"789"[..], "bytes 7-9/10"),
        ("bytes=-30", &content[..], "bytes 0-9/10"),
        ("bytes=8-100", &b"89"[..], "bytes 8-9/10"),
    ] {
        let r = get(&[("range", range)]).await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&r, "content-range"), content_range);
        assert_eq!(header(&r, "content-length"), expected.len().to_string());
        assert_eq!(r.bytes().await.unwrap(), expected, "{range}");
    }
    for range in ["bytes=10-", "bytes=50-60", "bytes=-0"] {
        let r = get(&[("range", range)]).await.unwrap();
        assert_eq!(header(&r, "content-range"), "bytes */10");
        expect_error(r, 416, "range_not_satisfiable").await;
    }
    // Several ranges, a malformed header, another unit: the whole body.
    for range in ["bytes=0-1,4-5", "bytes=5-2", "bytes=abc", "lines=1-2"] {
        let r = get(&[("range", range)]).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{range}");
        assert_eq!(r.bytes().await.unwrap(), &content[..]);
    }
    // If-Range with another ETag: the whole body.
    let r = get(&[("range", "bytes=0-1"), ("if-range", "\"other\"")])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(&[("range", "bytes=0-1"), ("if-range", &etag)])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);

    // Conditional requests.
    let r = get(&[("if-none-match", &etag)]).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&r, "etag"), etag);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = get(&[("if-none-match", &format!("\"x\", W/{etag}"))])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = get(&[("if-none-match", "\"nope\"")]).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // HEAD: the headers, no body.
    let r = app.req(ALICE, Method::HEAD, &path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), "10");
    assert_eq!(header(&r, "etag"), etag);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = app
        .req(ALICE, Method::HEAD, &path)
        .header("range", "bytes=2-3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), "bytes 2-3/10");

    // By path, with the same behaviour.
    let r = app
        .req(
            ALICE,
            Method::GET,
            "/v1/files/by-path/content?path=/%E6%97%A5%E6%9C%AC%20%22q%22.txt",
        )
        .header("range", "bytes=1-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), &b"12"[..]);
    let r = app.get(ALICE, "/v1/files/by-path/content?path=/nope").await;
    expect_error(r, 404, "not_found").await;
    let r = app.get(ALICE, "/v1/files/by-path/content").await;
    expect_error(r, 400, "invalid_input").await;

    // An empty file: 200 with no bytes; any range is unsatisfiable.
    let empty = app.create(ALICE, "filename=empty.bin", b"").await;
    let empty_path = format!("/v1/files/{}/content", empty["id"].as_str().unwrap());
    let r = app.get(ALICE, &empty_path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "application/octet-stream");
    assert_eq!(header(&r, "content-length"), "0");
    let r = app
        .req(ALICE, Method::GET, &empty_path)
        .header("range", "bytes=0-")
        .send()
        .await
        .unwrap();
    expect_error(r, 416, "range_not_satisfiable").await;

    // A larger file streams intact.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let r = app.upload(ALICE, "filename=big.bin", big.clone()).await;
    let big_file: Value = r.json().await.unwrap();
    let r = app
        .get(
            ALICE,
            &format!("/v1/files/{}/content", big_file["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), &big[..]);
}

async fn delete_trash_restore(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = app
        .create(ALICE, "filename=keep.txt&path=/notes/", b"important")
        .await;
    let id = file["id"].as_str().unwrap().to_owned();

    let r = app
        .req(ALICE, Method::DELETE, &format!("/v1/files/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.bytes().await.unwrap().is_empty());
    expect_error(
        app.get(ALICE, &format!("/v1/files/{id}")).await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        app.get(ALICE, &format!("/v1/files/{id}/content")).await,
        404,
        "not_found",
    )
    .await;
    let r = app
        .req(ALICE, Method::DELETE, &format!("/v1/files/{id}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;
    let r = app
        .req(
            ALICE,
            Method::DELETE,
            &format!("/v1/files/{}", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;

    let trash = app.get_json(ALICE, "/v1/trash").await;
    assert_eq!(trash["has_more"], false);
    let entry = &trash["files"][0];
    assert_eq!(entry["id"], file["id"]);
    assert_eq!(entry["original_path"], "/notes/keep.txt");
    assert!(entry["path"]
        .as_str()
        .unwrap()
        .starts_with("/notes/keep.txt__deleted__"));
    assert!(is_timestamp(&entry["deleted_at"]));
    assert_eq!(entry["checksum"], file["checksum"]);
    assert!(entry.get("storage_path").is_none());
    assert_eq!(
        app.get_json(ALICE, "/v1/trash?path=/notes").await["files"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get_json(ALICE, "/v1/trash?path=/other").await["files"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The path is free at once; restoring onto it conflicts.
    app.create(ALICE, "filename=keep.txt&path=/notes/", b"newer")
        .await;
    let restore = |body: Option<&'static str>| {
        let r = app.req(ALICE, Method::POST, &format!("/v1/files/{id}/restore"));
        match body {
            Some(b) => r.header("content-type", "application/json").body(b),
            None => r,
        }
        .send()
    };
    expect_error(restore(None).await.unwrap(), 409, "path_exists").await;
    expect_error(
        restore(Some("{\"path\": 5}")).await.unwrap(),
        400,
        "invalid_input",
    )
    .await;
    expect_error(
        restore(Some("not json")).await.unwrap(),
        400,
        "invalid_input",
    )
    .await;
    expect_error(
        restore(Some("{\"path\": \"/a/../b\"}")).await.unwrap(),
        400,
        "invalid_path",
    )
    .await;
    let r = restore(Some("{\"path\": \"/notes/keep (restored).txt\"}"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let restored: Value = r.json().await.unwrap();
    assert_eq!(restored["id"], file["id"]);
    assert_eq!(restored["path"], "/notes/keep (restored).txt");
    assert!(restored.get("deleted_at").is_none());
    let r = app.get(ALICE, &format!("/v1/files/{id}/content")).await;
    assert_eq!(r.text().await.unwrap(), "important");
    expect_error(restore(None).await.unwrap(), 404, "not_found").await;

    // An empty body restores to the original path.
    let other = app.create(ALICE, "filename=second.txt", b"2").await;
    let other_id = other["id"].as_str().unwrap();
    app.req(ALICE, Method::DELETE, &format!("/v1/files/{other_id}"))
        .send()
        .await
        .unwrap();
    let r = app
        .req(
            ALICE,
            Method::POST,
            &format!("/v1/files/{other_id}/restore"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["path"], "/second.txt");
    assert_eq!(
        app.get_json(ALICE, "/v1/trash").await["files"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

async fn session_delete(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create(ALICE, "filename=a.txt&session_id=s1", b"a")
        .await;
    app.create(ALICE, "filename=b.txt&session_id=s1&path=sub/", b"b")
        .await;
    app.create(ALICE, "filename=c.txt&session_id=s2", b"c")
        .await;
    app.create(ALICE, "filename=d.txt", b"d").await;
    let r = app
        .req(ALICE, Method::DELETE, "/v1/sessions/s1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"deleted": 2}));
    let r = app
        .req(ALICE, Method::DELETE, "/v1/sessions/s1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"deleted": 0}));
    let r = app
        .req(ALICE, Method::DELETE, "/v1/sessions/never-used")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"deleted": 0}));
    let r = app
        .req(ALICE, Method::DELETE, "/v1/sessions/bad.id")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_input").await;
    assert_eq!(app.get_json(ALICE, "/v1/files/count").await["count"], 2);
    assert_eq!(
        app.get_json(ALICE, "/v1/trash").await["files"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

async fn signed_links(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = app
        .create(ALICE, "filename=shared.txt", b"shared bytes")
        .await;
    let id = file["id"].as_str().unwrap().to_owned();
    let mint = |body: Option<Value>| {
        let r = app.req(ALICE, Method::POST, &format!("/v1/files/{id}/download-url"));
        match body {
            Some(b) => r.json(&b),
            None => r,
        }
        .send()
    };

    // Default expiry: one hour.
    let r = mint(None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let link: Value = r.json().await.unwrap();
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/v1/download/", app.base)),
        "{url}"
    );
    assert!(is_timestamp(&link["expires_at"]), "{link}");
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(link["expires_at"].as_str().unwrap()).unwrap();
    let in_an_hour = chrono::Utc::now() + chrono::Duration::seconds(3600);
    assert!((expires_at.timestamp() - in_an_hour.timestamp()).abs() < 5);

    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "etag"),
        format!("\"{}\"", sha256_hex(b"shared bytes"))
    );
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert!(header(&r, "content-disposition").starts_with("attachment; filename=\"shared.txt\""));
    assert_eq!(r.text().await.unwrap(), "shared bytes");
    let r = app
        .client
        .get(&url)
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.text().await.unwrap(), "bytes");
    let r = app
        .client
        .get(&url)
        .header("range", "bytes=99-")
        .send()
        .await
        .unwrap();
    expect_error(r, 416, "range_not_satisfiable").await;
    let r = app.client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), "12");

    // expires_in bounds.
    for ok in [
        json!({"expires_in": 1}),
        json!({"expires_in": 604800}),
        json!({}),
    ] {
        assert_eq!(mint(Some(ok)).await.unwrap().status(), StatusCode::OK);
    }
    for bad in [
        json!({"expires_in": 0}),
        json!({"expires_in": 604801}),
        json!({"expires_in": -5}),
        json!({"expires_in": "60"}),
        json!({"expires_in": 1.5}),
        json!({"expiry": 60}),
    ] {
        expect_error(mint(Some(bad)).await.unwrap(), 400, "invalid_input").await;
    }
    let r = app
        .req(
            ALICE,
            Method::POST,
            &format!("/v1/files/{}/download-url", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;

    // Tampered and garbage tokens.
    let token = url.rsplit('/').next().unwrap().to_owned();
    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [tampered.as_str(), "garbage", "x", &format!("{token}AA")] {
        let r = app
            .anon(Method::GET, &format!("/v1/download/{bad}"))
            .send()
            .await
            .unwrap();
        expect_error(r, 403, "link_invalid").await;
    }
    // A link signed with another secret.
    let claims = satchel::signing::DownloadClaims {
        workspace_id: file["workspace_id"].as_str().unwrap().parse().unwrap(),
        file_id: id.parse().unwrap(),
        checksum: file["checksum"].as_str().unwrap().to_owned(),
        expires_at: chrono::Utc::now().timestamp() + 60,
    };
    let foreign = satchel::signing::create_download_token("another secret", &claims).unwrap();
    let r = app
        .anon(Method::GET, &format!("/v1/download/{foreign}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "link_invalid").await;

    // Expired: a real link with expires_in=1, and a crafted one.
    let short: Value = mint(Some(json!({"expires_in": 1})))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expired_claims = satchel::signing::DownloadClaims {
        expires_at: chrono::Utc::now().timestamp() - 1,
        ..claims.clone()
    };
    let expired =
        satchel::signing::create_download_token(&app.secrets.signing_secret, &expired_claims)
            .unwrap();
    let r = app
        .anon(Method::GET, &format!("/v1/download/{expired}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "link_expired").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = app
        .client
        .get(short["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "link_expired").await;

    // After an overwrite the old link is dead; a new one works.
    let r = app
        .upload(ALICE, "filename=shared.txt&overwrite=true", "new content")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    expect_error(app.client.get(&url).send().await.unwrap(), 404, "not_found").await;
    let fresh: Value = mint(None).await.unwrap().json().await.unwrap();
    let fresh_url = fresh["url"].as_str().unwrap().to_owned();
    assert_eq!(
        app.client
            .get(&fresh_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "new content"
    );

    // After a delete: 404.
    app.req(ALICE, Method::DELETE, &format!("/v1/files/{id}"))
        .send()
        .await
        .unwrap();
    expect_error(
        app.client.get(&fresh_url).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
}

async fn cross_user_isolation(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = app
        .create(ALICE, "filename=secret.txt&session_id=s1", b"alice's")
        .await;
    let id = file["id"].as_str().unwrap().to_owned();
    let deleted = app.create(ALICE, "filename=gone.txt", b"x").await;
    let deleted_id = deleted["id"].as_str().unwrap().to_owned();
    app.req(ALICE, Method::DELETE, &format!("/v1/files/{deleted_id}"))
        .send()
        .await
        .unwrap();

    for (method, path) in [
        (Method::GET, format!("/v1/files/{id}")),
        (Method::GET, format!("/v1/files/{id}/content")),
        (Method::HEAD, format!("/v1/files/{id}/content")),
        (Method::DELETE, format!("/v1/files/{id}")),
        (Method::POST, format!("/v1/files/{id}/download-url")),
        (Method::POST, format!("/v1/files/{deleted_id}/restore")),
        (
            Method::GET,
            "/v1/files/by-path?path=/sessions/s1/secret.txt".to_owned(),
        ),
        (
            Method::GET,
            "/v1/files/by-path?path=secret.txt&session_id=s1".to_owned(),
        ),
        (
            Method::GET,
            "/v1/files/by-path/content?path=/sessions/s1/secret.txt".to_owned(),
        ),
    ] {
        let r = app.req(BOB, method.clone(), &path).send().await.unwrap();
        if method == Method::HEAD {
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "HEAD {path}");
        } else {
            expect_error(r, 404, "not_found").await;
        }
    }
    // Bob cannot overwrite Alice's file through a path either: his write is his own file.
    let r = app
        .upload(
            BOB,
            "filename=secret.txt&session_id=s1&overwrite=true",
            "bob's",
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let bobs: Value = r.json().await.unwrap();
    assert_ne!(bobs["id"], file["id"]);
    assert_ne!(bobs["workspace_id"], file["workspace_id"]);

    assert_eq!(
        app.get_json(BOB, "/v1/files?include_all_sessions=true")
            .await["files"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get_json(BOB, "/v1/files/count?session_id=s1").await["count"],
        1
    );
    assert_eq!(
        app.get_json(BOB, "/v1/trash").await["files"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let r = app
        .req(BOB, Method::DELETE, "/v1/sessions/s1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 1);

    // Alice's data is untouched.
    let r = app.get(ALICE, &format!("/v1/files/{id}/content")).await;
    assert_eq!(r.text().await.unwrap(), "alice's");
    assert_eq!(
        app.get_json(ALICE, "/v1/trash").await["files"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let alice_ws = app.get_json(ALICE, "/v1/workspace").await;
    let bob_ws = app.get_json(BOB, "/v1/workspace").await;
    assert_ne!(alice_ws["id"], bob_ws["id"]);
    assert_eq!(alice_ws["file_count"], 1);
}

async fn unknown_routes_and_methods(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/", "/v1", "/v1/nothing", "/v2/files", "/v1/files/a/b/c"] {
        let r = app.get(ALICE, path).await;
        expect_error(r, 404, "not_found").await;
    }
    let r = app
        .req(ALICE, Method::PUT, "/v1/files")
        .send()
        .await
        .unwrap();
    let allow = header(&r, "allow");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let (status, _, _) = error_of(r).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let r = app.anon(Method::POST, "/healthz").send().await.unwrap();
    let (status, _, _) = error_of(r).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

async fn disconnect_mid_upload(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token(ALICE);
    for multipart in [false, true] {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let (content_type, preamble) = if multipart {
            (
                "multipart/form-data; boundary=BOUNDARY",
                "--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.bin\"\r\n\r\n",
            )
        } else {
            ("application/octet-stream", "")
        };
        let head = format!(
            "POST /v1/files?filename=cut.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nContent-Length: 10000000\r\n\r\n{preamble}",
            app.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..8 {
            stream.write_all(&[42u8; 64 * 1024]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stream.flush().await.unwrap();
        // Give the server time to stage some bytes, then vanish.
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(stream);
    }

    let mut clean = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if app.staged_files().is_empty() && app.blob_files().is_empty() {
            clean = true;
            break;
        }
    }
    assert!(
        clean,
        "staged: {:?}, blobs: {:?}",
        app.staged_files(),
        app.blob_files()
    );
    assert_eq!(
        app.get_json(ALICE, "/v1/files/count?include_all_sessions=true")
            .await["count"],
        0
    );
    assert_eq!(app.get_json(ALICE, "/v1/workspace").await["used_bytes"], 0);
    let r = app.anon(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.create(ALICE, "filename=cut.bin", b"still works").await;
}

async fn graceful_shutdown_finishes_uploads(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let token = app.token(ALICE);
    let body = vec![5u8; 256 * 1024];
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/files?filename=slow.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        app.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..1000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Shutdown begins while the upload is in flight.
    app.signal_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(&body[1000..]).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    tokio::time::timeout(Duration::from_secs(10), app.shutdown())
        .await
        .expect("server stops")
        .unwrap();
    // New connections are refused now.
    assert!(tokio::net::TcpStream::connect(app.addr).await.is_err());
}

async fn scanner_unavailable(backend: Backend) {
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let app = spawn_app_with(
        backend,
        &[
            ("CLAMAV_SERVICE_ENABLED", "true"),
            ("CLAMAV_SERVICE_HOST", "127.0.0.1"),
            ("CLAMAV_SERVICE_PORT", &closed),
            ("CLAMAV_SERVICE_TIMEOUT", "2"),
        ],
    )
    .await;
    let r = app.upload(ALICE, "filename=a.txt", "some content").await;
    let body = expect_error(r, 503, "scanner_unavailable").await;
    assert!(body["error"].get("threat").is_none());
    assert_eq!(app.get_json(ALICE, "/v1/files/count").await["count"], 0);
    let r = app.anon(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = r.json().await.unwrap();
    assert_eq!(ready["database"], "ok");
    assert_eq!(ready["storage"], "ok");
    assert_ne!(ready["scanner"], "ok");
    let metrics = app
        .anon(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("satchel_scans_total{outcome=\"unavailable\"} 1"),
        "{metrics}"
    );
}

async fn virus_detected(backend: Backend) {
    let Ok(addr) = std::env::var("CLAMD_ADDR") else {
        assert!(
            skip_external(),
            "CLAMD_ADDR is not set (host:port of clamd); set SATCHEL_SKIP_EXTERNAL=1 to skip"
        );
        eprintln!("skipped: CLAMD_ADDR is not set");
        return;
    };
    let (host, port) = addr.rsplit_once(':').expect("CLAMD_ADDR is host:port");
    let app = spawn_app_with(
        backend,
        &[
            ("CLAMAV_SERVICE_ENABLED", "true"),
            ("CLAMAV_SERVICE_HOST", host),
            ("CLAMAV_SERVICE_PORT", port),
        ],
    )
    .await;
    let r = app.anon(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["scanner"], "ok");

    let eicar = concat!(
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    );
    let r = app.upload(ALICE, "filename=eicar.com", eicar).await;
    let body = expect_error(r, 422, "virus_detected").await;
    let threat = body["error"]["threat"].as_str().unwrap_or_default();
    assert!(threat.to_ascii_lowercase().contains("eicar"), "{body}");
    let form = Form::new().part("file", Part::bytes(eicar.as_bytes()).file_name("eicar.txt"));
    let r = app
        .req(ALICE, Method::POST, "/v1/files")
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_error(r, 422, "virus_detected").await;
    assert_eq!(app.get_json(ALICE, "/v1/files/count").await["count"], 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.blob_files().is_empty() && app.staged_files().is_empty());

    app.create(ALICE, "filename=clean.txt", b"perfectly clean")
        .await;
    let metrics = app
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

async fn openapi_lists_every_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.anon(Method::GET, "/openapi.json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    let routes = satchel_server::api::route_list();
    assert!(routes.len() >= 20);
    for (method, path) in &routes {
        assert!(
            doc["paths"][*path][method.to_ascii_lowercase()].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
        // And the router serves it (neither the unknown-route fallback nor 405).
        let concrete = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{session_id}", "s1")
            .replace("{token}", "x");
        let r = app
            .req(ALICE, method.parse().unwrap(), &concrete)
            .send()
            .await
            .unwrap();
        assert_ne!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        if r.status() == StatusCode::NOT_FOUND && *method != "HEAD" {
            let (_, _, body) = error_of(r).await;
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                !message.starts_with("no route"),
                "{method} {path}: {message}"
            );
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

async fn metrics_and_request_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = app.create(ALICE, "filename=m.txt", b"metric bytes").await;
    let r = app
        .get(
            ALICE,
            &format!("/v1/files/{}/content", file["id"].as_str().unwrap()),
        )
        .await;
    assert!(!header(&r, "x-request-id").is_empty());
    r.bytes().await.unwrap();
    let r = app
        .anon(Method::GET, "/healthz")
        .header("x-request-id", "my-request-42")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-request-id"), "my-request-42");
    let _ = app.get(ALICE, "/v1/nowhere").await;

    let r = app.anon(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "content-type").starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for expected in [
        "satchel_http_requests_total{route=\"/v1/files\",method=\"POST\",status=\"201\"} 1",
        "satchel_http_requests_total{route=\"/v1/files/{id}/content\",method=\"GET\",status=\"200\"} 1",
        "satchel_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "satchel_http_request_duration_seconds_count{route=\"/healthz\"} 1",
        "satchel_http_errors_total{code=\"not_found\"}",
    ] {
        assert!(text.contains(expected), "{expected} not in:\n{text}");
    }
    let bytes = |direction: &str| -> u64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "satchel_http_body_bytes_total{{direction=\"{direction}\"}} "
                ))
            })
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(bytes("in") >= 12);
    assert!(bytes("out") >= 12);
}
