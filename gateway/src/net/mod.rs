//! The way out: the one set of TLS roots both clients to Spotify (and webhooks) trust
//! (`tls_roots`), the route to Spotify, direct or through an outbound CONNECT proxy
//! (`outbound`), the one warm HTTP/2 connection API calls share (`api_connection`), and the
//! one strict `host[:port]` grammar (`host`).

pub mod api_connection;
pub mod host;
pub mod outbound;
pub mod tls_roots;
