//! `satchel`: runs the service and its maintenance (server side), and talks to a running
//! service over HTTP (client side).

mod admin;
mod api;
mod client;
mod ttl;

use api::{Api, ApiError};
use clap::{Args, Parser, Subcommand, ValueEnum};
use client::{Client, OnConflict, PutRequest};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "satchel",
    version,
    about = "Per-user file workspaces: the service and its client"
)]
struct Cli {
    /// Configuration file (default: ./satchel.toml if present); environment variables win.
    #[arg(long, global = true, value_name = "FILE", display_order = 100)]
    config: Option<PathBuf>,

    /// Log line format on stderr (level from RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, display_order = 101)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Mint a JWT for a user, signed with the configured secret.
    Token {
        /// The user id (the token's `sub`).
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        user: String,
        /// Lifetime: 90s, 30m, 1h, 7d or plain seconds.
        #[arg(long, default_value = "1h", value_parser = ttl::parse_ttl)]
        ttl: Duration,
    },
    /// Purge expired trash, orphan blobs and stale staging files.
    Gc {
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check file records against stored blobs (exit 0 clean, 1 problems, 2 could not run).
    Fsck {
        /// Also re-hash every blob and compare with its recorded checksum.
        #[arg(long)]
        deep: bool,
        /// Move live records whose blob is missing or damaged to the trash (tagged in their
        /// metadata); nothing is deleted.
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Turn a file reference into what a processing step needs (store_media_file), on the
    /// configured storage directly.
    Media {
        #[command(subcommand)]
        command: MediaCommand,
    },
    /// Storage maintenance.
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
    /// Upload a file.
    Put {
        /// The local file to upload.
        file: PathBuf,
        /// Target path in the workspace (a trailing / names a folder).
        #[arg(long)]
        path: Option<String>,
        /// Agent session the path is scoped to.
        #[arg(long)]
        session: Option<String>,
        /// Replace the file at the path, keeping its id (same as --on-conflict overwrite).
        #[arg(long, conflicts_with = "on_conflict")]
        overwrite: bool,
        /// What to do when the path holds a file.
        #[arg(long, value_enum, value_name = "POLICY")]
        on_conflict: Option<OnConflict>,
        /// MIME type (default: guessed from the file name).
        #[arg(long)]
        mime_type: Option<String>,
        /// Metadata, a JSON object.
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
        /// Hash the file first (a second read) so the server refuses a corrupted upload.
        #[arg(long)]
        checksum: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download a file, by id or by path.
    Get {
        /// The file id.
        #[arg(required_unless_present = "path", conflicts_with = "path")]
        id: Option<String>,
        /// The file's path in the workspace.
        #[arg(long)]
        path: Option<String>,
        /// Agent session the path is scoped to.
        #[arg(long, requires = "path")]
        session: Option<String>,
        /// Write to this file instead of stdout (replaced only once the download is complete).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List files (recursively) in a folder, newest first.
    Ls {
        /// Folder (default: the session folder, or the whole workspace).
        folder: Option<String>,
        /// Agent session the folder is scoped to.
        #[arg(long)]
        session: Option<String>,
        /// Take the folder as given, across all sessions.
        #[arg(long)]
        all_sessions: bool,
        /// At most this many files (default: all).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move a file to the trash.
    Rm {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore a file from the trash.
    Restore {
        id: String,
        /// Restore to this path instead of the original one.
        #[arg(long)]
        path: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a signed download URL.
    Url {
        id: String,
        /// Lifetime of the link in seconds (1 to 604800; default 3600).
        #[arg(long, value_name = "SECONDS")]
        expires_in: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the workspace's usage.
    Usage {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum StorageCommand {
    /// Copy every live blob and trash version from the configured storage to another backend,
    /// verifying each by SHA-256, and point the records at the copies. Resumable: run it again
    /// after an interruption. Switch the configuration to the target afterwards; the source
    /// blobs are left in place.
    Migrate {
        /// The target backend.
        #[arg(long, value_enum)]
        to: StorageTarget,
        /// The target bucket (gcs, s3). Endpoint and credentials come from the configuration
        /// (gcs_endpoint, gcs_credentials_file; s3_endpoint, s3_region, AWS_* variables).
        #[arg(long, required_if_eq_any = [("to", "gcs"), ("to", "s3")])]
        bucket: Option<String>,
        /// The target directory (local); default: workspace_storage_dir.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
        /// Records per catalog page.
        #[arg(long, default_value_t = 500)]
        batch: u32,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StorageTarget {
    Gcs,
    S3,
    Local,
}

#[derive(Subcommand)]
enum MediaCommand {
    /// Store INPUT in the execution folder `{exec_file_dir}/{exec-id}/` and print the result
    /// in the requested format.
    Store {
        /// A data URI, an http(s) URL, workspace://{file_id} or workspace:///path, the
        /// gcs://, gs:// or s3:// storage path of one of the user's files, or a path inside the
        /// execution folder.
        input: String,
        /// The graph execution ([A-Za-z0-9_-]{1,128}); names the execution folder.
        #[arg(long, value_name = "ID")]
        exec_id: String,
        /// The user whose workspace workspace:// and cloud inputs are read from.
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        user: String,
        /// The user's workspace id (must be the user's own); needed for workspace:// inputs
        /// and for saving block output to the workspace.
        #[arg(long, value_name = "UUID")]
        workspace: Option<uuid::Uuid>,
        /// Agent chat session: scopes workspace:///paths; with --workspace, block output is
        /// saved to /sessions/{session}/.
        #[arg(long)]
        session: Option<String>,
        /// What to print.
        #[arg(long, value_enum)]
        format: MediaFormat,
    },
    /// Remove the execution folder of an execution.
    Clean {
        /// The graph execution whose folder is removed.
        #[arg(long, value_name = "ID")]
        exec_id: String,
    },
}

/// `satchel media store --format`.
#[derive(Clone, Copy, ValueEnum)]
enum MediaFormat {
    /// The file's name relative to the execution folder.
    #[value(name = "for_local_processing")]
    LocalProcessing,
    /// A data URI.
    #[value(name = "for_external_api")]
    ExternalApi,
    /// workspace://{file_id}#{mime} when saved to the workspace (--workspace and --session),
    /// else a data URI.
    #[value(name = "for_block_output")]
    BlockOutput,
}

impl From<MediaFormat> for satchel::media::ReturnFormat {
    fn from(format: MediaFormat) -> Self {
        match format {
            MediaFormat::LocalProcessing => satchel::media::ReturnFormat::ForLocalProcessing,
            MediaFormat::ExternalApi => satchel::media::ReturnFormat::ForExternalApi,
            MediaFormat::BlockOutput => satchel::media::ReturnFormat::ForBlockOutput,
        }
    }
}

/// How the client commands reach the server.
#[derive(Args)]
struct ClientArgs {
    /// Server base URL, without /v1.
    #[arg(
        long,
        env = "SATCHEL_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    server: String,
    /// Bearer token (see `satchel token`).
    #[arg(long, env = "SATCHEL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

impl ClientArgs {
    fn client(&self) -> Result<Client, ApiError> {
        Ok(Client {
            api: Api::new(&self.server, self.token.as_deref())?,
            json: self.json,
        })
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // sqlx logs every statement at info; that is noise for an operator.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Prints `error: <code>: <message>` on stderr.
pub fn report_error(err: &anyhow::Error) {
    let (code, message) = describe_error(err);
    eprintln!("error: {code}: {message}");
}

/// The code and message of a failure. The code is the server's or the library's when there is
/// one; local failures get `io`, `invalid_config` or `internal`. The message keeps the context
/// chain (`cannot open x: No such file or directory`).
fn describe_error(err: &anyhow::Error) -> (String, String) {
    let mut code = None;
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let part = if let Some(api) = cause.downcast_ref::<ApiError>() {
            code.get_or_insert_with(|| api.code.clone());
            api.message.clone()
        } else if let Some(lib) = cause.downcast_ref::<satchel::Error>() {
            code.get_or_insert_with(|| lib.code.as_str().to_owned());
            lib.message.clone()
        } else {
            cause.to_string()
        };
        if !parts.iter().any(|p| p.contains(&part)) {
            parts.push(part);
        }
    }
    let code = code.unwrap_or_else(|| {
        if err.chain().any(|c| c.is::<satchel::config::ConfigError>()) {
            "invalid_config".to_owned()
        } else if err.chain().any(|c| c.is::<std::io::Error>()) {
            "io".to_owned()
        } else {
            "internal".to_owned()
        }
    });
    (code, parts.join(": "))
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<satchel::Config> {
    Ok(satchel::Config::load(path)?)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = cli.config.as_deref();
    match cli.command {
        Command::Serve => admin::serve(load_config(config_path)?).await?,
        Command::Migrate => admin::migrate(load_config(config_path)?).await?,
        Command::Token { user, ttl } => admin::token(load_config(config_path)?, &user, ttl).await?,
        Command::Gc { dry_run, json } => {
            admin::gc(load_config(config_path)?, dry_run, json).await?
        }
        Command::Fsck { deep, repair, json } => {
            let config = match load_config(config_path) {
                Ok(c) => c,
                Err(e) => {
                    report_error(&e);
                    return Ok(ExitCode::from(2));
                }
            };
            return Ok(admin::fsck(config, deep, repair, json).await);
        }
        Command::Storage {
            command:
                StorageCommand::Migrate {
                    to,
                    bucket,
                    dir,
                    batch,
                    json,
                },
        } => {
            let config = load_config(config_path)?;
            let mut target = config.clone();
            target.media_gcs_bucket_name = None;
            target.media_s3_bucket_name = None;
            match to {
                StorageTarget::Gcs => target.media_gcs_bucket_name = bucket,
                StorageTarget::S3 => target.media_s3_bucket_name = bucket,
                StorageTarget::Local => {
                    if let Some(dir) = dir {
                        target.workspace_storage_dir = dir;
                    }
                }
            }
            admin::storage_migrate(config, target, batch, json).await?
        }
        Command::Media { command } => match command {
            MediaCommand::Store {
                input,
                exec_id,
                user,
                workspace,
                session,
                format,
            } => {
                let mut context = satchel::media::ExecutionContext::new(exec_id, user);
                context.workspace_id = workspace;
                context.session_id = session;
                admin::media_store(load_config(config_path)?, &input, &context, format.into())
                    .await?
            }
            MediaCommand::Clean { exec_id } => {
                admin::media_clean(load_config(config_path)?, &exec_id).await?
            }
        },
        Command::Put {
            file,
            path,
            session,
            overwrite,
            on_conflict,
            mime_type,
            metadata,
            checksum,
            client,
        } => {
            let request = PutRequest {
                file,
                path,
                session,
                overwrite,
                on_conflict,
                mime_type,
                metadata,
                checksum,
            };
            client.client()?.put(request).await?
        }
        Command::Get {
            id,
            path,
            session,
            output,
            client,
        } => {
            client
                .client()?
                .get(
                    id.as_deref(),
                    path.as_deref(),
                    session.as_deref(),
                    output.as_deref(),
                )
                .await?
        }
        Command::Ls {
            folder,
            session,
            all_sessions,
            limit,
            client,
        } => {
            client
                .client()?
                .ls(folder.as_deref(), session.as_deref(), all_sessions, limit)
                .await?
        }
        Command::Rm { id, client } => client.client()?.rm(&id).await?,
        Command::Restore { id, path, client } => {
            client.client()?.restore(&id, path.as_deref()).await?
        }
        Command::Url {
            id,
            expires_in,
            client,
        } => client.client()?.url(&id, expires_in).await?,
        Command::Usage { client } => client.client()?.usage().await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn client_options_follow_the_subcommand() {
        let cli =
            Cli::try_parse_from(["satchel", "ls", "/docs", "--json", "--limit", "5"]).unwrap();
        match cli.command {
            Command::Ls {
                folder,
                limit,
                client,
                ..
            } => {
                assert_eq!(folder.as_deref(), Some("/docs"));
                assert_eq!(limit, Some(5));
                assert!(client.json);
            }
            _ => panic!("expected ls"),
        }
    }

    #[test]
    fn put_refuses_overwrite_with_another_policy() {
        let both = [
            "satchel",
            "put",
            "f",
            "--overwrite",
            "--on-conflict",
            "rename",
        ];
        assert!(Cli::try_parse_from(both).is_err());
        assert!(Cli::try_parse_from(["satchel", "put", "f", "--on-conflict", "rename"]).is_ok());
    }

    #[test]
    fn get_takes_an_id_or_a_path() {
        assert!(Cli::try_parse_from(["satchel", "get"]).is_err());
        assert!(Cli::try_parse_from(["satchel", "get", "id", "--path", "/a"]).is_err());
        assert!(Cli::try_parse_from(["satchel", "get", "id", "-o", "out"]).is_ok());
        assert!(Cli::try_parse_from(["satchel", "get", "--path", "/a", "--session", "s"]).is_ok());
    }

    #[test]
    fn media_store_takes_the_spec_formats() {
        for (raw, expected) in [
            ("for_local_processing", "for_local_processing"),
            ("for_external_api", "for_external_api"),
            ("for_block_output", "for_block_output"),
        ] {
            let cli = Cli::try_parse_from([
                "satchel",
                "media",
                "store",
                "in.png",
                "--exec-id",
                "e",
                "--user",
                "u",
                "--format",
                raw,
            ])
            .unwrap();
            match cli.command {
                Command::Media {
                    command: MediaCommand::Store { format, .. },
                } => assert_eq!(
                    satchel::media::ReturnFormat::from(format).as_str(),
                    expected
                ),
                _ => panic!("expected media store"),
            }
        }
        for bad in [
            &[
                "satchel",
                "media",
                "store",
                "x",
                "--exec-id",
                "e",
                "--user",
                "u",
            ][..],
            &[
                "satchel",
                "media",
                "store",
                "x",
                "--user",
                "u",
                "--format",
                "for_external_api",
            ],
            &[
                "satchel",
                "media",
                "store",
                "x",
                "--exec-id",
                "e",
                "--format",
                "for_external_api",
            ],
            &[
                "satchel",
                "media",
                "store",
                "x",
                "--exec-id",
                "e",
                "--user",
                "u",
                "--format",
                "local",
            ],
            &["satchel", "media", "clean"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        assert!(Cli::try_parse_from(["satchel", "media", "clean", "--exec-id", "e"]).is_ok());
    }

    #[test]
    fn errors_carry_a_code() {
        use anyhow::Context;
        let api: anyhow::Error = ApiError::new("not_found", "no file with id x").into();
        assert_eq!(
            describe_error(&api),
            ("not_found".into(), "no file with id x".into())
        );

        let lib: anyhow::Error = satchel::Error::invalid_path("bad path").into();
        let lib = lib.context("cannot list");
        assert_eq!(
            describe_error(&lib),
            ("invalid_path".into(), "cannot list: bad path".into())
        );

        let io = std::fs::File::open("/definitely/not/here")
            .context("cannot open /definitely/not/here")
            .unwrap_err();
        let (code, message) = describe_error(&io);
        assert_eq!(code, "io");
        assert!(
            message.starts_with("cannot open /definitely/not/here: "),
            "{message}"
        );

        let other = anyhow::anyhow!("something else");
        assert_eq!(describe_error(&other).0, "internal");
    }

    #[test]
    fn token_ttl_is_parsed() {
        let cli = Cli::try_parse_from(["satchel", "token", "--user", "u", "--ttl", "30m"]).unwrap();
        match cli.command {
            Command::Token { ttl, .. } => assert_eq!(ttl, Duration::from_secs(1800)),
            _ => panic!("expected token"),
        }
        assert!(Cli::try_parse_from(["satchel", "token", "--user", "u", "--ttl", "soon"]).is_err());
        assert!(Cli::try_parse_from(["satchel", "token", "--user", ""]).is_err());
    }
}
