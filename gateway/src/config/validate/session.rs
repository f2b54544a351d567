//! `[session]` (the cookie, its secret, lifetimes and the re-consent deadline) and
//! `[forward_auth]` (the hosts and the proxies that may ask `/auth/check`).

use std::time::Duration;

use crate::config::file::*;
use crate::config::values::Validator;
use crate::config::*;

/// Shortest accepted `session.secret`: it keys AES-256-GCM and HMAC-SHA256, so 32 bytes.
const MIN_SESSION_SECRET_BYTES: usize = 32;
/// Spotify's refresh tokens end six months after the user's authorization (2026); the
/// gateway counts 180 days, so it asks for a re-consent before Spotify refuses the token.
const SPOTIFY_REFRESH_TOKEN_LIFE: Duration = Duration::from_secs(180 * 24 * 3600);

impl Validator<'_> {
    pub(super) fn session(&mut self, s: FileSession) -> Option<SessionConfig> {
        let FileSession {
            cookie_name,
            secret,
            secret_env,
            secret_file,
            previous_secret,
            previous_secret_env,
            previous_secret_file,
            lifetime,
            cookie_domain,
            reauth_after,
        } = s;
        let valid_name = !cookie_name.is_empty()
            && cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_name {
            self.issue(
                "session.cookie_name",
                format!("{cookie_name:?} is not a cookie name (letters, digits, - _ . only)"),
            );
        }
        let secret = match self.secret("session", "secret", secret, secret_env, secret_file) {
            Ok(Some(s)) if s.expose().len() >= MIN_SESSION_SECRET_BYTES => Some(s),
            Ok(Some(_)) => {
                self.issue(
                    "session.secret",
                    format!(
                        "must be at least {MIN_SESSION_SECRET_BYTES} bytes \
                         (e.g. `openssl rand -base64 48`)"
                    ),
                );
                None
            }
            Ok(None) => {
                self.issue(
                    "session.secret",
                    "required: set secret_env or secret_file (it encrypts sessions and tokens)",
                );
                None
            }
            Err(()) => None,
        };
        let previous_secret = self
            .secret(
                "session",
                "previous_secret",
                previous_secret,
                previous_secret_env,
                previous_secret_file,
            )
            .ok()?;
        let lifetime = self.duration("session.lifetime", &lifetime);
        if lifetime.is_some_and(|l| l < Duration::from_secs(60)) {
            self.issue("session.lifetime", "must be at least 1 minute");
        }
        let cookie_domain = match cookie_domain {
            Some(d) => Some(self.cookie_domain("session.cookie_domain", &d)?),
            None => None,
        };
        let reauth_after = self.duration("session.reauth_after", &reauth_after);
        if reauth_after.is_some_and(|r| r < Duration::from_secs(1)) {
            self.issue("session.reauth_after", "must be at least 1s");
        }
        if reauth_after.is_some_and(|r| r > SPOTIFY_REFRESH_TOKEN_LIFE) {
            self.issue(
                "session.reauth_after",
                "must not be longer than 180d: Spotify ends refresh tokens six months after the \
                 user's authorization, so a session cannot outlive that",
            );
        }
        Some(SessionConfig {
            cookie_name,
            secret: secret?,
            previous_secret,
            lifetime: lifetime?,
            cookie_domain,
            reauth_after: reauth_after?,
        })
    }

    pub(super) fn forward_auth(&mut self, f: FileForwardAuth) -> Option<ForwardAuthConfig> {
        let FileForwardAuth {
            allowed_hosts,
            trusted_proxies,
        } = f;
        if allowed_hosts.is_empty() {
            self.issue(
                "forward_auth.allowed_hosts",
                "list the hosts behind the ingress, such as [\"app.example.com\"]: the login \
                 returns only to these",
            );
        }
        if trusted_proxies.is_empty() {
            self.issue(
                "forward_auth.trusted_proxies",
                "list the ingress's addresses as CIDRs, such as [\"10.0.0.0/8\"]: \
                 /auth/check answers only them",
            );
        }
        let hosts: Vec<_> = allowed_hosts
            .iter()
            .map(|h| self.allowed_host("forward_auth.allowed_hosts", h))
            .collect();
        let proxies: Vec<_> = trusted_proxies
            .iter()
            .map(|p| self.cidr("forward_auth.trusted_proxies", p))
            .collect();
        if allowed_hosts.is_empty() || trusted_proxies.is_empty() {
            return None;
        }
        Some(ForwardAuthConfig {
            allowed_hosts: hosts.into_iter().collect::<Option<_>>()?,
            trusted_proxies: proxies.into_iter().collect::<Option<_>>()?,
        })
    }
}
