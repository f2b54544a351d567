//! The one rule for a request path the gateway makes a decision on: no dot segments, no
//! backslashes, no encoded separators. Both listeners apply it before any routing decision
//! (the egress before a token is touched, the public listener before public paths, sessions
//! and `/auth/` routes), and it is a function of a path string so a forwarded URI can be held
//! to it too.
//!
//! Such paths are refused, not normalised (RFC 3986 §5.2.4). The gateway forwards the path as
//! sent, so what it decided on is what the upstream gets. Normalising would mean guessing how
//! the upstream reads `%2e`, `%2F`, `\` and `..;`, and upstreams disagree: some decode `%2F`
//! into a separator after routing, some read `\` as `/` (Windows, some routers), some drop
//! `;params` before resolving `..` (Tomcat, Spring). Refusing costs legitimate clients
//! nothing: browsers remove dot segments (`.`, `%2e` and their mixes) and turn `\` into `/`
//! before they send, so only crafted requests carry these. The one cost is an app that puts
//! `%2F` or `%5C` inside a path segment; it gets a 400.

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// `\`, or `/` or `\` percent-encoded: the upstream may read a separator the gateway did not.
    Separator,
    /// A `.` or `..` segment, however spelled: the upstream may resolve it, the gateway does not.
    DotSegment,
}

impl PathProblem {
    /// The message of the 400 answer.
    pub fn message(self) -> &'static str {
        match self {
            PathProblem::Separator => "encoded path separators are not accepted",
            PathProblem::DotSegment => "dot segments are not accepted in the path",
        }
    }
}

/// Checks a path against the rule. A `?` or `#` ends the path, so a whole forwarded URI can
/// be given; the query is not checked (it is no path to resolve).
pub fn check_path(path: &str) -> Result<(), PathProblem> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.contains('\\') || has_encoded_separator(path.as_bytes()) {
        return Err(PathProblem::Separator);
    }
    if path.split('/').any(is_dot_segment) {
        return Err(PathProblem::DotSegment);
    }
    Ok(())
}

/// `%2F` or `%5C` in any case: a `/` or `\\` the upstream may decode into a separator.
fn has_encoded_separator(path: &[u8]) -> bool {
    memchr::memchr_iter(b'%', path).any(|at| {
        matches!(
            path.get(at + 1..at + 3),
            Some([b'2', b'f' | b'F'] | [b'5', b'c' | b'C'])
        )
    })
}

/// `.` or `..`, each dot possibly written `%2e` / `%2E`, and possibly followed by `;params`
/// (servlet containers strip path parameters before resolving dot segments: `..;/`).
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.split(';').next().unwrap_or_default().as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_backslashes_and_encoded_separators_are_refused() {
        use PathProblem::{DotSegment, Separator};
        let refused = [
            ("/public/../app", DotSegment),
            ("/public/%2e%2e/app", DotSegment),
            ("/public/%2E%2E/app", DotSegment),
            ("/public/.%2E/app", DotSegment),
            ("/public/%2e./app", DotSegment),
            ("/public/./app", DotSegment),
            ("/public/%2e/app", DotSegment),
            ("/public/x/..", DotSegment),
            ("/public/x/.", DotSegment),
            ("/..", DotSegment),
            ("/.", DotSegment),
            ("/public/..;/app", DotSegment),
            ("/public/.;x/app", DotSegment),
            ("/public/../app?x=1", DotSegment),
            ("/public/..%2fapp", Separator),
            ("/public/..%2Fapp", Separator),
            ("/public/%2e%2e%2fapp", Separator),
            ("/public/a%5cb", Separator),
            ("/public/a%5Cb", Separator),
            ("/public/..\\app", Separator),
            ("\\public", Separator),
            ("/%2F", Separator),
        ];
        for (path, problem) in refused {
            assert_eq!(check_path(path), Err(problem), "{path}");
        }
    }

    #[test]
    fn dots_that_are_no_segment_pass() {
        for path in [
            "/",
            "",
            "/public/x",
            "/public/...",
            "/public/...x",
            "/public/.x",
            "/public/x..",
            "/a.b/",
            "/public/a%2eb",
            "/public/%2ex",
            "/public/a%2",
            "/public/a%",
            "/public/a%25/b",
            "/public/a;b",
            "//public",
            // The query is not the path.
            "/public/x?next=../app&p=%2F",
            "/public/x#../..",
        ] {
            assert_eq!(check_path(path), Ok(()), "{path}");
        }
    }
}
