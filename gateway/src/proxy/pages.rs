//! The gateway's own pages: signed out, access denied, session expired, the re-consent offer,
//! the refusals of a login (user not registered, not allowed), disconnected, and errors.
//!
//! Self-contained HTML: no external assets (the gateway may have no internet) and nothing
//! the public listener's `Content-Security-Policy` (`default-src 'none'; style-src
//! 'unsafe-inline'`) would block, so icons are inline SVG elements, not images. Every page
//! carries `server.app_name` in its title and above its heading (with several apps, the app's
//! name after it: `Gateway::page_name`).

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Where an error page offers to go next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// "Sign in with Spotify": the error was part of a login, which can simply start over.
    SignIn,
    /// Back to the site's start page.
    Home,
}

/// After `/auth/logout`.
pub fn signed_out(app_name: &str) -> String {
    render(&Page {
        app_name,
        icon: Icon::SignedOut,
        heading: "Signed out",
        message: &format!(
            "You have signed out of {app_name}. Your Spotify account is no longer connected \
             in this browser."
        ),
        button: Some(Button::sign_in("/auth/login")),
        second: None,
        form: None,
        footnote: None,
    })
}

/// The user pressed Cancel on Spotify's consent page.
pub fn access_denied(app_name: &str) -> String {
    render(&Page {
        app_name,
        icon: Icon::Denied,
        heading: "Access denied",
        message: &format!(
            "You chose not to connect your Spotify account to {app_name}, so you are not \
             signed in. You can try again whenever you like."
        ),
        button: Some(Button::sign_in("/auth/login")),
        second: None,
        form: None,
        footnote: None,
    })
}

/// Spotify refused the user who just signed in: the app is in development mode (2026) and the
/// user is not registered in its dashboard.
pub fn not_registered(app_name: &str) -> String {
    render(&Page {
        app_name,
        icon: Icon::Denied,
        heading: "Your Spotify account is not enabled for this app yet",
        message: &format!(
            "{app_name} is in Spotify's development mode, where only the Spotify accounts its \
             owner has registered can use it, at most 5 of them. Ask the app's owner to add \
             your account (your Spotify email or user name) under User Management in the \
             app's settings on the Spotify developer dashboard, then sign in again."
        ),
        button: Some(Button::sign_in("/auth/login")),
        second: None,
        form: None,
        footnote: None,
    })
}

/// `[access]` refused the user who just signed in.
pub fn not_allowed(app_name: &str) -> String {
    render(&Page {
        app_name,
        icon: Icon::Denied,
        heading: "Not allowed",
        message: &format!(
            "Your Spotify account is not allowed to use {app_name}. If you think it should \
             be, ask the people who run {app_name}; or sign in with another Spotify account."
        ),
        button: Some(Button::sign_in("/auth/login")),
        second: None,
        form: None,
        footnote: None,
    })
}

/// `[access] allowed_products` is set, and Spotify withheld the product of the user who just
/// signed in (it does from development-mode apps, since March 2026).
pub fn product_unknown(app_name: &str) -> String {
    render(&Page {
        app_name,
        icon: Icon::Denied,
        heading: "Your Spotify subscription could not be checked",
        message: &format!(
            "{app_name} admits only some Spotify subscriptions, and Spotify did not say which \
             one your account has: Spotify withholds the subscription from apps in its \
             development mode. This is not about your account. The people who run {app_name} \
             can remove the subscription rule (allowed_products), or get the app extended \
             quota at Spotify; until then nobody can sign in."
        ),
        button: None,
        second: None,
        form: None,
        footnote: None,
    })
}

/// `/auth/disconnect`: what disconnecting does, and the form that does it.
pub fn disconnect_confirm(app_name: &str, token: &str) -> String {
    let form = format!(
        r#"<form method="post" action="/auth/disconnect"><input type="hidden" name="csrf" value="{}"><p><button class="button danger" type="submit">Disconnect and delete my data</button></p></form>"#,
        escape(token)
    );
    render(&Page {
        app_name,
        icon: Icon::SignedOut,
        heading: "Disconnect your Spotify account",
        message: &format!(
            "{app_name} will delete everything it holds for your Spotify account: your sign-in \
             on every device and browser, and the access Spotify gave it. You can sign in again \
             later; Spotify will ask for your consent once more."
        ),
        button: Some(Button {
            href: "/",
            label: "Keep me connected",
            spotify: false,
        }),
        second: None,
        form: Some(&form),
        footnote: None,
    })
}

/// After a disconnect: what was deleted, and Spotify's page for removing the app's access.
pub fn disconnected(app_name: &str, spotify_apps_page: &str) -> String {
    let link = format!(
        r#"<p class="footnote">To remove {} from your Spotify account as well, open <a href="{href}">{href}</a> and choose "Remove access".</p>"#,
        escape(app_name),
        href = escape(spotify_apps_page)
    );
    render(&Page {
        app_name,
        icon: Icon::SignedOut,
        heading: "Disconnected",
        message: &format!(
            "{app_name} has deleted your sign-in on every device and the access Spotify gave \
             it. Nothing of your Spotify account is kept here."
        ),
        button: Some(Button {
            href: spotify_apps_page,
            label: "Manage apps at Spotify",
            spotify: true,
        }),
        second: None,
        form: None,
        footnote: Some(&link),
    })
}

/// A browser presented a session cookie that no longer opens a session (it expired, or the
/// user signed out elsewhere). `login_href` signs in again and comes back to the page.
pub fn session_expired(app_name: &str, login_href: &str) -> String {
    render(&Page {
        app_name,
        icon: Icon::Expired,
        heading: "Your session has expired",
        message: &format!(
            "You were signed out of {app_name}, perhaps because you signed out on another \
             device or have been away for a while. Sign in again to pick up where you left off."
        ),
        button: Some(Button::sign_in(login_href)),
        second: None,
        form: None,
        footnote: None,
    })
}

/// The session's refresh token ends within a week (Spotify ends it six months after the
/// user's consent): one click renews it and comes back to the page (`renew_href`), or the
/// user carries on to `continue_href` and is asked again tomorrow.
pub fn reauth_offer(
    app_name: &str,
    days_left: u64,
    renew_href: &str,
    continue_href: &str,
) -> String {
    let when = match days_left {
        0 => "today".to_string(),
        1 => "within a day".to_string(),
        n => format!("in {n} days"),
    };
    render(&Page {
        app_name,
        icon: Icon::Expired,
        heading: "Renew your Spotify connection",
        message: &format!(
            "Spotify asks you to confirm {app_name}'s access to your account every six months. \
             Your connection ends {when}; renew it now to stay signed in. It takes one click \
             and brings you back here."
        ),
        button: Some(Button {
            href: renew_href,
            label: "Renew with Spotify",
            spotify: true,
        }),
        second: Some(Button {
            href: continue_href,
            label: "Not now",
            spotify: false,
        }),
        form: None,
        footnote: None,
    })
}

/// Any other failure; `request_id` lets an operator find the request in the logs.
pub fn error(app_name: &str, status: u16, message: &str, request_id: &str, next: Next) -> String {
    let heading = match status {
        404 => "Page not found",
        405 => "Not allowed here",
        502..=504 => "Temporarily unavailable",
        _ => "Something went wrong",
    };
    let button = match next {
        Next::SignIn => Button::sign_in("/auth/login"),
        Next::Home => Button {
            href: "/",
            label: "Go to the start page",
            spotify: false,
        },
    };
    let footnote = if request_id.is_empty() {
        format!("Error {status}")
    } else {
        format!(
            "Error {status} · reference <code>{}</code>",
            escape(request_id)
        )
    };
    render(&Page {
        app_name,
        icon: Icon::Error,
        heading,
        message,
        button: Some(button),
        second: None,
        form: None,
        footnote: Some(&footnote),
    })
}

struct Page<'a> {
    app_name: &'a str,
    icon: Icon,
    heading: &'a str,
    /// Plain text; escaped here.
    message: &'a str,
    button: Option<Button<'a>>,
    /// A second, plain choice beside the button.
    second: Option<Button<'a>>,
    /// Trusted HTML built by this module (a form), between the message and the buttons.
    form: Option<&'a str>,
    /// Trusted HTML built by this module.
    footnote: Option<&'a str>,
}

struct Button<'a> {
    href: &'a str,
    label: &'a str,
    /// Spotify's green with its glyph, as its branding asks of a sign-in button.
    spotify: bool,
}

impl Button<'_> {
    fn sign_in(href: &str) -> Button<'_> {
        Button {
            href,
            label: "Sign in with Spotify",
            spotify: true,
        }
    }
}

#[derive(Clone, Copy)]
enum Icon {
    SignedOut,
    Denied,
    Expired,
    Error,
}

impl Icon {
    /// Stroke paths on a 24×24 grid.
    fn paths(self) -> &'static str {
        match self {
            // A door with an arrow leaving it.
            Icon::SignedOut => {
                r#"<path d="M14 4h4a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-4"/><path d="M9 16l-4-4 4-4"/><path d="M5 12h10"/>"#
            }
            // A circle struck through.
            Icon::Denied => r#"<circle cx="12" cy="12" r="8"/><path d="M6.5 6.5l11 11"/>"#,
            // A clock.
            Icon::Expired => r#"<circle cx="12" cy="12" r="8"/><path d="M12 7.5V12l3 2"/>"#,
            // A warning sign.
            Icon::Error => r#"<path d="M12 4l9 16H3z"/><path d="M12 10v4"/><path d="M12 17h.01"/>"#,
        }
    }
}

/// Spotify's glyph: three arcs in a circle.
const SPOTIFY_GLYPH: &str = r##"<svg class="glyph" viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false"><circle cx="12" cy="12" r="12" fill="#000"/><g fill="none" stroke="#1ed760" stroke-linecap="round"><path d="M6 9.3c4-1.2 8.6-.8 12 1.1" stroke-width="2"/><path d="M6.8 12.7c3.3-.9 7-.6 9.8 1" stroke-width="1.7"/><path d="M7.5 15.9c2.6-.7 5.4-.5 7.6.8" stroke-width="1.4"/></g></svg>"##;

const STYLE: &str = r#"
:root{color-scheme:dark}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;padding:1.5rem;background:#121212;color:#fff;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{width:100%;max-width:27rem;background:#1f1f1f;border-radius:12px;padding:2.5rem 2rem;text-align:center;box-shadow:0 8px 24px rgba(0,0,0,.5)}
.brand{display:flex;align-items:center;justify-content:center;gap:.5rem;margin:0 0 2rem;font-weight:700;letter-spacing:.01em}
.brand svg{color:#1ed760}
.icon{width:4rem;height:4rem;margin:0 auto 1.25rem;border-radius:50%;background:#2a2a2a;display:flex;align-items:center;justify-content:center;color:#fff}
h1{font-size:1.625rem;line-height:1.25;margin:0 0 .75rem}
.message{color:#b3b3b3;margin:0 0 2rem}
.button{display:inline-flex;align-items:center;gap:.625rem;padding:.8rem 1.75rem;border-radius:999px;font-weight:700;text-decoration:none;background:transparent;color:#fff;border:1px solid #878787}
.button.spotify{background:#1ed760;color:#000;border-color:#1ed760}
button.button{font:inherit;font-weight:700;cursor:pointer}
.button.danger{background:#e22134;border-color:#e22134;color:#fff}
a{color:#1ed760}
.button:hover{border-color:#fff}
.button.spotify:hover{background:#3be477;border-color:#3be477}
a:focus-visible{outline:3px solid #fff;outline-offset:3px}
.footnote{margin:2rem 0 0;font-size:.8125rem;color:#a7a7a7}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;overflow-wrap:anywhere}
@media (prefers-reduced-motion:no-preference){.button{transition:background-color .15s,border-color .15s}}
"#;

fn render(page: &Page<'_>) -> String {
    let app = escape(page.app_name);
    let heading = escape(page.heading);
    let button: String = [&page.button, &page.second]
        .into_iter()
        .flatten()
        .map(|b| {
            let (class, glyph) = if b.spotify {
                ("button spotify", SPOTIFY_GLYPH)
            } else {
                ("button", "")
            };
            format!(
                r#"<p><a class="{class}" href="{href}">{glyph}<span>{label}</span></a></p>"#,
                href = escape(b.href),
                label = escape(b.label),
            )
        })
        .collect();
    let footnote = page
        .footnote
        .map(|f| format!(r#"<p class="footnote">{f}</p>"#))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{heading} · {app}</title>
<style>{STYLE}</style>
</head>
<body>
<main aria-labelledby="heading">
<p class="brand"><svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false" fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round"><path d="M12 3l7 3v5c0 4.5-3 8.3-7 10-4-1.7-7-5.5-7-10V6z"/></svg><span>{app}</span></p>
<div class="icon" aria-hidden="true"><svg viewBox="0 0 24 24" width="30" height="30" focusable="false" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">{icon}</svg></div>
<h1 id="heading">{heading}</h1>
<p class="message">{message}</p>
{form}{button}
{footnote}
</main>
</body>
</html>
"#,
        icon = page.icon.paths(),
        form = page.form.unwrap_or_default(),
        message = escape(page.message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        let page = error("<Acme>", 400, "\"x\" & 'y'", "id<1>", Next::SignIn);
        assert!(page.contains("&lt;Acme&gt;"));
        assert!(page.contains("&quot;x&quot; &amp; &#39;y&#39;"));
        assert!(page.contains("<code>id&lt;1&gt;</code>"));
        assert!(!page.contains("<Acme>"));
        let page = session_expired("App", "/auth/login?return_to=%2Fa&x=<");
        assert!(page.contains(r#"href="/auth/login?return_to=%2Fa&amp;x=&lt;""#));
    }

    #[test]
    fn pages_carry_the_app_name_and_an_accessible_structure() {
        for page in [
            signed_out("Acme Music"),
            access_denied("Acme Music"),
            session_expired("Acme Music", "/auth/login?return_to=%2F"),
            error("Acme Music", 503, "Try again.", "r1", Next::Home),
            reauth_offer("Acme Music", 3, "/auth/login?return_to=%2F", "/"),
            not_registered("Acme Music"),
            not_allowed("Acme Music"),
            product_unknown("Acme Music"),
            disconnect_confirm("Acme Music", "t<1>"),
            disconnected("Acme Music", "https://www.spotify.com/account/apps/"),
        ] {
            assert!(page.contains(r#"<html lang="en">"#));
            assert!(page.contains("· Acme Music</title>"), "{page}");
            assert!(page.contains("<span>Acme Music</span>"));
            assert_eq!(page.matches("<h1").count(), 1);
            assert!(page.contains("focus-visible"));
            // No external assets: nothing is loaded from anywhere.
            assert!(!page.contains("src="), "{page}");
            assert!(!page.contains("url("), "{page}");
        }
        assert!(session_expired("A", "/x").contains("Your session has expired"));
        let form = disconnect_confirm("A", "t<1>");
        assert!(form.contains(r#"<form method="post" action="/auth/disconnect">"#));
        assert!(form.contains(r#"value="t&lt;1&gt;""#), "{form}");
        assert!(signed_out("A").contains("Sign in with Spotify"));
        let home = error("A", 502, "m", "", Next::Home);
        assert!(home.contains("Temporarily unavailable"));
        assert!(home.contains(r#"href="/""#));
        assert!(!home.contains("Sign in with Spotify"));
    }
}
