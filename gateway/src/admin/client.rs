//! `spotify-gateway users list|show|revoke`: the admin API's client (routes in `admin_api`).
//! The token comes from `SPOTIFY_GATEWAY_ADMIN_TOKEN`, never from the command line (where
//! `ps` would show it).

use std::time::Duration;

use serde_json::Value;

/// The environment variable holding the admin token.
pub const TOKEN_ENV: &str = "SPOTIFY_GATEWAY_ADMIN_TOKEN";
/// One admin API call gives up after this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// `list` asks for pages of this many users.
const PAGE: usize = 500;

/// What `users` was asked to do.
pub enum Action {
    List,
    Show(String),
    Revoke(String),
}

/// Why a `users` command failed, each with the message the operator reads.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "{TOKEN_ENV} is not set: export the token the gateway's [admin] token_env/token_file holds"
    )]
    NoToken,
    #[error("cannot reach the admin API at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the admin API is off at {0} (404): set [admin] token_env or token_file in the gateway's config")]
    Off(String),
    #[error("the gateway refused the admin token (401): check {TOKEN_ENV}")]
    Refused,
    #[error("no live session of user {0:?}")]
    NoSuchUser(String),
    #[error("the admin API answered {status}: {body}")]
    Other { status: u16, body: String },
}

/// Runs `action` against the admin listener at `admin` (`http://host:9090`), on the app
/// `app` names (needed when the gateway serves several); prints a table, or JSON with `json`.
pub fn run(action: Action, admin: &str, app: Option<&str>, json: bool) -> Result<(), ClientError> {
    let token = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or(ClientError::NoToken)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Unreachable {
            url: admin.to_string(),
            detail: e.to_string(),
        })?;
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: admin.to_string(),
                detail: e.to_string(),
            })?,
        base: admin.trim_end_matches('/').to_string(),
        token: token.trim().to_string(),
        app: app.map(encode),
    };
    runtime.block_on(async {
        match action {
            Action::List => {
                let mut users = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let mut path = format!("/admin/v1/users?limit={PAGE}");
                    if let Some(c) = &cursor {
                        path.push_str("&cursor=");
                        path.push_str(&encode(c));
                    }
                    let page = client.call(reqwest::Method::GET, &path, None).await?;
                    users.extend(page["users"].as_array().cloned().unwrap_or_default());
                    match page["next_cursor"].as_str() {
                        Some(next) => cursor = Some(next.to_string()),
                        None => break,
                    }
                }
                if json {
                    println!("{}", Value::Array(users));
                } else {
                    print_table(&users);
                }
            }
            Action::Show(user) => {
                let path = format!("/admin/v1/users/{}", encode(&user));
                let found = client
                    .call(reqwest::Method::GET, &path, Some(&user))
                    .await?;
                if json {
                    println!("{found}");
                } else {
                    print_table(std::slice::from_ref(&found));
                }
            }
            Action::Revoke(user) => {
                let path = format!("/admin/v1/users/{}", encode(&user));
                let done = client.call(reqwest::Method::DELETE, &path, None).await?;
                if json {
                    println!("{done}");
                } else {
                    println!(
                        "revoked {user}: {} session(s) ended on every replica",
                        done["sessions_ended"].as_u64().unwrap_or(0)
                    );
                }
            }
        }
        Ok(())
    })
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    /// `?app=`, percent-encoded.
    app: Option<String>,
}

impl Client {
    /// One call; `user` names the user a 404 is about (else a 404 means the API is off).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<&str>,
    ) -> Result<Value, ClientError> {
        let url = match &self.app {
            Some(app) if path.contains('?') => format!("{}{path}&app={app}", self.base),
            Some(app) => format!("{}{path}?app={app}", self.base),
            None => format!("{}{path}", self.base),
        };
        let resp = self
            .http
            .request(method, url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                detail: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        match status {
            200 => Ok(parsed),
            401 => Err(ClientError::Refused),
            404 if parsed["error"] == "no_such_user" => Err(ClientError::NoSuchUser(
                user.unwrap_or_default().to_string(),
            )),
            404 => Err(ClientError::Off(self.base.clone())),
            _ => Err(ClientError::Other {
                status,
                body: body.chars().take(300).collect(),
            }),
        }
    }
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Users as an aligned table, one line each.
fn print_table(users: &[Value]) {
    const COLUMNS: [&str; 7] = [
        "user_id",
        "account_id",
        "display_name",
        "sessions",
        "created_at",
        "last_seen",
        "reauth_by",
    ];
    let cell = |u: &Value, c: &str| match &u[c] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| COLUMNS.iter().map(|c| cell(u, c)).collect())
        .collect();
    let widths: Vec<usize> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(COLUMNS.iter().map(|c| c.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
    println!("{} user(s)", users.len());
}
