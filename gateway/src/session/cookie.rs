//! The gateway's cookies in one place: their names (with the `__Host-` prefix over https),
//! their attributes, reading them from a request, and removing them before a request reaches
//! the internal app. Their values are sealed by `crypto` (see `Sessions::finish_login`).

use pingora::http::RequestHeader;
use pingora::prelude::*;

/// Cookie names and attributes. Over https the names get the `__Host-` prefix, which
/// browsers only accept with `Secure`, `Path=/` and no `Domain`.
pub struct Cookies {
    /// The session cookie (sealed session id).
    pub session: String,
    /// The short-lived login cookie (sealed state) between `/auth/login` and the callback.
    pub login: String,
    /// Set when a browser was offered a re-consent, so the offer comes once a day, not on
    /// every page (`proxy::public`). Holds nothing secret.
    pub reauth_offered: String,
    secure: bool,
}

impl Cookies {
    /// `base` is `session.cookie_name`; `secure` is whether the public origin is https.
    pub fn new(base: &str, secure: bool) -> Cookies {
        let session = if secure {
            format!("__Host-{base}")
        } else {
            base.to_string()
        };
        Cookies {
            login: format!("{session}-login"),
            reauth_offered: format!("{session}-reauth-offered"),
            session,
            secure,
        }
    }

    /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, and `Secure` over https.
    pub fn set(&self, name: &str, value: &str, max_age_secs: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}")
    }

    /// A `Set-Cookie` value that removes the cookie.
    pub fn clear(&self, name: &str) -> String {
        self.set(name, "", 0)
    }

    /// Removes the gateway's own cookies before the request reaches the app: they are of no
    /// use to it, and a leaked session cookie is a stolen session.
    pub fn strip(&self, req: &mut RequestHeader) -> Result<()> {
        let names = [
            self.session.as_str(),
            self.login.as_str(),
            self.reauth_offered.as_str(),
        ];
        let kept: Vec<String> = req
            .headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or_default().trim();
                !pair.is_empty() && !names.contains(&name)
            })
            .map(str::to_string)
            .collect();
        req.remove_header("cookie");
        if !kept.is_empty() {
            req.insert_header("cookie", kept.join("; "))?;
        }
        Ok(())
    }
}

/// The value of cookie `name` from the request's `Cookie` headers.
pub fn value(req: &RequestHeader, name: &str) -> Option<String> {
    req.headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(|c| c.ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}
