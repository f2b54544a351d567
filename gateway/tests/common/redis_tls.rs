//! TLS and passwords for the Redis sets of `redis_ha.rs` (Sentinel, Cluster): the nodes'
//! arguments and a client to one node.

use std::sync::Arc;

use super::{Ca, LOOPBACK};

/// TLS and passwords for every node of a set: each speaks only TLS (a certificate for
/// loopback from a test CA, which the nodes also trust for replication and the cluster bus,
/// whose nodes present it as clients too),
/// the data nodes require `PASSWORD` (`requirepass`, `masterauth`), the sentinels
/// `SENTINEL_PASSWORD`. The gateway verifies with `store.ca_file` and reads the passwords
/// from `password_file` and `sentinel_password_file`.
pub struct Secure {
    pub ca: Ca,
    cert: String,
    key: String,
    pub password_file: String,
    pub sentinel_password_file: String,
}

impl Secure {
    pub const PASSWORD: &'static str = "data-node-pass-0123456789";
    pub const SENTINEL_PASSWORD: &'static str = "sentinel-pass-0123456789";

    pub fn new() -> Arc<Secure> {
        let ca = Ca::new("Redis HA test CA");
        let issued = ca.ca.issue_for_peers(LOOPBACK);
        let file = |name: &str, text: &str| {
            let path = ca.dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.display().to_string()
        };
        Arc::new(Secure {
            cert: file("node-cert.pem", &issued.cert_pem),
            key: file("node-key.pem", &issued.key_pem),
            password_file: file("password", Self::PASSWORD),
            sentinel_password_file: file("sentinel-password", Self::SENTINEL_PASSWORD),
            ca,
        })
    }

    /// The arguments that make a node on `port` speak only TLS and require its password.
    pub(super) fn args(&self, port: u16, sentinel: bool) -> Vec<String> {
        let mut args: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &self.cert,
            "--tls-key-file",
            &self.key,
            "--tls-ca-cert-file",
            self.ca.file(),
            "--tls-auth-clients",
            "no",
            "--tls-replication",
            "yes",
        ]
        .map(String::from)
        .to_vec();
        if sentinel {
            args.extend(["--requirepass".into(), Self::SENTINEL_PASSWORD.into()]);
        } else {
            args.extend(
                ["--tls-cluster", "yes", "--requirepass", Self::PASSWORD].map(String::from),
            );
            args.extend(["--masterauth".into(), Self::PASSWORD.into()]);
        }
        args
    }

    /// A client to the node on `port` over TLS, with its password.
    pub(super) fn client(&self, port: u16, sentinel: bool) -> Option<redis::Client> {
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::TcpTls {
                host: "127.0.0.1".into(),
                port,
                insecure: false,
                tls_params: None,
            },
            redis: redis::RedisConnectionInfo {
                password: Some(
                    if sentinel {
                        Self::SENTINEL_PASSWORD
                    } else {
                        Self::PASSWORD
                    }
                    .into(),
                ),
                ..Default::default()
            },
        };
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(self.ca.ca.cert_pem().into_bytes()),
        };
        redis::Client::build_with_tls(info, certs).ok()
    }
}
