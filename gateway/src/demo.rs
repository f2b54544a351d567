//! `spotify-gateway demo`: the embedded mock Spotify, the gateway wired to it and a tiny sample
//! app, all on loopback, with nothing to set up.

use std::net::SocketAddr;

use crate::config::Config;
use crate::{logging, server};

/// The demo's config, shipped as `config/demo.toml` (CI checks it like any other).
const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");
/// Where the demo's mock Spotify listens (DESIGN.md).
const MOCK_ADDR: &str = "127.0.0.1:8900";

pub fn run() -> std::io::Result<()> {
    let config = Config::parse(DEMO_CONFIG, "config/demo.toml (built in)", &|_| None)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    logging::init(config.server.log_format, &config.server.log_level);

    let mock_addr: SocketAddr = MOCK_ADDR.parse().map_err(std::io::Error::other)?;
    let side = side_runtime()?;
    side.block_on(async {
        let listener = tokio::net::TcpListener::bind(mock_addr).await?;
        tokio::spawn(mock_spotify::serve(
            listener,
            mock_spotify::MockConfig::default(),
        ));
        Ok::<_, std::io::Error>(())
    })?;
    // The side runtime serves the mock for the life of the process.
    std::mem::forget(side);

    println!(
        "spotify-gateway demo\n\
         \x20 mock Spotify     http://{MOCK_ADDR}\n\
         \x20 egress (apps)    http://{egress}   try: curl 'http://{egress}/v1/search?q=abba&type=track'\n\
         \x20 metrics          http://{admin}/metrics\n\
         Ctrl-C to stop.",
        egress = config.listen.egress,
        admin = config.listen.admin,
    );
    server::run(config)
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

fn side_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("demo-side")
        .enable_all()
        .build()
}
