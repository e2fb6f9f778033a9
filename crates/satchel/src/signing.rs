//! Server secrets and signed download links (SPEC §4).
//!
//! [`Secrets`] holds the JWT secret and the link-signing secret: taken from the configuration
//! when set, otherwise generated once into `app_data_dir` and reused on every later start.
//!
//! A download token is `base64url(payload || tag)` where `payload` is
//! `version (1) | workspace_id (16) | file_id (16) | sha256 (32) | expires_at unix s (8, BE)` and
//! `tag` is HMAC-SHA256 over a domain-separation label and the payload. Verification checks the
//! tag in constant time against the current secret and then the previous one (rotation), and
//! only then looks at the expiry, so a token whose expiry was tampered with is `link_invalid`,
//! never `link_expired`.

use crate::config::Config;
use crate::error::{Error, ErrorCode, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::io::Write;
use std::path::Path;
use uuid::Uuid;

/// Name of the generated JWT secret file in `app_data_dir`.
pub const JWT_SECRET_FILE: &str = "jwt_secret";
/// Name of the generated link-signing secret file in `app_data_dir`.
pub const SIGNING_SECRET_FILE: &str = "signing_secret";

/// Random bytes in a generated secret (hex-encoded in its file).
const GENERATED_SECRET_BYTES: usize = 32;

/// The server's secrets.
#[derive(Clone)]
pub struct Secrets {
    /// HS256 key for bearer tokens.
    pub jwt_secret: String,
    /// HMAC key for new download links.
    pub signing_secret: String,
    /// The key before the last rotation: links it signed stay valid until they expire.
    pub signing_secret_previous: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").finish_non_exhaustive()
    }
}

impl Secrets {
    /// Configured values win; otherwise `{app_data_dir}/jwt_secret` and
    /// `{app_data_dir}/signing_secret` are read, or generated (32 random bytes, hex, mode 0600)
    /// on first start. Creation is atomic, so processes starting together agree on one value.
    pub fn load_or_generate(config: &Config) -> Result<Secrets> {
        let dir = &config.app_data_dir;
        let jwt_secret = match &config.jwt_secret {
            Some(s) => s.clone(),
            None => load_or_create_secret_file(&dir.join(JWT_SECRET_FILE))?,
        };
        let signing_secret = match &config.signing_secret {
            Some(s) => s.clone(),
            None => load_or_create_secret_file(&dir.join(SIGNING_SECRET_FILE))?,
        };
        Ok(Secrets {
            jwt_secret,
            signing_secret,
            signing_secret_previous: config.signing_secret_previous.clone(),
        })
    }

    /// The keys a link may be signed with, newest first.
    fn verification_keys(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.signing_secret.as_str()).chain(self.signing_secret_previous.as_deref())
    }
}

fn secret_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("secret file {}: {e}", path.display()))
}

fn read_secret_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| secret_error(path, e))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(secret_error(
            path,
            "the file is empty; delete it to have a new secret generated",
        ));
    }
    Ok(secret.to_owned())
}

/// Reads the secret at `path`, creating it with a fresh random value if it does not exist.
///
/// The new value is written completely to a private temporary file first and then hard-linked
/// to `path`; linking fails if `path` exists, so the file appears atomically with its full
/// content and exactly one of several concurrent starters wins. The losers read the winner's.
fn load_or_create_secret_file(path: &Path) -> Result<String> {
    match read_secret_file(path) {
        Ok(s) => return Ok(s),
        Err(_) if !path.exists() => {}
        Err(e) => return Err(e),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| secret_error(dir, e))?;

    let mut bytes = [0u8; GENERATED_SECRET_BYTES];
    rand::fill(&mut bytes[..]);
    let secret = hex::encode(bytes);

    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret"),
        Uuid::new_v4().simple()
    ));
    let written = write_private_file(&tmp, &secret);
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new secret");
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_secret_file(path),
        // A filesystem without hard links: fall back to create_new, which still lets only
        // one process create the file.
        Err(_) => match write_private_file(path, &secret) {
            Ok(()) => Ok(secret),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Another process is writing it right now; give it a moment to finish.
                for _ in 0..50 {
                    if let Ok(s) = read_secret_file(path) {
                        return Ok(s);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                read_secret_file(path)
            }
            Err(e) => Err(secret_error(path, e)),
        },
    }
}

/// Creates `path` (failing if it exists) readable by the owner only, and writes `content`.
fn write_private_file(path: &Path, content: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// What a download link grants: one version of one file, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadClaims {
    pub workspace_id: Uuid,
    pub file_id: Uuid,
    /// The content's SHA-256 (lowercase hex): an overwritten file no longer matches.
    pub checksum: String,
    /// Unix seconds.
    pub expires_at: i64,
}

const TOKEN_VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 16 + 16 + 32 + 8;
const TAG_LEN: usize = 32;
/// Keeps these tags from ever being valid for another use of the same key.
const MAC_LABEL: &[u8] = b"satchel download link\0";

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &str, payload: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(MAC_LABEL);
    mac.update(payload);
    mac
}

/// Signs a download token with `signing_secret`.
pub fn create_download_token(signing_secret: &str, claims: &DownloadClaims) -> Result<String> {
    let checksum: [u8; 32] = hex::decode(&claims.checksum)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::internal("a file's checksum is not a SHA-256 hex digest"))?;
    let mut token = Vec::with_capacity(PAYLOAD_LEN + TAG_LEN);
    token.push(TOKEN_VERSION);
    token.extend_from_slice(claims.workspace_id.as_bytes());
    token.extend_from_slice(claims.file_id.as_bytes());
    token.extend_from_slice(&checksum);
    token.extend_from_slice(&claims.expires_at.to_be_bytes());
    let tag = mac(signing_secret, &token).finalize().into_bytes();
    token.extend_from_slice(&tag);
    Ok(URL_SAFE_NO_PAD.encode(token))
}

/// Checks a download token at time `now` (unix seconds): `link_invalid` unless it is well
/// formed and signed by the current or the previous signing secret, then `link_expired` if
/// `now` is past its expiry.
pub fn verify_download_token(secrets: &Secrets, token: &str, now: i64) -> Result<DownloadClaims> {
    let invalid = || Error::new(ErrorCode::LinkInvalid, "the download link is not valid");
    // Anything longer than a real token is refused before decoding.
    if token.len() > 2 * (PAYLOAD_LEN + TAG_LEN) {
        return Err(invalid());
    }
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    if raw.len() != PAYLOAD_LEN + TAG_LEN {
        return Err(invalid());
    }
    let (payload, tag) = raw.split_at(PAYLOAD_LEN);
    let signed = secrets
        .verification_keys()
        .any(|key| mac(key, payload).verify_slice(tag).is_ok());
    if !signed || payload[0] != TOKEN_VERSION {
        return Err(invalid());
    }
    let uuid_at = |at: usize| {
        let bytes: [u8; 16] = payload[at..at + 16].try_into().map_err(|_| invalid())?;
        Ok::<_, Error>(Uuid::from_bytes(bytes))
    };
    let expiry: [u8; 8] = payload[65..73].try_into().map_err(|_| invalid())?;
    let claims = DownloadClaims {
        workspace_id: uuid_at(1)?,
        file_id: uuid_at(17)?,
        checksum: hex::encode(&payload[33..65]),
        expires_at: i64::from_be_bytes(expiry),
    };
    if now > claims.expires_at {
        return Err(Error::new(
            ErrorCode::LinkExpired,
            "the download link has expired",
        ));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn secrets(current: &str, previous: Option<&str>) -> Secrets {
        Secrets {
            jwt_secret: "jwt".into(),
            signing_secret: current.into(),
            signing_secret_previous: previous.map(str::to_owned),
        }
    }

    fn claims() -> DownloadClaims {
        DownloadClaims {
            workspace_id: Uuid::new_v4(),
            file_id: Uuid::new_v4(),
            checksum: "ab".repeat(32),
            expires_at: 1_000,
        }
    }

    #[test]
    fn round_trip() {
        let c = claims();
        let token = create_download_token("k1", &c).unwrap();
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(
            verify_download_token(&secrets("k1", None), &token, 1_000).unwrap(),
            c
        );
    }

    #[test]
    fn expired_after_expiry() {
        let token = create_download_token("k1", &claims()).unwrap();
        let e = verify_download_token(&secrets("k1", None), &token, 1_001).unwrap_err();
        assert_eq!(e.code, ErrorCode::LinkExpired);
    }

    #[test]
    fn every_tampered_byte_is_invalid() {
        let token = create_download_token("k1", &claims()).unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        // Each byte of each field (version, workspace, file, checksum, expiry) and of the tag.
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let e = verify_download_token(&secrets("k1", None), &URL_SAFE_NO_PAD.encode(&bad), 0)
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::LinkInvalid, "byte {i}");
        }
    }

    #[test]
    fn extended_expiry_is_invalid_not_expired() {
        let token = create_download_token("k1", &claims()).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        raw[65..73].copy_from_slice(&i64::MAX.to_be_bytes());
        let e = verify_download_token(&secrets("k1", None), &URL_SAFE_NO_PAD.encode(&raw), 5_000)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::LinkInvalid);
    }

    #[test]
    fn garbage_is_invalid() {
        let s = secrets("k1", None);
        for token in [
            "",
            "x",
            "!!!!",
            "a.b.c",
            &"A".repeat(140),
            &"A".repeat(10_000),
        ] {
            let e = verify_download_token(&s, token, 0).unwrap_err();
            assert_eq!(e.code, ErrorCode::LinkInvalid, "{token:?}");
        }
    }

    #[test]
    fn wrong_key_is_invalid() {
        let token = create_download_token("k1", &claims()).unwrap();
        let e = verify_download_token(&secrets("k2", None), &token, 0).unwrap_err();
        assert_eq!(e.code, ErrorCode::LinkInvalid);
    }

    #[test]
    fn rotation_accepts_the_previous_key_only_while_configured() {
        let c = claims();
        let old = create_download_token("old", &c).unwrap();
        assert_eq!(
            verify_download_token(&secrets("new", Some("old")), &old, 0).unwrap(),
            c
        );
        let new = create_download_token("new", &c).unwrap();
        assert_eq!(
            verify_download_token(&secrets("new", Some("old")), &new, 0).unwrap(),
            c
        );
        let e = verify_download_token(&secrets("new", None), &old, 0).unwrap_err();
        assert_eq!(e.code, ErrorCode::LinkInvalid);
    }

    #[test]
    fn bad_checksum_cannot_be_signed() {
        let mut c = claims();
        c.checksum = "xyz".into();
        assert_eq!(
            create_download_token("k", &c).unwrap_err().code,
            ErrorCode::Internal
        );
    }

    fn config_in(dir: &Path, env: &[(&str, &str)]) -> Config {
        let mut map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("APP_DATA_DIR".into(), dir.display().to_string());
        Config::from_sources(None, &map).unwrap()
    }

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("satchel-signing-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn generated_secrets_are_persisted_private_and_reused() {
        let dir = temp_dir().join("nested");
        let config = config_in(&dir, &[]);
        let first = Secrets::load_or_generate(&config).unwrap();
        assert_eq!(first.jwt_secret.len(), 64);
        assert_ne!(first.jwt_secret, first.signing_secret);
        let again = Secrets::load_or_generate(&config).unwrap();
        assert_eq!(first.jwt_secret, again.jwt_secret);
        assert_eq!(first.signing_secret, again.signing_secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(JWT_SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn configured_secrets_win() {
        let dir = temp_dir();
        let config = config_in(
            &dir,
            &[
                ("JWT_SECRET", "j"),
                ("SIGNING_SECRET", "s"),
                ("SIGNING_SECRET_PREVIOUS", "p"),
            ],
        );
        let s = Secrets::load_or_generate(&config).unwrap();
        assert_eq!(
            (s.jwt_secret.as_str(), s.signing_secret.as_str()),
            ("j", "s")
        );
        assert_eq!(s.signing_secret_previous.as_deref(), Some("p"));
        assert!(!dir.join(JWT_SECRET_FILE).exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn concurrent_first_starts_agree() {
        let dir = temp_dir();
        let config = config_in(&dir, &[]);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let c = config.clone();
                std::thread::spawn(move || Secrets::load_or_generate(&c).unwrap().signing_secret)
            })
            .collect();
        let values: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] == w[1]));
        let _ = std::fs::remove_dir_all(dir);
    }
}
