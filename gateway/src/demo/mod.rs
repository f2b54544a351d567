//! `spotify-gateway demo`: the embedded mock Spotify, the gateway wired to it and a tiny sample
//! app, all on loopback, with nothing to set up.

pub mod sample_app;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::config::Config;
use crate::server;
use crate::server::apps::Apps;
use crate::server::StartError;
use crate::telemetry::logging;

/// The demo's config, shipped as `config/demo.toml` (CI checks it like any other).
const DEMO_CONFIG: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/demo.toml"));
/// `demo --apps 2`: two apps of one developer account (`config/demo-apps.toml`).
const DEMO_APPS_CONFIG: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../config/demo-apps.toml"
));
/// Where the demo's mock Spotify listens (README, "Quick start").
const MOCK_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8900);
/// Where the demo's sample app listens (README, "Quick start").
const APP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3000);

/// The demo; with `tls`, the mock Spotify serves HTTPS with HTTP/2 as Spotify does, from a
/// test CA written to a temporary directory and trusted through `spotify.ca_file`. With
/// `apps` = 2, two apps of one developer account (`config/demo-apps.toml`).
pub fn run(tls: bool, apps: u8) -> Result<(), StartError> {
    let demo_part = |part| move |source| StartError::Demo { part, source };
    let base = if apps > 1 {
        DEMO_APPS_CONFIG
    } else {
        DEMO_CONFIG
    };
    let (text, mock_tls) = match tls {
        false => (base.to_string(), None),
        true => {
            let dir =
                std::env::temp_dir().join(format!("spotify-gateway-demo-{}", std::process::id()));
            let mock_tls = mock_tls(&dir).map_err(demo_part("test CA"))?;
            let text = over_tls(base, &dir.join("ca.pem")).map_err(demo_part("config"))?;
            (text, Some(mock_tls))
        }
    };
    let config = Config::parse(&text, "the demo config (built in)", &|_| None)?;
    logging::init(config.server.log_format, &config.server.log_level);
    let scheme = if tls { "https" } else { "http" };

    let egress = config.listen.egress;
    let admin = config.listen.admin;
    let port = config.listen.public.first().map_or(0, SocketAddr::port);
    let open: Vec<String> = config
        .apps
        .iter()
        .map(|a| match a.hosts.first() {
            Some(h) => format!("{}: http://{}:{port}/", a.name, h.0.host),
            None => format!("http://127.0.0.1:{port}/"),
        })
        .collect();
    let mock_config = mock_spotify::MockConfig {
        tls: mock_tls,
        other_clients: config.apps.iter().filter_map(mock_client).collect(),
        ..Default::default()
    };
    // The sample app keeps a handle on the gateway for its demo-only "age my authorization"
    // button (`Sessions::age_authorization`), beside the mock's `/__mock/age`.
    let all = Apps::new(config, None)?;
    let side = side_runtime().map_err(demo_part("runtime"))?;
    let demo = sample_app::Demo {
        apps: Arc::clone(&all),
        mock_url: format!("http://{MOCK_ADDR}"),
    };
    side.block_on(async {
        let mock = bind(MOCK_ADDR).await.map_err(demo_part("mock Spotify"))?;
        let app = bind(APP_ADDR).await.map_err(demo_part("sample app"))?;
        tokio::spawn(mock_spotify::serve(mock, mock_config));
        tokio::spawn(sample_app::serve(app, egress, Some(demo)));
        Ok::<_, StartError>(())
    })?;
    // The side runtime serves the mock and the sample app for the life of the process.
    std::mem::forget(side);

    let try_egress = if apps > 1 {
        format!("curl -H 'X-Gateway-App: charts' 'http://{egress}/v1/search?q=abba&type=track'")
    } else {
        format!("curl 'http://{egress}/v1/search?q=abba&type=track'")
    };
    println!(
        "spotify-gateway demo\n\
         \x20 open             {}   (sign in as Alice or Bob at the mock Spotify)\n\
         \x20 egress (apps)    http://{egress}   try: {try_egress}\n\
         \x20 metrics          http://{admin}/metrics\n\
         \x20 mock Spotify     {scheme}://{MOCK_ADDR}   sample app http://{APP_ADDR} (behind the gateway)\n\
         Ctrl-C to stop.",
        open.join("   "),
    );
    server::run_gateway(all)
}

/// The client the mock registers for an app of the demo config that is not its own.
fn mock_client(app: &crate::config::AppConfig) -> Option<mock_spotify::MockClient> {
    let defaults = mock_spotify::MockConfig::default();
    (app.spotify.client_id != defaults.client_id).then(|| mock_spotify::MockClient {
        client_id: app.spotify.client_id.clone(),
        client_secret: app
            .spotify
            .client_secret
            .as_ref()
            .map(|s| s.expose().to_string())
            .unwrap_or_default(),
        redirect_uris: vec![app.spotify.redirect_uri.to_string()],
        app_name: format!("Spotify Gateway Demo ({})", app.name),
        mode: defaults.mode,
        registered: mock_spotify::DEFAULT_REGISTERED.map(String::from).into(),
        developer_account: app.developer_account.clone(),
    })
}

/// The demo config pointed at `https://` with the test CA at `ca_file`.
fn over_tls(config: &str, ca_file: &std::path::Path) -> std::io::Result<String> {
    let mut doc: toml_edit::DocumentMut = config.parse().map_err(std::io::Error::other)?;
    let https = format!("https://{MOCK_ADDR}");
    let point = |spotify: &mut toml_edit::Item| {
        spotify["accounts_url"] = toml_edit::value(https.as_str());
        spotify["api_url"] = toml_edit::value(https.as_str());
        spotify["ca_file"] = toml_edit::value(ca_file.display().to_string());
    };
    match doc.get_mut("apps").and_then(|a| a.as_array_of_tables_mut()) {
        Some(apps) => apps.iter_mut().for_each(|app| point(&mut app["spotify"])),
        None => point(&mut doc["spotify"]),
    }
    Ok(doc.to_string())
}

/// The mock Spotify alone, until the process is killed.
pub fn run_mock_forever(
    listen: SocketAddr,
    config: mock_spotify::MockConfig,
) -> std::io::Result<()> {
    side_runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        tracing::info!(%listen, "mock Spotify listening");
        mock_spotify::serve(listener, config).await
    })
}

/// A test CA written to `dir/ca.pem` and a certificate from it for the loopback names,
/// for `mock-spotify --tls`: the gateway trusts the mock through `spotify.ca_file`.
pub fn mock_tls(dir: &std::path::Path) -> std::io::Result<mock_spotify::MockTls> {
    let ca = mock_spotify::TestCa::new("spotify-gateway mock CA");
    std::fs::create_dir_all(dir)?;
    let path = dir.join("ca.pem");
    std::fs::write(&path, ca.cert_pem())?;
    tracing::info!(ca_file = %path.display(), "mock Spotify serves TLS; trust it with spotify.ca_file");
    Ok(ca.issue(
        &["127.0.0.1", "::1", "localhost"],
        mock_spotify::Validity::Current,
    ))
}

fn side_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("demo-side")
        .enable_all()
        .build()
}

async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
