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
body{margin:0;background:#121212;color:#fff;font-family:"Helvetica Neue",Helvetica,Arial,sans-serif;display:flex;justify-content:center;padding:48px 16px}
main{width:100%;max-width:480px;background:#181818;border-radius:8px;padding:40px 32px}
.logo{display:flex;align-items:center;gap:10px;font-weight:700;font-size:22px;margin-bottom:32px}
.dot{width:32px;height:32px;border-radius:50%;background:#1ed760;display:inline-block}
h1{font-size:28px;line-height:1.2;margin:0 0 24px}
h2{font-size:14px;text-transform:uppercase;letter-spacing:.1em;color:#b3b3b3;margin:24px 0 12px}
ul{list-style:none;padding:0;margin:0}
li.scope{padding:10px 0 10px 28px;position:relative;color:#fff}
li.scope:before{content:"\2713";color:#1ed760;position:absolute;left:0;font-weight:700}
label.user{display:flex;align-items:center;gap:12px;padding:12px;border:1px solid #333;border-radius:6px;margin-bottom:8px;cursor:pointer}
label.user:hover{border-color:#fff}
label.user small{color:#b3b3b3;display:block}
input[type=radio]{accent-color:#1ed760;width:18px;height:18px}
.buttons{display:flex;flex-direction:column;gap:12px;margin-top:32px}
button{border:0;border-radius:500px;padding:14px 32px;font-size:16px;font-weight:700;cursor:pointer}
button.agree{background:#1ed760;color:#000}
button.agree:hover{background:#3be477}
button.cancel{background:transparent;color:#fff;border:1px solid #727272}
button.cancel:hover{border-color:#fff}
p.note{color:#b3b3b3;font-size:12px;margin-top:24px;text-align:center}
"#;

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
             <title>Error - Spotify</title><style>{STYLE}</style></head>\
             <body><main><div class=\"logo\"><span class=\"dot\"></span>Spotify</div>\
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
             <span>{name}<small>{email}</small></span></label>",
            id = escape(user.id),
            checked = if i == 0 { " checked" } else { "" },
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
             <body><main><div class=\"logo\"><span class=\"dot\"></span>Spotify</div>\
             <h1>Allow {app} to access your Spotify account?</h1>\
             <form method=\"post\" action=\"/authorize/decision\">{hidden}\
             <h2>Log in as</h2><div>{users}</div>\
             <h2>You agree that {app} will be able to</h2><ul>{scope_items}</ul>\
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
    use super::escape;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
