//! `spotify-gateway`: run the gateway, the zero-setup demo, a config check, the mock Spotify, or
//! `users` against a running gateway's admin API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spotify_gateway::config::Config;
use spotify_gateway::server::{self, StartError};
use spotify_gateway::telemetry::logging;

/// mimalloc instead of glibc's malloc: a proxy allocates and frees many small buffers per
/// request on several threads, where glibc's arenas spent about a fifth of the CPU
/// (benches/README.md, "Where the time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "spotify-gateway",
    version,
    about = "Authentication gateway for the Spotify Web API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Zero-setup demo: mock Spotify, the gateway and a sample app on loopback.
    Demo {
        /// The mock Spotify serves HTTPS and HTTP/2, as Spotify does, with a test CA the
        /// gateway trusts through spotify.ca_file.
        #[arg(long)]
        tls: bool,
        /// How many Spotify apps the demo gateway serves: 2 runs two apps of one developer
        /// account on two loopback hosts (config/demo-apps.toml).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        apps: u8,
    },
    /// Validate a config file and print the effective config with secrets redacted.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the mock Spotify (accounts service and Web API subset) alone.
    MockSpotify(MockArgs),
    /// Users on a running gateway, through its admin API (token from
    /// SPOTIFY_GATEWAY_ADMIN_TOKEN).
    Users {
        #[command(subcommand)]
        action: UsersAction,
        /// The gateway's admin listener.
        #[arg(long, global = true, default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        /// The app (`[[apps]]` name); needed when the gateway serves several.
        #[arg(long, global = true)]
        app: Option<String>,
    },
}

#[derive(Subcommand)]
enum UsersAction {
    /// Every user with a live session.
    List,
    /// One user.
    Show { id: String },
    /// End every session of a user on every replica.
    Revoke { id: String },
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Run { config } => run(config),
        Command::Demo { tls, apps } => demo(tls, apps),
        Command::CheckConfig { config } => check_config(&config),
        Command::MockSpotify(args) => mock_spotify(args),
        Command::Users {
            action,
            admin,
            json,
            app,
        } => users(action, &admin, app.as_deref(), json),
    };
    // The one place a failed command is printed.
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Users(#[from] spotify_gateway::admin::client::ClientError),
    /// `mock-spotify` alone: its test CA or its listener.
    #[error("mock Spotify {what}: {source}")]
    #[cfg_attr(not(feature = "demo"), allow(dead_code))]
    Mock {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// `demo` and `mock-spotify` in a build without the demo.
    #[error("{}", NO_DEMO)]
    #[cfg_attr(feature = "demo", allow(dead_code))]
    NoDemo,
}

impl Failure {
    /// 2 for what the operator must fix before trying again (the config, the build), as
    /// `check-config` does; 1 for the rest.
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Start(e) => e.exit_code(),
            Failure::NoDemo => 2,
            Failure::Users(_) | Failure::Mock { .. } => 1,
        }
    }
}

fn run(path: PathBuf) -> Result<(), Failure> {
    let config = Config::load(&path).map_err(StartError::from)?;
    logging::init(config.server.log_format, &config.server.log_level);
    Ok(server::run(config, Some(path))?)
}

fn check_config(path: &Path) -> Result<(), Failure> {
    let config = Config::load(path).map_err(StartError::from)?;
    println!(
        "# {}: valid. Effective config (secrets redacted):",
        path.display()
    );
    print!("{}", config.to_redacted_toml());
    // Valid, but maybe not what the operator means: said, not refused (exit 0).
    for (i, app) in config.apps.iter().enumerate() {
        for warning in app.access.warnings() {
            match config.apps.len() {
                1 => eprintln!("warning: {warning}"),
                _ => eprintln!("warning: apps[{i}].{warning}"),
            }
        }
    }
    Ok(())
}

fn users(action: UsersAction, admin: &str, app: Option<&str>, json: bool) -> Result<(), Failure> {
    use spotify_gateway::admin::client::{run, Action};
    let action = match action {
        UsersAction::List => Action::List,
        UsersAction::Show { id } => Action::Show(id),
        UsersAction::Revoke { id } => Action::Revoke(id),
    };
    Ok(run(action, admin, app, json)?)
}

/// The arguments of `spotify-gateway mock-spotify` (unread in a build without the demo).
#[derive(clap::Args)]
#[cfg_attr(not(feature = "demo"), allow(dead_code))]
struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:8900")]
    listen: std::net::SocketAddr,
    /// Access token lifetime, e.g. "3600s" or "2s".
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    token_lifetime: std::time::Duration,
    #[arg(long, default_value = "demo-client-id")]
    client_id: String,
    /// The registered client secret (the mock's own; not a real Spotify secret).
    #[arg(long, default_value = "demo-client-secret")]
    client_secret: String,
    /// Registered redirect URIs (repeat for several).
    #[arg(
        long = "redirect-uri",
        default_value = "http://127.0.0.1:8080/auth/callback"
    )]
    redirect_uris: Vec<String>,
    /// Serve HTTPS, as Spotify does: a test CA is generated and written to DIR/ca.pem
    /// (give it to the gateway as spotify.ca_file), with a certificate for 127.0.0.1,
    /// ::1 and localhost.
    #[arg(long, value_name = "DIR")]
    tls: Option<PathBuf>,
    /// With --tls: offer HTTP/1.1 only in ALPN (Spotify offers h2 first).
    #[arg(long, requires = "tls")]
    http1_only: bool,
    /// Calls per rolling 30 seconds before the Web API answers 429, as Spotify's quota
    /// (default: no limit; `POST /__mock/quota` changes it).
    #[arg(long, value_name = "CALLS")]
    quota_per_30s: Option<u32>,
    /// The app's mode: `development` (Spotify's mode for every new app: 5 registered users,
    /// fields and endpoints withheld, search limit 10) or `extended_quota` (everything;
    /// `POST /__mock/app` changes it).
    #[arg(
        long,
        value_name = "MODE",
        default_value = "development",
        value_parser = ["development", "extended_quota"]
    )]
    app_mode: String,
}

/// What a build without the `demo` feature says instead of running it.
const NO_DEMO: &str = "this build of spotify-gateway has no demo (it was built without the \
`demo` cargo feature, as the production image is). Run the demo from a source checkout with \
`cargo run -p spotify-gateway -- demo`, or install a build with it: `cargo install --path \
gateway` (the feature is on by default).";

#[cfg(feature = "demo")]
fn demo(tls: bool, apps: u8) -> Result<(), Failure> {
    Ok(spotify_gateway::demo::run(tls, apps)?)
}

#[cfg(not(feature = "demo"))]
fn demo(_tls: bool, _apps: u8) -> Result<(), Failure> {
    Err(Failure::NoDemo)
}

#[cfg(feature = "demo")]
fn mock_spotify(args: MockArgs) -> Result<(), Failure> {
    logging::init(spotify_gateway::config::LogFormat::Text, "info");
    let listen = args.listen;
    let tls = args
        .tls
        .as_deref()
        .map(spotify_gateway::demo::mock_tls)
        .transpose()
        .map_err(|source| Failure::Mock {
            what: "--tls".into(),
            source,
        })?;
    let config = mock_spotify::MockConfig {
        client_id: args.client_id,
        client_secret: args.client_secret,
        redirect_uris: args.redirect_uris,
        token_lifetime: args.token_lifetime,
        tls,
        http2: !args.http1_only,
        quota_per_30s: args.quota_per_30s,
        // clap admits only the two names.
        mode: mock_spotify::AppMode::parse(&args.app_mode).unwrap_or_default(),
        ..Default::default()
    };
    spotify_gateway::demo::run_mock_forever(listen, config).map_err(|source| Failure::Mock {
        what: format!("on {listen}"),
        source,
    })
}

#[cfg(not(feature = "demo"))]
fn mock_spotify(_args: MockArgs) -> Result<(), Failure> {
    Err(Failure::NoDemo)
}
