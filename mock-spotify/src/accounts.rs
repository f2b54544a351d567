//! The accounts service: `/authorize` (consent), `/authorize/decision` and `/api/token`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::catalog;
use crate::errors;
use crate::faults::{apply_fault, Target};
use crate::http::{json_response, Params, JSON};
use crate::pages::{consent_page, error_page};
use crate::state::{random_token, App, AuthCode, Authorization, CODE_LIFETIME};

/// Every scope Spotify accepts on `/authorize`.
const VALID_SCOPES: &[&str] = &[
    "ugc-image-upload",
    "user-read-playback-state",
    "user-modify-playback-state",
    "user-read-currently-playing",
    "app-remote-control",
    "streaming",
    "playlist-read-private",
    "playlist-read-collaborative",
    "playlist-modify-private",
    "playlist-modify-public",
    "user-follow-modify",
    "user-follow-read",
    "user-read-playback-position",
    "user-top-read",
    "user-read-recently-played",
    "user-library-modify",
    "user-library-read",
    "user-read-email",
    "user-read-private",
    "user-personalized",
    "user-soa-link",
    "user-soa-unlink",
    "soa-manage-entitlements",
    "soa-manage-partner",
    "soa-create-partner",
];

/// Parameters of the original authorize request carried through the consent form.
const AUTHORIZE_PARAMS: &[&str] = &[
    "client_id",
    "response_type",
    "redirect_uri",
    "state",
    "scope",
    "show_dialog",
    "code_challenge_method",
    "code_challenge",
];

pub(crate) async fn authorize(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let params = Params::parse(uri.query().unwrap_or("").as_bytes());
    let decision = match (params.get("mock_user"), params.get("mock_decision")) {
        (None, None) => None,
        (Some(user), Some(decision)) => Some((user, decision)),
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "mock_user and mock_decision must be given together",
            )
        }
    };
    authorize_flow(&app, &params, decision)
}

/// The consent form's submission.
pub(crate) async fn decision(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let params = Params::parse(&body);
    match (params.get("user"), params.get("decision")) {
        (Some(user), Some(decision)) => authorize_flow(&app, &params, Some((user, decision))),
        _ => error_page(StatusCode::BAD_REQUEST, "Missing user or decision"),
    }
}

/// Validates an authorize request in Spotify's order (client and redirect URI first,
/// as error pages; the rest as redirects) and then either shows the consent page or
/// carries out `decision` = (user, "approve" | "deny").
fn authorize_flow(app: &App, params: &Params, decision: Option<(&str, &str)>) -> Response {
    let Some(config) = params.get("client_id").and_then(|id| app.client(id)) else {
        return error_page(StatusCode::BAD_REQUEST, "INVALID_CLIENT: Invalid client");
    };
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if config.redirect_uris.iter().any(|r| r == uri) => uri,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "INVALID_CLIENT: Invalid redirect URI",
            )
        }
    };
    let state = params.get("state").filter(|s| !s.is_empty());
    let fail = |error: &str, description: Option<&str>| {
        let mut pairs = vec![("error", error)];
        if let Some(description) = description {
            pairs.push(("error_description", description));
        }
        if let Some(state) = state {
            pairs.push(("state", state));
        }
        redirect(redirect_uri, &pairs)
    };

    if params.get("response_type") != Some("code") {
        return fail("unsupported_response_type", None);
    }
    let challenge = match (
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    ) {
        (None, None) => None,
        (None, Some(_)) => {
            return fail(
                "invalid_request",
                Some("code_challenge must be supplied with code_challenge_method"),
            )
        }
        (Some(challenge), method) => {
            if method != Some("S256") {
                return fail(
                    "invalid_request",
                    Some("code_challenge_method must be S256"),
                );
            }
            if !is_s256_challenge(challenge) {
                return fail(
                    "invalid_request",
                    Some("code_challenge must be 43 characters of base64url"),
                );
            }
            Some(challenge.to_string())
        }
    };
    let mut scopes: Vec<String> = Vec::new();
    for scope in params.get("scope").unwrap_or("").split_whitespace() {
        if !VALID_SCOPES.contains(&scope) {
            return fail("invalid_scope", Some("Invalid scope"));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_string());
        }
    }

    let Some((user, decision)) = decision else {
        let carried = params.iter().filter(|(k, _)| AUTHORIZE_PARAMS.contains(k));
        return consent_page(config.app_name, &scopes, carried);
    };
    if catalog::user(user).is_none() {
        return error_page(StatusCode::BAD_REQUEST, "Unknown user");
    }
    match decision {
        "approve" => {
            let code = random_token("AQ");
            app.lock().codes.insert(
                code.clone(),
                AuthCode {
                    client_id: config.client_id.to_string(),
                    redirect_uri: redirect_uri.to_string(),
                    user: user.to_string(),
                    scopes,
                    challenge,
                    expires_at: Instant::now() + CODE_LIFETIME,
                },
            );
            let mut pairs = vec![("code", code.as_str())];
            if let Some(state) = state {
                pairs.push(("state", state));
            }
            redirect(redirect_uri, &pairs)
        }
        "deny" => fail("access_denied", None),
        _ => error_page(StatusCode::BAD_REQUEST, "decision must be approve or deny"),
    }
}

/// RFC 7636 S256 challenge: base64url(sha256) without padding is exactly 43 chars.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 code_verifier: 43-128 unreserved characters.
fn is_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn redirect(base: &str, pairs: &[(&str, &str)]) -> Response {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    let separator = if base.contains('?') { '&' } else { '?' };
    let location = format!("{base}{separator}{}", query.finish());
    let mut resp = Response::new(axum::body::Body::empty());
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            *resp.status_mut() = StatusCode::FOUND;
            resp.headers_mut().insert(header::LOCATION, value);
        }
        // Only reachable with a registered redirect URI that is not a valid header.
        Err(_) => *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    resp
}

fn oauth_error(error: &str, description: &str) -> Response {
    no_store(errors::oauth_error(
        StatusCode::BAD_REQUEST,
        error,
        description,
    ))
}

fn token_json(status: StatusCode, value: &serde_json::Value) -> Response {
    no_store(json_response(status, value, JSON))
}

/// RFC 6749 section 5.1: token responses, errors included, must not be cached.
fn no_store(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// How the client authenticated at the token endpoint.
#[derive(PartialEq, Eq, Debug)]
enum ClientAuth {
    /// Proved knowledge of the secret (Basic header, or client_secret in the body).
    Confidential,
    /// Sent only its client_id (a PKCE public client).
    Public,
}

/// How the client authenticated, and its client id.
fn authenticate(
    app: &App,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(ClientAuth, String), Response> {
    let invalid_client = || oauth_error("invalid_client", "Invalid client");
    let invalid_secret = || oauth_error("invalid_client", "Invalid client secret");
    let body_id = params.get("client_id");
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let (id, secret) = basic_credentials(value).ok_or_else(invalid_client)?;
        let config = app
            .config
            .other_clients
            .iter()
            .map(|o| o.client_id.as_str())
            .chain([app.config.client_id.as_str()])
            .find(|known| matches_encoded(&id, known))
            .and_then(|known| app.client(known))
            .ok_or_else(invalid_client)?;
        if !matches_encoded(&secret, config.client_secret) {
            return Err(invalid_secret());
        }
        if body_id.is_some_and(|b| b != config.client_id) {
            return Err(invalid_client());
        }
        return Ok((ClientAuth::Confidential, config.client_id.to_string()));
    }
    let Some(config) = body_id.and_then(|id| app.client(id)) else {
        return Err(invalid_client());
    };
    let id = config.client_id.to_string();
    match params.get("client_secret") {
        // Spotify also takes the secret as a body parameter.
        Some(secret) if secret == config.client_secret => Ok((ClientAuth::Confidential, id)),
        Some(_) => Err(invalid_secret()),
        None => Ok((ClientAuth::Public, id)),
    }
}

/// `Basic base64(id:secret)` → (id, secret), both still as sent.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// RFC 6749 section 2.3.1 has clients form-encode id and secret inside Basic
/// credentials (the oauth2 crate does); accept either spelling.
fn matches_encoded(sent: &str, expected: &str) -> bool {
    if sent == expected {
        return true;
    }
    let decoded: String = form_urlencoded::parse(format!("x={sent}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    decoded == expected
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

pub(crate) async fn token(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::parse(&body);
    // Counted by the grant type the body names, whatever happens next. The body is
    // logged as sent (secrets and refresh tokens included): tests use it to learn
    // what the gateway holds.
    let hit = app.arrive(
        Target::Token,
        &method,
        &uri,
        &headers,
        Some(&body),
        params.get("grant_type"),
    );
    if let Some(resp) = apply_fault(hit, Target::Token).await {
        return resp;
    }
    if method != Method::POST {
        let mut resp = oauth_error("invalid_request", "Method not allowed");
        *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    // A body in another format carries no parameters as far as Spotify is concerned.
    let params = if is_form(&headers) {
        params
    } else {
        Params::parse(b"")
    };
    let grant_type = match params.get("grant_type") {
        None => return oauth_error("unsupported_grant_type", "grant_type parameter is missing"),
        Some(g @ ("client_credentials" | "authorization_code" | "refresh_token")) => g,
        Some(_) => {
            return oauth_error(
                "unsupported_grant_type",
                "grant_type must be client_credentials, authorization_code or refresh_token",
            )
        }
    };
    let (auth, client_id) = match authenticate(&app, &headers, &params) {
        Ok(auth) => auth,
        Err(resp) => return resp,
    };
    match grant_type {
        "client_credentials" => client_credentials(&app, auth, &client_id),
        "authorization_code" => authorization_code(&app, auth, &client_id, &params),
        _ => refresh_token(&app, auth, &client_id, &params),
    }
}

fn client_credentials(app: &App, auth: ClientAuth, client_id: &str) -> Response {
    if auth != ClientAuth::Confidential {
        return oauth_error("invalid_client", "Invalid client");
    }
    let lifetime = app.config.token_lifetime;
    let access = app.lock().issue_access(client_id, lifetime, None, &[]);
    token_json(
        StatusCode::OK,
        &json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": app.expires_in(),
        }),
    )
}

fn authorization_code(app: &App, auth: ClientAuth, client_id: &str, params: &Params) -> Response {
    let Some(code) = params.get("code") else {
        return oauth_error("invalid_request", "code must be supplied");
    };
    let mut store = app.lock();
    // Any redemption attempt uses the code up, so a failed one cannot be retried.
    let Some(grant) = store.codes.remove(code) else {
        return oauth_error("invalid_grant", "Invalid authorization code");
    };
    if grant.expires_at <= Instant::now() {
        return oauth_error("invalid_grant", "Invalid authorization code");
    }
    if grant.client_id != client_id {
        return oauth_error("invalid_client", "Invalid client");
    }
    if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return oauth_error("invalid_grant", "Invalid redirect URI");
    }
    match &grant.challenge {
        Some(challenge) => {
            let verified = params.get("code_verifier").is_some_and(|verifier| {
                is_code_verifier(verifier)
                    && base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(Sha256::digest(verifier.as_bytes()))
                        == *challenge
            });
            if !verified {
                return oauth_error("invalid_grant", "code_verifier was incorrect");
            }
        }
        // Without PKCE only the client secret proves who is redeeming the code.
        None if auth != ClientAuth::Confidential => {
            return oauth_error("invalid_client", "Invalid client");
        }
        None => {}
    }
    let access = store.issue_access(
        client_id,
        app.config.token_lifetime,
        Some(&grant.user),
        &grant.scopes,
    );
    let refresh = store.issue_refresh(
        &grant.client_id,
        &grant.user,
        &grant.scopes,
        grant.challenge.is_some(),
        Authorization::now(),
    );
    drop(store);
    token_json(
        StatusCode::OK,
        &json!({
            "access_token": access,
            "token_type": "Bearer",
            "scope": grant.scopes.join(" "),
            "expires_in": app.expires_in(),
            "refresh_token": refresh,
        }),
    )
}

fn refresh_token(app: &App, auth: ClientAuth, client_id: &str, params: &Params) -> Response {
    let Some(token) = params.get("refresh_token") else {
        return oauth_error("invalid_request", "refresh_token must be supplied");
    };
    let mut store = app.lock();
    let Some(grant) = store.refresh.get(token) else {
        return oauth_error("invalid_grant", "Refresh token revoked");
    };
    if grant.client_id != client_id {
        return oauth_error("invalid_grant", "Invalid refresh token");
    }
    // Only a token born of PKCE may be refreshed by the public client alone.
    if auth == ClientAuth::Public && !grant.pkce {
        return oauth_error("invalid_client", "Invalid client");
    }
    // Since 2026 a refresh token ends six months after the user's original authorization,
    // however often it was refreshed (or rotated) since: the user must authorize again.
    if grant.authorized.age() >= app.config.refresh_token_lifetime {
        store.refresh.remove(token);
        return oauth_error("invalid_grant", "Refresh token expired");
    }
    let (client_id, user, scopes, pkce, authorized) = (
        grant.client_id.clone(),
        grant.user.clone(),
        grant.scopes.clone(),
        grant.pkce,
        grant.authorized,
    );
    // Public clients get single-use refresh tokens; confidential ones keep theirs.
    let rotated = if auth == ClientAuth::Public {
        store.refresh.remove(token);
        Some(store.issue_refresh(&client_id, &user, &scopes, pkce, authorized))
    } else {
        None
    };
    let access = store.issue_access(&client_id, app.config.token_lifetime, Some(&user), &scopes);
    drop(store);
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "scope": scopes.join(" "),
        "expires_in": app.expires_in(),
    });
    if let Some(refresh) = rotated {
        body["refresh_token"] = json!(refresh);
    }
    token_json(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_shapes() {
        // RFC 7636 appendix B example.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(is_code_verifier(verifier));
        assert!(is_s256_challenge(&challenge));
        assert!(!is_code_verifier("short"));
        assert!(!is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM="
        ));
    }

    #[test]
    fn encoded_basic_credentials_match() {
        assert!(matches_encoded("a%2Bb", "a+b"));
        assert!(matches_encoded("plain", "plain"));
        assert!(!matches_encoded("other", "plain"));
    }
}
