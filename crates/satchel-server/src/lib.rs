//! The HTTP edge of Satchel (SPEC §7): axum routes, bearer authentication, signed links,
//! range requests, metrics and the OpenAPI description.

use satchel::signing::Secrets;
use satchel::Satchel;

/// The service: shared library handle, secrets and token verifier, metrics.
#[derive(Clone)]
pub struct App {
    satchel: Satchel,
    secrets: Secrets,
}

impl App {
    /// Loads (or generates) the secrets and prepares the token verifier.
    pub async fn new(satchel: Satchel) -> anyhow::Result<App> {
        let secrets = Secrets::load_or_generate(satchel.config())?;
        Ok(App { satchel, secrets })
    }

    pub fn satchel(&self) -> &Satchel {
        &self.satchel
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// All routes with their middleware.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
    }
}

/// Serves until `shutdown` resolves; graceful (in-flight requests finish).
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// `satchel serve`.
pub async fn run(config: satchel::Config) -> anyhow::Result<()> {
    let satchel = Satchel::open(config).await?;
    let app = App::new(satchel).await?;
    let listener = tokio::net::TcpListener::bind(&app.satchel.config().bind_address).await?;
    serve(app, listener, async {}).await?;
    Ok(())
}

pub mod auth {
    /// Mints an HS256 bearer token for `user` (claims `sub`, `iat`, `exp`).
    pub fn mint_token(
        _secrets: &satchel::signing::Secrets,
        _user: &str,
        _ttl: std::time::Duration,
    ) -> anyhow::Result<String> {
        anyhow::bail!("not implemented yet")
    }
}
