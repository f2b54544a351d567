//! The gateway's cookies in one place: their names (with the `__Host-` prefix over https, or
//! `__Secure-` for a session cookie shared by the hosts under `session.cookie_domain`),
//! their attributes, reading them from a request, and removing them before a request reaches
//! the internal app. Their values are sealed by `crypto` (see `Sessions::finish_login`).

use pingora::http::RequestHeader;
use pingora::prelude::*;

/// Cookie names and attributes. Over https the names get the `__Host-` prefix, which
/// browsers only accept with `Secure`, `Path=/` and no `Domain`. A session cookie with a
/// `Domain` (`session.cookie_domain`) cannot have it, and gets `__Secure-` instead (`Secure`
/// required, `Domain` allowed). The login cookie never leaves the login's host.
pub struct Cookies {
    /// The session cookie (sealed session id).
    pub session: String,
    /// The short-lived login cookie (sealed state) between `/auth/login` and the callback.
    pub login: String,
    /// Set when a browser was offered a re-consent, so the offer comes once a day, not on
    /// every page (`proxy::public`). Holds nothing secret.
    pub reauth_offered: String,
    secure: bool,
    /// `Domain` of the session cookie.
    domain: Option<String>,
    /// The other apps' cookies (`[[apps]]`): stripped too, so no app sees another's.
    others: Vec<String>,
}

impl Cookies {
    /// `base` is `session.cookie_name`; `secure` is whether the public origin is https;
    /// `domain` is `session.cookie_domain`.
    pub fn new(base: &str, secure: bool, domain: Option<&str>) -> Cookies {
        let host_only = if secure {
            format!("__Host-{base}")
        } else {
            base.to_string()
        };
        let session = match (secure, domain) {
            (true, Some(_)) => format!("__Secure-{base}"),
            _ => host_only.clone(),
        };
        Cookies {
            login: format!("{host_only}-login"),
            reauth_offered: format!("{host_only}-reauth-offered"),
            session,
            secure,
            domain: domain.map(str::to_string),
            others: Vec::new(),
        }
    }

    /// These cookies, stripping the cookies of `others` (other apps) as well.
    pub fn stripping_others<'a>(mut self, others: impl IntoIterator<Item = &'a Cookies>) -> Self {
        for o in others {
            self.others
                .extend([o.session.clone(), o.login.clone(), o.reauth_offered.clone()]);
        }
        self
    }

    /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Secure` over https, and the
    /// configured `Domain` on the session cookie.
    pub fn set(&self, name: &str, value: &str, max_age_secs: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        let domain = match &self.domain {
            Some(d) if name == self.session => format!("; Domain={d}"),
            _ => String::new(),
        };
        format!(
            "{name}={value}; Path=/; Max-Age={max_age_secs}{domain}; HttpOnly; SameSite=Lax{secure}"
        )
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
                !pair.is_empty() && !names.contains(&name) && !self.others.iter().any(|o| o == name)
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

#[cfg(test)]
mod tests {
    use super::Cookies;

    #[test]
    fn the_host_prefix_goes_only_with_a_domain_and_secure_stays() {
        let host_only = Cookies::new("sg", true, None);
        assert_eq!(host_only.session, "__Host-sg");
        assert_eq!(host_only.login, "__Host-sg-login");
        let v = host_only.set(&host_only.session, "v", 60);
        assert!(v.contains("; Secure") && !v.contains("Domain"), "{v}");

        let shared = Cookies::new("sg", true, Some("example.com"));
        assert_eq!(shared.session, "__Secure-sg");
        assert_eq!(
            shared.login, "__Host-sg-login",
            "the login cookie stays host-only"
        );
        let v = shared.set(&shared.session, "v", 60);
        assert!(
            v.contains("; Domain=example.com") && v.contains("; Secure"),
            "{v}"
        );
        let login = shared.set(&shared.login, "v", 60);
        assert!(!login.contains("Domain"), "{login}");
        let cleared = shared.clear(&shared.session);
        assert!(
            cleared.contains("Max-Age=0; Domain=example.com"),
            "{cleared}"
        );

        let plain = Cookies::new("sg", false, Some("example.com"));
        assert_eq!(plain.session, "sg");
        assert!(!plain.set(&plain.session, "v", 1).contains("Secure"));
    }
}
