//! Paths on the public listener: the gateway's own `/auth/` routes, which paths pass without
//! a session (`upstream.public_paths`), where a browser may be sent back to after login
//! (`return_to`), and query parameters.

use pingora::http::RequestHeader;
use url::Url;

use crate::config::ForwardAuthConfig;
use crate::net::host::HostPort;

/// Longest `return_to` accepted.
const MAX_RETURN_TO: usize = 2048;

/// The gateway's routes under `/auth/`, as route labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthRoute {
    Login,
    Callback,
    Logout,
    Userinfo,
    /// Forward-auth (`check`): `/auth/check`, and `/auth/check/<original path>` as Envoy's
    /// `ext_authz` sends it.
    Check,
    Disconnect,
    /// `[playback]`: the Web Playback SDK's token for the gateway's own pages.
    PlaybackToken,
    Other,
}

impl AuthRoute {
    /// The route a path names, if it is under `/auth/`.
    pub fn of(path: &str) -> Option<AuthRoute> {
        Some(match path {
            "/auth/login" => AuthRoute::Login,
            "/auth/callback" => AuthRoute::Callback,
            "/auth/logout" => AuthRoute::Logout,
            "/auth/userinfo" => AuthRoute::Userinfo,
            "/auth/check" => AuthRoute::Check,
            p if p.starts_with("/auth/check/") => AuthRoute::Check,
            "/auth/disconnect" => AuthRoute::Disconnect,
            "/auth/playback-token" => AuthRoute::PlaybackToken,
            p if p.starts_with("/auth/") => AuthRoute::Other,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            AuthRoute::Login => "/auth/login",
            AuthRoute::Callback => "/auth/callback",
            AuthRoute::Logout => "/auth/logout",
            AuthRoute::Userinfo => "/auth/userinfo",
            AuthRoute::Check => "/auth/check",
            AuthRoute::Disconnect => "/auth/disconnect",
            AuthRoute::PlaybackToken => "/auth/playback-token",
            AuthRoute::Other => "/auth/other",
        }
    }

    /// Sign-out takes POST (forms) as well as GET; disconnecting shows its form on GET and
    /// acts on POST only; forward-auth takes the original request's method (nginx's
    /// `auth_request` and Envoy send it); the playback token is a GET; the rest are reads.
    pub fn allows(self, method: &http::Method) -> bool {
        match self {
            AuthRoute::Logout | AuthRoute::Disconnect => {
                method == http::Method::GET || method == http::Method::POST
            }
            AuthRoute::Check => true,
            // Each answer issues a token (an event, a count): never for a HEAD.
            AuthRoute::PlaybackToken => method == http::Method::GET,
            _ => method == http::Method::GET || method == http::Method::HEAD,
        }
    }
}

/// Whether `path` is under one of `public_paths`: a prefix when it ends with `/`, else the
/// path itself and what lies below it.
pub fn is_public(public_paths: &[String], path: &str) -> bool {
    public_paths.iter().any(|p| {
        if p.ends_with('/') {
            path.starts_with(p.as_str())
        } else {
            path == p
                || path
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        }
    })
}

/// A same-site relative path to send the browser back to, normalised; `None` for anything
/// that could leave the site (absolute URLs, `//host`, `/\host`, control characters).
pub fn safe_return_to(raw: &str) -> Option<String> {
    if raw.len() > MAX_RETURN_TO
        || !raw.starts_with('/')
        || raw.starts_with("//")
        || raw.contains('\\')
        || raw.chars().any(|c| c.is_control())
    {
        return None;
    }
    let base = Url::parse("http://gateway.invalid/").ok()?;
    let joined = base.join(raw).ok()?;
    if joined.origin() != base.origin() {
        return None;
    }
    let mut out = joined.path().to_string();
    if out.starts_with("//") {
        return None;
    }
    if let Some(q) = joined.query() {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// Where the login may send the browser back to: a same-site path ([`safe_return_to`]), or,
/// with forward-auth on, an absolute http(s) URL on one of `forward_auth.allowed_hosts`
/// (normalised). `None` for anything else: other hosts, userinfo, backslashes, control
/// characters, other schemes.
pub fn return_to(raw: &str, forward_auth: Option<&ForwardAuthConfig>) -> Option<String> {
    if raw.starts_with('/') {
        return safe_return_to(raw);
    }
    let fa = forward_auth?;
    absolute_on_allowed_host(raw, fa).map(|u| u.to_string())
}

/// `raw` as an absolute URL on an allowed host; `None` when it is anything else.
pub fn absolute_on_allowed_host(raw: &str, fa: &ForwardAuthConfig) -> Option<Url> {
    // A URL parser reads `\` as `/` and drops tabs and newlines; refuse them before parsing,
    // so what is checked is what the browser will read.
    if raw.len() > MAX_RETURN_TO
        || raw.contains('\\')
        || raw.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return None;
    }
    let url = Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
        || url.cannot_be_a_base()
    {
        return None;
    }
    // The authority as written must be the authority parsed: `https:evil`, `https:/evil`
    // and other spellings the parser repairs are refused.
    let authority = raw
        .get(url.scheme().len()..)?
        .strip_prefix("://")?
        .split(['/', '?', '#'])
        .next()?;
    let host = HostPort::parse(authority).ok()?;
    let parsed = HostPort {
        host: url.host_str()?.to_string(),
        port: url.port(),
    };
    if !parsed.matches(&host, url.scheme()) || !fa.allows_host(&host, url.scheme()) {
        return None;
    }
    Some(url)
}

pub fn query_param(req: &RequestHeader, name: &str) -> Option<String> {
    let query = req.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward_auth(hosts: &[&str]) -> ForwardAuthConfig {
        ForwardAuthConfig {
            allowed_hosts: hosts
                .iter()
                .map(|h| crate::config::AllowedHost(HostPort::parse(h).expect("host")))
                .collect(),
            trusted_proxies: vec!["127.0.0.1/32".parse().expect("net")],
        }
    }

    #[test]
    fn an_absolute_return_to_must_be_on_an_allowed_host() {
        let fa = forward_auth(&["app.example.com", "127.0.0.1:8443"]);
        let ok = |raw: &str| return_to(raw, Some(&fa));
        assert_eq!(
            ok("https://app.example.com/x?y=1").as_deref(),
            Some("https://app.example.com/x?y=1")
        );
        assert_eq!(
            ok("https://APP.Example.com/a/../b").as_deref(),
            Some("https://app.example.com/b")
        );
        assert_eq!(
            ok("http://127.0.0.1:8443/").as_deref(),
            Some("http://127.0.0.1:8443/")
        );
        assert_eq!(
            ok("https://app.example.com:443/").as_deref(),
            Some("https://app.example.com/")
        );
        for bad in [
            "https://evil.example/",
            "https://app.example.com@evil.example/",
            "https://evil.example@app.example.com/",
            "https://evil.example\\@app.example.com/",
            "https://app.example.com\\evil.example/",
            "https://app.example.com.evil.example/",
            "https://app.example.com./",
            "https://app.example.com:8443/",
            "http://127.0.0.1/",
            "https://%61pp.example.com/",
            "https:app.example.com/",
            "https:/app.example.com/",
            "https:///app.example.com/",
            "//app.example.com/",
            "javascript://app.example.com/%0aalert(1)",
            "ftp://app.example.com/",
            "https://app.example.com\t/",
            "https://app.example.com/\r\nSet-Cookie:x",
            "https://[::1]/",
        ] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
        // A fragment stays on the allowed host.
        assert_eq!(
            ok("https://app.example.com#@evil.example/").as_deref(),
            Some("https://app.example.com/#@evil.example/")
        );
        // Without forward-auth only paths are accepted.
        assert_eq!(return_to("https://app.example.com/", None), None);
        assert_eq!(return_to("/app", None).as_deref(), Some("/app"));
    }

    #[test]
    fn return_to_accepts_only_same_site_paths() {
        assert_eq!(safe_return_to("/").as_deref(), Some("/"));
        assert_eq!(safe_return_to("/app?x=1").as_deref(), Some("/app?x=1"));
        assert_eq!(safe_return_to("/a/../b").as_deref(), Some("/b"));
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https:evil.example",
            "evil.example",
            "/app\r\nSet-Cookie: x=1",
            "/\tfoo",
            "",
        ] {
            assert_eq!(safe_return_to(bad), None, "{bad:?}");
        }
        // Percent-encoded slashes stay a path on this site.
        assert_eq!(
            safe_return_to("/%2F%2Fevil.example").as_deref(),
            Some("/%2F%2Fevil.example")
        );
        // Non-ASCII is percent-encoded, so a header can carry it.
        assert_eq!(safe_return_to("/ü").as_deref(), Some("/%C3%BC"));
    }
}
