//! Builds the GCS [`ObjectStore`] from the configuration: `media_gcs_bucket_name`,
//! `gcs_endpoint` (emulators; default the real service), and a service-account JSON key from
//! `gcs_credentials_file` or `GOOGLE_APPLICATION_CREDENTIALS`.
//!
//! Credentials are only ever that key file: the metadata server, gcloud's well-known file and
//! other implicit sources are switched off, so nothing is looked up on the network at start-up.
//! V4 signed URLs are computed locally with the key (two operators: the signing one holds the
//! key and nothing else). Requests to the real service carry an OAuth token that OpenDAL
//! obtains from the key (refreshed before it expires). An `http://` endpoint is an emulator:
//! requests there carry a placeholder token instead (emulators check none, and a real token
//! must never travel in plain text).

use super::object::{ObjectStore, Upload};
use super::StoreTuning;
use crate::{Config, Error, ErrorCode, Result};
use opendal::Operator;
use reqsign_google::{Credential, ServiceAccount, ServiceAccountTokenCredentialProvider, Token};
use std::path::Path;

const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

fn config_error(key: &str, message: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("configuration key `{key}`: {message}"))
}

pub(super) async fn open(config: &Config, tuning: &StoreTuning) -> Result<ObjectStore> {
    let bucket = config
        .media_gcs_bucket_name
        .as_deref()
        .ok_or_else(|| config_error("media_gcs_bucket_name", "not set"))?;
    if bucket.contains('/') || bucket.chars().any(char::is_whitespace) {
        return Err(config_error(
            "media_gcs_bucket_name",
            format!("{bucket:?} is not a bucket name"),
        ));
    }
    let endpoint = config
        .gcs_endpoint
        .as_deref()
        .unwrap_or(DEFAULT_ENDPOINT)
        .trim_end_matches('/')
        .to_owned();
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(config_error(
            "gcs_endpoint",
            format!("{endpoint:?} must start with https:// (or http:// for an emulator)"),
        ));
    }
    let (key_source, key_file) = match &config.gcs_credentials_file {
        Some(path) => ("gcs_credentials_file", path.clone()),
        None => match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(path) if !path.is_empty() => ("GOOGLE_APPLICATION_CREDENTIALS", path.into()),
            _ => return Err(config_error(
                "gcs_credentials_file",
                "media_gcs_bucket_name is set but no credentials are: set gcs_credentials_file \
                     (or GOOGLE_APPLICATION_CREDENTIALS) to a service-account JSON key",
            )),
        },
    };
    let account = read_service_account(&key_file)
        .await
        .map_err(|m| config_error(key_source, format!("{}: {m}", key_file.display())))?;

    let emulator = endpoint.starts_with("http://");
    let builder = || {
        opendal::services::Gcs::default()
            .bucket(bucket)
            .endpoint(&endpoint)
            .disable_vm_metadata()
            .disable_config_load()
    };
    let io_builder = if emulator {
        builder().credential_provider(FixedCredential(Credential {
            service_account: Some(account.clone()),
            token: Some(Token {
                access_token: "emulator-placeholder".into(),
                expires_at: None,
            }),
            signer_email: None,
        }))
    } else {
        builder().credential_provider(
            ServiceAccountTokenCredentialProvider::new(account.clone()).with_scope(SCOPE),
        )
    };
    let signer_builder =
        builder().credential_provider(FixedCredential(Credential::with_service_account(account)));
    let io = Operator::new(io_builder).map_err(|e| config_error("media_gcs_bucket_name", e))?;
    let signer =
        Operator::new(signer_builder).map_err(|e| config_error("media_gcs_bucket_name", e))?;

    let store = ObjectStore::new("gcs", bucket, io, signer, Upload::Resumable, tuning);
    store
        .probe_signing()
        .await
        .map_err(|e| config_error(key_source, format!("the key cannot sign URLs: {e}")))?;
    if tuning.verify_bucket {
        store.probe().await.map_err(|e| {
            Error::new(
                ErrorCode::StorageUnavailable,
                format!(
                    "media_gcs_bucket_name: bucket {bucket:?} at {endpoint} is not usable: {e}"
                ),
            )
        })?;
    }
    tracing::info!(%bucket, %endpoint, emulator, "storage: Google Cloud Storage");
    Ok(store)
}

/// The key file's service account. Only a `service_account` key can sign URLs locally.
async fn read_service_account(path: &Path) -> std::result::Result<ServiceAccount, String> {
    #[derive(serde::Deserialize)]
    struct KeyFile {
        #[serde(rename = "type")]
        kind: Option<String>,
        client_email: Option<String>,
        private_key: Option<String>,
    }
    let raw = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read it: {e}"))?;
    let file: KeyFile =
        serde_json::from_slice(&raw).map_err(|e| format!("not a JSON key file: {e}"))?;
    match file.kind.as_deref() {
        Some("service_account") => {}
        other => {
            return Err(format!(
                "type is {other:?}, expected \"service_account\" (signed URLs need the \
                 service account's private key)"
            ))
        }
    }
    let client_email = file
        .client_email
        .filter(|e| !e.is_empty())
        .ok_or("client_email is missing")?;
    let private_key = file
        .private_key
        .filter(|k| k.contains("-----BEGIN PRIVATE KEY-----"))
        .ok_or("private_key is missing or not a PKCS#8 PEM key")?;
    Ok(ServiceAccount {
        private_key,
        client_email,
    })
}

/// Always the same credential: the key file was read once, at start-up.
#[derive(Debug)]
struct FixedCredential(Credential);

impl reqsign_core::ProvideCredential for FixedCredential {
    type Credential = Credential;

    async fn provide_credential(
        &self,
        _ctx: &reqsign_core::Context,
    ) -> reqsign_core::Result<Option<Credential>> {
        Ok(Some(self.0.clone()))
    }
}
