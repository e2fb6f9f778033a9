//! The server-side commands: they work on the configured database and storage directly.

use anyhow::Context;
use satchel::maintenance;
use satchel::media::{ExecutionContext, ReturnFormat};
use satchel::{Config, Satchel};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// `serve`: the HTTP service, until Ctrl-C / SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    satchel_server::run(config).await
}

/// `migrate`: connecting the catalog applies any pending migration.
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let catalog = satchel::catalog::connect(&config.database_url)
        .await
        .map_err(satchel::Error::from)?;
    println!("migrations applied to {}", catalog.backend());
    Ok(())
}

/// `token`: a JWT for `user`, signed with the configured (or generated) secret.
pub async fn token(config: Config, user: &str, ttl: Duration) -> anyhow::Result<()> {
    if let Some(key) = &config.jwt_public_key_file {
        // The server then verifies RS256/ES256 tokens from an identity provider; an HS256
        // token minted here would be refused.
        anyhow::bail!(satchel::Error::invalid_input(format!(
            "jwt_public_key_file is set ({}): tokens come from the key's issuer, \
             `satchel token` can only mint HS256 tokens",
            key.display()
        )));
    }
    let secrets = satchel::signing::Secrets::load_or_generate(&config)?;
    let audience = config.jwt_audience.as_deref();
    let jwt = satchel_server::auth::mint_token_for_audience(&secrets, user, ttl, audience)
        .context("cannot mint the token")?;
    println!("{jwt}");
    Ok(())
}

/// `gc`: purges expired trash, orphan blobs and stale staging files.
pub async fn gc(config: Config, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let satchel = Satchel::open(config).await?;
    let report = maintenance::gc(&satchel, dry_run).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

/// `storage migrate`: copies every blob from the configured store to `target`'s store.
pub async fn storage_migrate(
    config: Config,
    target: Config,
    batch: u32,
    json: bool,
) -> anyhow::Result<()> {
    let satchel = Satchel::open(config).await?;
    let to = satchel::storage::open_from_config(&target).await?;
    if to.backend() == satchel.store().backend()
        && target.workspace_storage_dir == satchel.config().workspace_storage_dir
        && target.media_gcs_bucket_name == satchel.config().media_gcs_bucket_name
        && target.media_s3_bucket_name == satchel.config().media_s3_bucket_name
    {
        anyhow::bail!(satchel::Error::invalid_input(
            "the target is the configured storage itself"
        ));
    }
    let report = satchel::storage::migrate_storage(&satchel, to, batch).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    if !report.is_complete() {
        anyhow::bail!(satchel::Error::new(
            satchel::ErrorCode::Internal,
            format!(
                "{} record(s) could not be migrated; fix them and run again",
                report.failed.len()
            )
        ));
    }
    Ok(())
}

/// `media store`: `store_media_file` on the configured database and storage; prints the bare
/// result (a name in the execution folder, a data URI or a workspace:// reference).
pub async fn media_store(
    config: Config,
    input: &str,
    context: &ExecutionContext,
    format: ReturnFormat,
) -> anyhow::Result<()> {
    // Refuse a bad execution id before connecting anything.
    satchel::media::check_exec_id(&context.graph_exec_id)?;
    let satchel = Satchel::open(config).await?;
    let result = satchel::media::store_media_file(&satchel, input, context, format).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{result}")
        .and_then(|()| stdout.flush())
        .context("cannot write the result to stdout")?;
    Ok(())
}

/// `media clean`: removes the execution folder (a missing one is fine).
pub async fn media_clean(config: Config, exec_id: &str) -> anyhow::Result<()> {
    satchel::media::check_exec_id(exec_id)?;
    let satchel = Satchel::open(config).await?;
    satchel::media::clean_exec_files(&satchel, exec_id).await?;
    Ok(())
}

/// `fsck`: records against blobs. Exit 0 when clean, 1 when problems were found, 2 when the
/// check could not run.
pub async fn fsck(config: Config, deep: bool, repair: bool, json: bool) -> ExitCode {
    let checked = async {
        let satchel = Satchel::open(config).await?;
        Ok::<_, anyhow::Error>(maintenance::fsck(&satchel, deep, repair).await?)
    };
    let report = match checked.await {
        Ok(report) => report,
        Err(e) => {
            crate::report_error(&e);
            return ExitCode::from(2);
        }
    };
    let printed = if json {
        serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)
    } else {
        Ok(report.to_string())
    };
    match printed {
        Ok(text) => println!("{text}"),
        Err(e) => {
            crate::report_error(&e);
            return ExitCode::from(2);
        }
    }
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
