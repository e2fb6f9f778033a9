//! Settings with the seed's names (SPEC §9): a TOML file and upper-cased environment variables,
//! the environment winning. Every value is parsed here, at start-up, so a bad value fails with a
//! message naming its key instead of surfacing at the first request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Bytes in one `*_mb` unit (SPEC §10: MiB).
pub const MIB: u64 = 1024 * 1024;

/// Every key this version understands; anything else in the TOML file is a typo and refused.
const KEYS: &[&str] = &[
    "database_url",
    "app_data_dir",
    "workspace_storage_dir",
    "media_gcs_bucket_name",
    "media_s3_bucket_name",
    "gcs_endpoint",
    "gcs_credentials_file",
    "s3_endpoint",
    "s3_region",
    "s3_force_path_style",
    "max_file_size_mb",
    "workspace_quota_mb",
    "trash_retention_days",
    "shared_roots",
    "clamav_service_enabled",
    "clamav_service_host",
    "clamav_service_port",
    "clamav_service_socket",
    "clamav_service_timeout",
    "clamav_max_concurrency",
    "bind_address",
    "public_base_url",
    "jwt_secret",
    "jwt_public_key_file",
    "jwt_audience",
    "signing_secret",
    "signing_secret_previous",
    "exec_file_dir",
    "exec_dir_max_mb",
    "media_url_timeout_s",
    "media_url_allow_hosts",
    "gc_interval_s",
];

#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub app_data_dir: PathBuf,
    pub workspace_storage_dir: PathBuf,
    pub media_gcs_bucket_name: Option<String>,
    pub media_s3_bucket_name: Option<String>,
    /// GCS API endpoint (emulators); default the real service.
    pub gcs_endpoint: Option<String>,
    /// A service-account JSON key; else Google application-default credentials from the
    /// environment / well-known file (never the metadata server).
    pub gcs_credentials_file: Option<PathBuf>,
    /// S3 endpoint (MinIO, emulators); credentials come from the usual `AWS_*` variables.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_force_path_style: bool,
    pub max_file_size_mb: u64,
    pub workspace_quota_mb: u64,
    pub trash_retention_days: u64,
    pub shared_roots: Vec<String>,
    pub clamav_service_enabled: bool,
    pub clamav_service_host: String,
    pub clamav_service_port: u16,
    /// A unix socket path; when set it is used instead of host/port.
    pub clamav_service_socket: Option<PathBuf>,
    pub clamav_service_timeout: u64,
    pub clamav_max_concurrency: usize,
    pub bind_address: String,
    pub public_base_url: String,
    pub jwt_secret: Option<String>,
    pub jwt_public_key_file: Option<PathBuf>,
    pub jwt_audience: Option<String>,
    pub signing_secret: Option<String>,
    pub signing_secret_previous: Option<String>,
    pub exec_file_dir: PathBuf,
    pub exec_dir_max_mb: u64,
    pub media_url_timeout_s: u64,
    pub media_url_allow_hosts: Vec<String>,
    /// How often `serve` runs the garbage collector; 0 disables it.
    pub gc_interval_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        match Config::from_sources(None, &HashMap::new()) {
            Ok(c) => c,
            // Defaults are constants; failing here is a bug in this file.
            Err(e) => panic!("default configuration is invalid: {e}"),
        }
    }
}

/// One place to look a key up: the environment first, then the TOML table.
struct Sources<'a> {
    file: toml::Table,
    env: &'a HashMap<String, String>,
}

impl Sources<'_> {
    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        if let Some(v) = self.env.get(&key.to_ascii_uppercase()) {
            return Ok(Some(v.clone()));
        }
        match self.file.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(toml::Value::Integer(i)) => Ok(Some(i.to_string())),
            Some(toml::Value::Boolean(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(err(
                key,
                format!("expected a string, got {}", other.type_str()),
            )),
        }
    }

    /// A string where empty means unset.
    fn optional(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.string(key)?.filter(|s| !s.trim().is_empty()))
    }

    fn number<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some(s) => s.trim().parse().map_err(|_| {
                err(
                    key,
                    format!("expected a non-negative whole number, got {s:?}"),
                )
            }),
        }
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(err(key, format!("expected true or false, got {s:?}"))),
            },
        }
    }

    /// A TOML array of strings, or a comma-separated environment variable.
    fn list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        if let Some(v) = self.env.get(&key.to_ascii_uppercase()) {
            return Ok(v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect());
        }
        match self.file.get(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(err(
                        key,
                        format!("expected strings, got {}", other.type_str()),
                    )),
                })
                .collect(),
            Some(other) => Err(err(
                key,
                format!("expected an array, got {}", other.type_str()),
            )),
        }
    }
}

impl Config {
    /// Loads `file` (or `./satchel.toml` if it exists) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let default_file = Path::new("satchel.toml");
        let path = match file {
            Some(p) => Some(p),
            None if default_file.exists() => Some(default_file),
            None => None,
        };
        let text = match path {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| err("--config", format!("cannot read {}: {e}", p.display())))?,
            ),
            None => None,
        };
        let env: HashMap<String, String> = std::env::vars().collect();
        Config::from_sources(text.as_deref(), &env)
    }

    /// Builds the configuration from TOML text and an environment map (tests use this).
    pub fn from_sources(
        toml_text: Option<&str>,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let file: toml::Table = match toml_text {
            Some(t) => t
                .parse()
                .map_err(|e: toml::de::Error| err("--config", format!("invalid TOML: {e}")))?,
            None => toml::Table::new(),
        };
        if let Some(unknown) = file.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(err(unknown, "unknown key"));
        }
        let s = Sources { file, env };

        let app_data_dir = PathBuf::from(s.optional("app_data_dir")?.unwrap_or("./data".into()));
        let database_url = s
            .optional("database_url")?
            .unwrap_or_else(|| format!("sqlite://{}", app_data_dir.join("satchel.db").display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(err(
                "database_url",
                format!("unsupported scheme in {database_url:?}: use sqlite:// or postgres://"),
            ));
        }
        let media_gcs_bucket_name = s.optional("media_gcs_bucket_name")?;
        let media_s3_bucket_name = s.optional("media_s3_bucket_name")?;
        if media_gcs_bucket_name.is_some() && media_s3_bucket_name.is_some() {
            return Err(err(
                "media_s3_bucket_name",
                "set either media_gcs_bucket_name or media_s3_bucket_name, not both",
            ));
        }
        let workspace_storage_dir = s
            .optional("workspace_storage_dir")?
            .map(PathBuf::from)
            .unwrap_or_else(|| app_data_dir.join("workspaces"));
        let bind_address = s
            .optional("bind_address")?
            .unwrap_or("127.0.0.1:8080".into());
        let public_base_url = s
            .optional("public_base_url")?
            .unwrap_or_else(|| format!("http://{bind_address}"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_base_url.starts_with("http://") || public_base_url.starts_with("https://")) {
            return Err(err(
                "public_base_url",
                "must start with http:// or https://",
            ));
        }
        let shared_roots = s.list("shared_roots")?;
        for root in &shared_roots {
            if !root.starts_with('/') {
                return Err(err(
                    "shared_roots",
                    format!("{root:?} is not an absolute folder"),
                ));
            }
            crate::domain::FolderPath::parse(root)
                .map_err(|e| err("shared_roots", format!("{root:?}: {}", e.message)))?;
        }
        let max_file_size_mb: u64 = s.number("max_file_size_mb", 100)?;
        if max_file_size_mb == 0 {
            return Err(err("max_file_size_mb", "must be at least 1"));
        }
        let clamav_max_concurrency: usize = s.number("clamav_max_concurrency", 10)?;
        if clamav_max_concurrency == 0 {
            return Err(err("clamav_max_concurrency", "must be at least 1"));
        }
        let clamav_service_timeout: u64 = s.number("clamav_service_timeout", 60)?;
        if clamav_service_timeout == 0 {
            return Err(err("clamav_service_timeout", "must be at least 1 second"));
        }
        Ok(Config {
            database_url,
            workspace_storage_dir,
            media_gcs_bucket_name,
            media_s3_bucket_name,
            gcs_endpoint: s.optional("gcs_endpoint")?,
            gcs_credentials_file: s.optional("gcs_credentials_file")?.map(PathBuf::from),
            s3_endpoint: s.optional("s3_endpoint")?,
            s3_region: s.optional("s3_region")?,
            s3_force_path_style: s.boolean("s3_force_path_style", false)?,
            max_file_size_mb,
            workspace_quota_mb: s.number("workspace_quota_mb", 0)?,
            trash_retention_days: s.number("trash_retention_days", 30)?,
            shared_roots,
            clamav_service_enabled: s.boolean("clamav_service_enabled", true)?,
            clamav_service_host: s
                .optional("clamav_service_host")?
                .unwrap_or("localhost".into()),
            clamav_service_port: s.number("clamav_service_port", 3310)?,
            clamav_service_socket: s.optional("clamav_service_socket")?.map(PathBuf::from),
            clamav_service_timeout,
            clamav_max_concurrency,
            bind_address,
            public_base_url,
            jwt_secret: s.optional("jwt_secret")?,
            jwt_public_key_file: s.optional("jwt_public_key_file")?.map(PathBuf::from),
            jwt_audience: s.optional("jwt_audience")?,
            signing_secret: s.optional("signing_secret")?,
            signing_secret_previous: s.optional("signing_secret_previous")?,
            exec_file_dir: s
                .optional("exec_file_dir")?
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("exec_file")),
            exec_dir_max_mb: s.number("exec_dir_max_mb", 1024)?,
            media_url_timeout_s: s.number("media_url_timeout_s", 300)?,
            media_url_allow_hosts: s
                .list("media_url_allow_hosts")?
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            gc_interval_s: s.number("gc_interval_s", 3600)?,
            app_data_dir,
        })
    }

    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_size_mb.saturating_mul(MIB)
    }

    /// 0 means unlimited.
    pub fn quota_bytes(&self) -> u64 {
        self.workspace_quota_mb.saturating_mul(MIB)
    }

    pub fn shared_root_folders(&self) -> Vec<crate::domain::FolderPath> {
        self.shared_roots
            .iter()
            .filter_map(|r| crate::domain::FolderPath::parse(r).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = Config::from_sources(None, &HashMap::new()).unwrap();
        assert_eq!(c.database_url, "sqlite://./data/satchel.db");
        assert_eq!(c.workspace_storage_dir, PathBuf::from("./data/workspaces"));
        assert_eq!(c.max_file_bytes(), 100 * MIB);
        assert_eq!(c.quota_bytes(), 0);
        assert_eq!(c.public_base_url, "http://127.0.0.1:8080");
        assert!(c.clamav_service_enabled);
    }

    #[test]
    fn environment_wins_over_file() {
        let toml = "max_file_size_mb = 5\nshared_roots = [\"/shared\"]\napp_data_dir = \"/x\"";
        let c = Config::from_sources(
            Some(toml),
            &env(&[
                ("MAX_FILE_SIZE_MB", "7"),
                ("MEDIA_URL_ALLOW_HOSTS", "A.test, b"),
            ]),
        )
        .unwrap();
        assert_eq!(c.max_file_size_mb, 7);
        assert_eq!(c.shared_roots, vec!["/shared"]);
        assert_eq!(c.media_url_allow_hosts, vec!["a.test", "b"]);
        assert_eq!(c.workspace_storage_dir, PathBuf::from("/x/workspaces"));
    }

    /// (TOML text, environment, the key the error must name)
    type BadCase<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);

    #[test]
    fn bad_values_name_their_key() {
        let cases: [BadCase; 5] = [
            (None, &[("MAX_FILE_SIZE_MB", "ten")], "max_file_size_mb"),
            (None, &[("DATABASE_URL", "mysql://x")], "database_url"),
            (Some("max_fle_size_mb = 3"), &[], "max_fle_size_mb"),
            (
                None,
                &[("CLAMAV_SERVICE_ENABLED", "maybe")],
                "clamav_service_enabled",
            ),
            (None, &[("SHARED_ROOTS", "relative")], "shared_roots"),
        ];
        for (file, vars, key) in cases {
            let e = Config::from_sources(file, &env(vars)).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.to_string().contains(key));
        }
    }
}
