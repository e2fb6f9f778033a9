//! Builds the S3 [`ObjectStore`] from the configuration: `media_s3_bucket_name`, `s3_region`
//! (else `AWS_REGION` / `AWS_DEFAULT_REGION`), `s3_endpoint` (else `AWS_ENDPOINT_URL_S3` /
//! `AWS_ENDPOINT_URL`; default AWS), `s3_force_path_style`, and static keys from
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
//!
//! Nothing else is consulted: no profile files, no instance metadata service, no role
//! assumption, so start-up makes no request but the bucket check, and SigV4 presigning is a
//! local HMAC computation.
//!
//! Addressing: virtual-host style (`{bucket}.{endpoint host}`) for AWS; path style when
//! `s3_force_path_style` is set, or when the endpoint's host is an IP address or `localhost`
//! (where bucket subdomains cannot resolve: emulators, MinIO on a bare address).

use super::object::{ObjectStore, Upload};
use super::StoreTuning;
use crate::{Config, Error, ErrorCode, Result};
use opendal::Operator;

/// S3's smallest part (all but the last).
const MIN_PART: usize = 5 * 1024 * 1024;

fn config_error(key: &str, message: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("configuration key `{key}`: {message}"))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether bucket subdomains of this endpoint's host cannot work.
fn needs_path_style(endpoint: &str) -> bool {
    let Ok(url) = url::Url::parse(endpoint) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)) => true,
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

pub(super) async fn open(config: &Config, tuning: &StoreTuning) -> Result<ObjectStore> {
    let bucket = config
        .media_s3_bucket_name
        .as_deref()
        .ok_or_else(|| config_error("media_s3_bucket_name", "not set"))?;
    if bucket.contains('/') || bucket.chars().any(char::is_whitespace) {
        return Err(config_error(
            "media_s3_bucket_name",
            format!("{bucket:?} is not a bucket name"),
        ));
    }
    let region = config
        .s3_region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .ok_or_else(|| {
            config_error(
                "s3_region",
                "media_s3_bucket_name is set but no region is: set s3_region or AWS_REGION",
            )
        })?;
    let endpoint = config
        .s3_endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .map(|e| e.trim_end_matches('/').to_owned());
    if let Some(e) = &endpoint {
        if !(e.starts_with("https://") || e.starts_with("http://")) || url::Url::parse(e).is_err() {
            return Err(config_error(
                "s3_endpoint",
                format!("{e:?} is not an http(s) URL"),
            ));
        }
    }
    let (Some(access_key), Some(secret_key)) =
        (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
    else {
        return Err(config_error(
            "media_s3_bucket_name",
            "S3 storage needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    };
    if tuning.part_size < MIN_PART {
        return Err(Error::internal(format!(
            "S3 part size {} is below the 5 MiB minimum",
            tuning.part_size
        )));
    }
    let path_style =
        config.s3_force_path_style || endpoint.as_deref().is_some_and(needs_path_style);

    let mut builder = opendal::services::S3::default()
        .bucket(bucket)
        .region(&region)
        .access_key_id(&access_key)
        .secret_access_key(&secret_key)
        .disable_config_load()
        .disable_ec2_metadata();
    if let Some(e) = &endpoint {
        builder = builder.endpoint(e);
    }
    if let Some(token) = env("AWS_SESSION_TOKEN") {
        builder = builder.session_token(&token);
    }
    if !path_style {
        builder = builder.enable_virtual_host_style();
    }
    let op = Operator::new(builder).map_err(|e| config_error("media_s3_bucket_name", e))?;
    let upload = Upload::Multipart {
        part_size: tuning.part_size,
        concurrency: tuning.part_concurrency.max(1),
    };
    // Presigning with static keys is local; the signer needs no layers.
    let store = ObjectStore::new("s3", bucket, op.clone(), op, upload, tuning);
    let shown = endpoint.as_deref().unwrap_or("AWS");
    if tuning.verify_bucket {
        store.probe().await.map_err(|e| {
            Error::new(
                ErrorCode::StorageUnavailable,
                format!("media_s3_bucket_name: bucket {bucket:?} at {shown} is not usable: {e}"),
            )
        })?;
    }
    tracing::info!(%bucket, endpoint = %shown, %region, path_style, "storage: S3");
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::needs_path_style;

    #[test]
    fn path_style_where_subdomains_cannot_resolve() {
        assert!(needs_path_style("http://127.0.0.1:5000"));
        assert!(needs_path_style("http://[::1]:5000"));
        assert!(needs_path_style("http://localhost:9000"));
        assert!(!needs_path_style("https://s3.eu-west-1.amazonaws.com"));
        assert!(!needs_path_style("http://minio:9000"));
    }
}
