//! `delay-proxy`: Spotify's distance on loopback. A TCP proxy that hands on every byte a fixed
//! time after it arrived, in each direction (a 40 ms delay each way is an 80 ms round trip),
//! for the distance scenario of issue 29 (item 7). The scenario asked for `tc qdisc ... netem`
//! on a veth pair in a network namespace; this machine's kernel has no `netem` qdisc
//! ("Specified qdisc kind is unknown"), so the delay is made here instead.
//!
//! Delay, not bandwidth: each chunk read is written `delay` after it was read, in order, and
//! reading goes on meanwhile. Every connection accepted is printed (`connection N`), so the
//! script counts the connections (each one a TLS handshake to the upstream behind it).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Accepts on `listen` and proxies each connection to `upstream`, `delay` each way.
pub async fn run(listen: SocketAddr, upstream: SocketAddr, delay: Duration) -> Res<()> {
    let listener = TcpListener::bind(listen).await?;
    let mut accepted: u64 = 0;
    loop {
        let (client, _) = listener.accept().await?;
        accepted += 1;
        println!("connection {accepted}");
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                pipe(client_read, server_write, delay),
                pipe(server_read, client_write, delay)
            );
        });
    }
}

/// One direction: what is read at t is written at t + `delay`.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
