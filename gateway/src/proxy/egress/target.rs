//! Which requests may carry a token at all: the method, and a request target that can only
//! ever reach the configured API host under `/v1/`. Checked before any token is touched.

use super::super::path_rule::check_path;
use super::super::respond::Failure;

/// First path segments of the Web API, used as route labels; anything else is `/v1/other`, so
/// metric labels stay bounded whatever callers send.
const KNOWN_ROUTES: &[(&str, &str)] = &[
    ("albums", "/v1/albums"),
    ("artists", "/v1/artists"),
    ("audiobooks", "/v1/audiobooks"),
    ("browse", "/v1/browse"),
    ("chapters", "/v1/chapters"),
    ("episodes", "/v1/episodes"),
    ("markets", "/v1/markets"),
    ("me", "/v1/me"),
    ("playlists", "/v1/playlists"),
    ("recommendations", "/v1/recommendations"),
    ("search", "/v1/search"),
    ("shows", "/v1/shows"),
    ("tracks", "/v1/tracks"),
    ("users", "/v1/users"),
];

/// The methods the egress forwards, for the `Allow` header.
const API_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Whether a method may carry a token to Spotify. TRACE would echo the injected token back
/// to the caller, CONNECT would open a tunnel, and an extension method (`PROPFIND`, a
/// lowercase `get`) is nothing the Web API answers.
fn is_api_method(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .contains(method)
}

/// Why a request target is refused before any token is touched.
#[derive(Debug, PartialEq, Eq)]
enum TargetProblem {
    /// Not under `/v1/`: 404, as api.spotify.com answers.
    NotApi,
    /// Absolute-form, dot segments, encoded separators: 400.
    Unsafe(&'static str),
}

/// Checks a request target and returns its route label. Only origin-form paths under `/v1/`
/// that the shared path rule allows (`proxy::path_rule`: no dot segments, no encoded
/// separators) pass, so a token can only ever reach the configured API host, under `/v1/`.
///
/// `raw` is the target as the client sent it: pingora 0.9 puts only the path of an
/// absolute-form target (`GET http://host/v1/me`) into the `Uri`, and lets it through when
/// `Host` names the same authority, so the form can only be seen in the raw bytes.
fn check_target(raw: &[u8], uri: &http::Uri) -> Result<&'static str, TargetProblem> {
    if !raw.starts_with(b"/") || uri.scheme().is_some() || uri.authority().is_some() {
        return Err(TargetProblem::Unsafe(
            "absolute-form request targets are not accepted; send the path only",
        ));
    }
    let path = uri.path();
    check_path(path).map_err(|problem| TargetProblem::Unsafe(problem.message()))?;
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(TargetProblem::NotApi);
    };
    let first = rest.split('/').next().unwrap_or_default();
    Ok(KNOWN_ROUTES
        .iter()
        .find(|(seg, _)| *seg == first)
        .map(|(_, route)| *route)
        .unwrap_or("/v1/other"))
}

/// The route label of an acceptable API call, or the answer that refuses it.
pub fn check(method: &http::Method, raw: &[u8], uri: &http::Uri) -> Result<&'static str, Failure> {
    if !is_api_method(method) {
        return Err(Failure::MethodNotAllowed {
            message: format!("{method} is not supported; the Web API takes {API_METHODS}").into(),
            allow: Some(API_METHODS),
        });
    }
    check_target(raw, uri).map_err(|problem| match problem {
        TargetProblem::NotApi => {
            Failure::NotFound("Service not found: the egress listener serves /v1/ only")
        }
        TargetProblem::Unsafe(why) => Failure::BadRequest(why.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(target: &str) -> Result<&'static str, TargetProblem> {
        check_target(target.as_bytes(), &target.parse().expect("valid uri"))
    }

    #[test]
    fn only_origin_form_v1_paths_pass() {
        assert_eq!(check("/v1/search?q=abba"), Ok("/v1/search"));
        assert_eq!(check("/v1/me/player"), Ok("/v1/me"));
        assert_eq!(check("/v1/unheard-of"), Ok("/v1/other"));
        assert_eq!(check("/v2/search"), Err(TargetProblem::NotApi));
        assert_eq!(check("/"), Err(TargetProblem::NotApi));
        assert!(matches!(
            check("http://evil.example/v1/me"),
            Err(TargetProblem::Unsafe(_))
        ));
        assert!(matches!(
            check("/v1/../admin"),
            Err(TargetProblem::Unsafe(_))
        ));
        assert!(matches!(
            check("/v1/%2e%2E/x"),
            Err(TargetProblem::Unsafe(_))
        ));
        assert!(matches!(check("/v1/a%2fb"), Err(TargetProblem::Unsafe(_))));
        for unsafe_path in [
            "/v1/a%2Fb",
            "/v1/a%5cb",
            "/v1/a%5Cb",
            "/v1/%2E%2e/x",
            "/v1/%2e/x",
            "/v1/me/.",
            "/v1/me/..",
            "/v1/.%2E",
        ] {
            assert!(
                matches!(check(unsafe_path), Err(TargetProblem::Unsafe(_))),
                "{unsafe_path}"
            );
        }
        for fine in [
            "/v1/...",
            "/v1/.x",
            "/v1/a%2",
            "/v1/a%",
            "/v1/%2ex",
            "/v1/a%25/b",
        ] {
            assert!(check(fine).is_ok(), "{fine}");
        }
        // pingora hands over an absolute-form target as its path alone; the raw bytes tell.
        let path_only: http::Uri = "/v1/me".parse().expect("uri");
        for raw in ["http://evil.example/v1/me", "*", "api.spotify.com:443"] {
            assert!(
                matches!(
                    check_target(raw.as_bytes(), &path_only),
                    Err(TargetProblem::Unsafe(_))
                ),
                "{raw}"
            );
        }
    }
}
