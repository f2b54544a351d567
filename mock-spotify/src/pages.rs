//! HTML pages of the accounts service: the consent dialog and the error page.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use crate::catalog::USERS;

/// Escapes text for use in HTML content and double- or single-quoted attributes.
pub(crate) fn escape(text: &str) -> String {
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

/// What Spotify's consent dialog says a scope lets the app do.
fn scope_description(scope: &str) -> &str {
    match scope {
        "ugc-image-upload" => "Upload images to Spotify on your behalf",
        "user-read-playback-state" => {
            "Read your currently playing content and Spotify Connect devices information"
        }
        "user-modify-playback-state" => {
            "Control playback on your Spotify clients and Spotify Connect devices"
        }
        "user-read-currently-playing" => "Read your currently playing content",
        "app-remote-control" => "Communicate with the Spotify app on your device",
        "streaming" => "Play content and control playback on your other devices",
        "playlist-read-private" => "Access your private playlists",
        "playlist-read-collaborative" => "Access your collaborative playlists",
        "playlist-modify-private" => "Manage your private playlists",
        "playlist-modify-public" => "Manage your public playlists",
        "user-follow-modify" => "Manage who you are following",
        "user-follow-read" => "Access your followers and who you are following",
        "user-read-playback-position" => "Read your position in content you have played",
        "user-top-read" => "Read your top artists and content",
        "user-read-recently-played" => "Access your recently played items",
        "user-library-modify" => "Manage your saved content",
        "user-library-read" => "Access your saved content",
        "user-read-email" => "View your email address",
        "user-read-private" => {
            "View your Spotify account data: name, profile picture, country and subscription"
        }
        other => other,
    }
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;background:#121212;color:#fff;font-family:"Helvetica Neue",Helvetica,Arial,sans-serif;display:flex;justify-content:center;padding:48px 16px;line-height:1.4}
main{width:100%;max-width:480px;background:#181818;border-radius:8px;padding:40px 32px}
.logo{display:flex;align-items:center;gap:10px;font-weight:700;font-size:22px;margin-bottom:32px}
h1{font-size:28px;line-height:1.2;margin:0 0 24px}
h2,legend{font-size:14px;text-transform:uppercase;letter-spacing:.1em;color:#b3b3b3;margin:24px 0 12px;padding:0;font-weight:700}
fieldset{border:0;margin:0;padding:0;min-width:0}
ul{list-style:none;padding:0;margin:0}
li.scope{padding:10px 0 10px 28px;position:relative;color:#fff}
li.scope:before{content:"\2713";color:#1ed760;position:absolute;left:0;font-weight:700}
label.user{display:flex;align-items:center;gap:12px;padding:12px;border:1px solid #3e3e3e;border-radius:6px;margin-bottom:8px;cursor:pointer}
label.user:hover,label.user:has(input:checked){border-color:#fff}
label.user:focus-within{outline:3px solid #fff;outline-offset:2px}
label.user small{color:#b3b3b3;display:block}
.avatar{width:40px;height:40px;border-radius:50%;display:flex;align-items:center;justify-content:center;font-weight:700;color:#000;flex:none}
input[type=radio]{accent-color:#1ed760;width:18px;height:18px;margin:0}
.buttons{display:flex;flex-direction:column;gap:12px;margin-top:32px}
button{border:0;border-radius:500px;padding:14px 32px;font-size:16px;font-weight:700;cursor:pointer;font-family:inherit}
button:focus-visible{outline:3px solid #fff;outline-offset:3px}
button.agree{background:#1ed760;color:#000}
button.agree:hover{background:#3be477}
button.cancel{background:transparent;color:#fff;border:1px solid #878787}
button.cancel:hover{border-color:#fff}
p.small{color:#b3b3b3;font-size:13px;margin:24px 0 0}
p.note{color:#a7a7a7;font-size:12px;margin-top:24px;text-align:center}
"#;

/// Spotify's glyph, green on the dark page.
const LOGO: &str = "<svg viewBox=\"0 0 24 24\" width=\"32\" height=\"32\" aria-hidden=\"true\" \
    focusable=\"false\"><circle cx=\"12\" cy=\"12\" r=\"12\" fill=\"#1ed760\"/><g fill=\"none\" \
    stroke=\"#000\" stroke-linecap=\"round\"><path d=\"M6 9.3c4-1.2 8.6-.8 12 1.1\" \
    stroke-width=\"2\"/><path d=\"M6.8 12.7c3.3-.9 7-.6 9.8 1\" stroke-width=\"1.7\"/>\
    <path d=\"M7.5 15.9c2.6-.7 5.4-.5 7.6.8\" stroke-width=\"1.4\"/></g></svg>";

/// Background colours for the user picker's initials, chosen per user so each keeps one.
const AVATAR_COLOURS: [&str; 4] = ["#f573a0", "#509bf5", "#ffc864", "#1ed760"];

/// "Alice Andersson" → "AA".
fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect()
}

fn html_response(status: StatusCode, html: String) -> Response {
    let mut resp = Response::new(Body::from(html));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// The page Spotify shows instead of redirecting when the client or redirect URI is
/// not trustworthy (e.g. "INVALID_CLIENT: Invalid redirect URI").
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let message = escape(message);
    html_response(
        status,
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>Error - Spotify</title><style>{STYLE}</style></head>\
             <body><main><div class=\"logo\">{LOGO}<span>Spotify</span></div>\
             <h1>Oops! Something went wrong, please try again or check out our help area.</h1>\
             <p id=\"error\">{message}</p>\
             <p class=\"note\">Mock Spotify &mdash; a local stand-in, not the real service.</p>\
             </main></body></html>\n"
        ),
    )
}

/// The consent dialog. `params` are the original authorize parameters, carried on as
/// hidden inputs so `/authorize/decision` can re-validate them.
pub(crate) fn consent_page<'a>(
    app_name: &str,
    scopes: &[String],
    params: impl Iterator<Item = (&'a str, &'a str)>,
) -> Response {
    let app = escape(app_name);
    let mut scope_items = String::new();
    if scopes.is_empty() {
        scope_items.push_str("<li class=\"scope\">View your public profile information</li>");
    }
    for scope in scopes {
        scope_items.push_str(&format!(
            "<li class=\"scope\" title=\"{}\">{}</li>",
            escape(scope),
            escape(scope_description(scope))
        ));
    }
    let mut users = String::new();
    for (i, user) in USERS.iter().enumerate() {
        users.push_str(&format!(
            "<label class=\"user\"><input type=\"radio\" name=\"user\" value=\"{id}\"{checked}>\
             <span class=\"avatar\" style=\"background:{colour}\" aria-hidden=\"true\">{initials}</span>\
             <span>{name}<small>{email}</small></span></label>",
            id = escape(user.id),
            checked = if i == 0 { " checked" } else { "" },
            colour = AVATAR_COLOURS[i % AVATAR_COLOURS.len()],
            initials = escape(&initials(user.display_name)),
            name = escape(user.display_name),
            email = escape(user.email),
        ));
    }
    let mut hidden = String::new();
    for (name, value) in params {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        ));
    }
    html_response(
        StatusCode::OK,
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>Authorize - Spotify</title><style>{STYLE}</style></head>\
             <body><main><div class=\"logo\">{LOGO}<span>Spotify</span></div>\
             <h1>Allow {app} to access your Spotify account?</h1>\
             <form method=\"post\" action=\"/authorize/decision\">{hidden}\
             <fieldset><legend>Log in as</legend>{users}</fieldset>\
             <h2 id=\"scopes\">You agree that {app} will be able to</h2>\
             <ul aria-labelledby=\"scopes\">{scope_items}</ul>\
             <p class=\"small\">You can remove this access at any time in your account \
             settings, under Apps.</p>\
             <div class=\"buttons\">\
             <button class=\"agree\" type=\"submit\" name=\"decision\" value=\"approve\">Agree</button>\
             <button class=\"cancel\" type=\"submit\" name=\"decision\" value=\"deny\">Cancel</button>\
             </div></form>\
             <p class=\"note\">Mock Spotify &mdash; a local stand-in, not the real service.</p>\
             </main></body></html>\n"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::{escape, initials};

    #[test]
    fn initials_of_names() {
        assert_eq!(initials("Alice Andersson"), "AA");
        assert_eq!(initials("bob"), "B");
        assert_eq!(initials("Ann Marie Smith"), "AM");
        assert_eq!(initials(""), "");
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
