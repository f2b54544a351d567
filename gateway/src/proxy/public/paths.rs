//! Paths on the public listener: the gateway's own `/auth/` routes, which paths pass without
//! a session (`upstream.public_paths`), where a browser may be sent back to after login
//! (`return_to`), and query parameters.

use pingora::http::RequestHeader;
use url::Url;

/// Longest `return_to` accepted.
const MAX_RETURN_TO: usize = 2048;

/// The gateway's routes under `/auth/`, as route labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthRoute {
    Login,
    Callback,
    Logout,
    Userinfo,
    Disconnect,
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
            "/auth/disconnect" => AuthRoute::Disconnect,
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
            AuthRoute::Disconnect => "/auth/disconnect",
            AuthRoute::Other => "/auth/other",
        }
    }

    /// Sign-out takes POST (forms) as well as GET; disconnecting shows its form on GET and
    /// acts on POST only; the rest are reads.
    pub fn allows(self, method: &http::Method) -> bool {
        match self {
            AuthRoute::Logout | AuthRoute::Disconnect => {
                method == http::Method::GET || method == http::Method::POST
            }
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
