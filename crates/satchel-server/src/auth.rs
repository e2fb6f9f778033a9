//! Bearer authentication (SPEC §7, §10): the JWT's `sub` is the user id.
//!
//! Tokens are accepted when signed HS256 with the server's `jwt_secret`, or — when
//! `jwt_public_key_file` is configured — RS256 / ES256 with that key (the algorithm follows the
//! key's type). The header's `alg` picks the key, and each key only ever verifies its own
//! algorithm, so a public key can never be used as an HMAC secret. `exp` is required (30 s
//! leeway), `nbf` is honoured, `aud` must match `jwt_audience` when that is set.

use crate::error::ApiError;
use crate::App;
use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use satchel::signing::Secrets;
use satchel::{Config, ErrorCode};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Serialize, Deserialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Mints an HS256 bearer token for `user` with the server's `jwt_secret` (claims `sub`, `iat`,
/// `exp`). When the server has a `jwt_audience`, use [`mint_token_for_audience`].
pub fn mint_token(secrets: &Secrets, user: &str, ttl: Duration) -> anyhow::Result<String> {
    mint_token_for_audience(secrets, user, ttl, None)
}

/// [`mint_token`] with an `aud` claim (pass `config.jwt_audience.as_deref()`).
pub fn mint_token_for_audience(
    secrets: &Secrets,
    user: &str,
    ttl: Duration,
    audience: Option<&str>,
) -> anyhow::Result<String> {
    anyhow::ensure!(!user.is_empty(), "the user id must not be empty");
    let iat = jsonwebtoken::get_current_timestamp();
    let claims = MintedClaims {
        sub: user,
        iat,
        exp: iat.saturating_add(ttl.as_secs()),
        aud: audience,
    };
    let key = EncodingKey::from_secret(secrets.jwt_secret.as_bytes())
        .context("building the HS256 key")?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).context("signing the token")
}

/// Checks bearer tokens.
pub struct Verifier {
    hmac: (DecodingKey, Validation),
    public_key: Option<(DecodingKey, Validation)>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
}

fn validation(algorithm: Algorithm, audience: Option<&str>) -> Validation {
    let mut v = Validation::new(algorithm);
    v.leeway = LEEWAY_SECONDS;
    v.validate_exp = true;
    v.validate_nbf = true;
    match audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            v.set_required_spec_claims(&["exp", "aud"]);
        }
        None => {
            v.validate_aud = false;
            v.set_required_spec_claims(&["exp"]);
        }
    }
    v
}

/// Reads a PEM public key and picks its algorithm: RSA → RS256, EC (P-256) → ES256.
fn load_public_key(path: &std::path::Path) -> anyhow::Result<(DecodingKey, Algorithm)> {
    let pem = std::fs::read(path)
        .with_context(|| format!("jwt_public_key_file: cannot read {}", path.display()))?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((key, Algorithm::ES256));
    }
    anyhow::bail!(
        "jwt_public_key_file: {} is not a PEM RSA or EC (P-256) public key",
        path.display()
    )
}

impl Verifier {
    pub fn new(config: &Config, secrets: &Secrets) -> anyhow::Result<Verifier> {
        let audience = config.jwt_audience.as_deref();
        let hmac_key = DecodingKey::from_secret(secrets.jwt_secret.as_bytes())
            .context("building the HS256 key")?;
        let public_key = match &config.jwt_public_key_file {
            Some(path) => {
                let (key, algorithm) = load_public_key(path)?;
                tracing::info!(?algorithm, path = %path.display(), "accepting bearer tokens signed with the configured public key");
                Some((key, validation(algorithm, audience)))
            }
            None => None,
        };
        Ok(Verifier {
            hmac: (hmac_key, validation(Algorithm::HS256, audience)),
            public_key,
        })
    }

    /// The user id (`sub`) of a valid token, else `unauthenticated`.
    pub fn verify(&self, token: &str) -> Result<String, satchel::Error> {
        let unauthenticated = |why: &str| {
            satchel::Error::new(
                ErrorCode::Unauthenticated,
                format!("invalid bearer token: {why}"),
            )
        };
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unauthenticated("malformed"))?;
        let (key, validation) = match (&self.public_key, header.alg) {
            (_, Algorithm::HS256) => (&self.hmac.0, &self.hmac.1),
            (Some((key, validation)), alg) if validation.algorithms.contains(&alg) => {
                (key, validation)
            }
            _ => return Err(unauthenticated("unsupported algorithm")),
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => unauthenticated("expired"),
                ErrorKind::ImmatureSignature => unauthenticated("not valid yet"),
                ErrorKind::InvalidAudience => unauthenticated("wrong audience"),
                ErrorKind::MissingRequiredClaim(claim) => {
                    unauthenticated(&format!("missing claim {claim}"))
                }
                ErrorKind::InvalidSignature => unauthenticated("bad signature"),
                _ => unauthenticated("malformed"),
            }
        })?;
        match data.claims.sub {
            Some(sub) if !sub.is_empty() => Ok(sub),
            _ => Err(unauthenticated("missing or empty sub")),
        }
    }
}

/// The authenticated caller: extracting it checks the `Authorization: Bearer` header.
#[derive(Debug, Clone)]
pub struct User(pub String);

impl FromRequestParts<App> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let missing = || ApiError::new(ErrorCode::Unauthenticated, "missing bearer token");
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(missing)?
            .to_str()
            .map_err(|_| missing())?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(missing()),
        };
        let user = app.verifier().verify(token)?;
        tracing::Span::current().record("user", user.as_str());
        Ok(User(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn secrets() -> Secrets {
        Secrets {
            jwt_secret: "secret".into(),
            signing_secret: "s".into(),
            signing_secret_previous: None,
        }
    }

    fn config(audience: Option<&str>) -> Config {
        let mut env = HashMap::new();
        if let Some(a) = audience {
            env.insert("JWT_AUDIENCE".to_owned(), a.to_owned());
        }
        Config::from_sources(None, &env).unwrap()
    }

    #[test]
    fn minted_tokens_verify() {
        let v = Verifier::new(&config(None), &secrets()).unwrap();
        let token = mint_token(&secrets(), "alice", Duration::from_secs(60)).unwrap();
        assert_eq!(v.verify(&token).unwrap(), "alice");
    }

    #[test]
    fn audience_is_enforced_when_configured() {
        let v = Verifier::new(&config(Some("satchel")), &secrets()).unwrap();
        let none = mint_token(&secrets(), "alice", Duration::from_secs(60)).unwrap();
        assert!(v.verify(&none).is_err());
        let wrong =
            mint_token_for_audience(&secrets(), "a", Duration::from_secs(60), Some("x")).unwrap();
        assert!(v.verify(&wrong).is_err());
        let right =
            mint_token_for_audience(&secrets(), "a", Duration::from_secs(60), Some("satchel"))
                .unwrap();
        assert_eq!(v.verify(&right).unwrap(), "a");
    }

    #[test]
    fn empty_user_cannot_be_minted() {
        assert!(mint_token(&secrets(), "", Duration::from_secs(60)).is_err());
    }
}
