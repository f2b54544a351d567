//! The route template of a Web API call (`spotify.endpoint` on its spans): its path with every
//! segment that names something (an id, a user, a category) replaced by `{id}`, so a span tells
//! `/v1/playlists/{id}/items` from `/v1/playlists/{id}/followers` and never carries an id.
//!
//! A segment is kept only when it is one of the Web API's own words and not in a place an id
//! goes (right after `albums`, `users`, `playlists`... at the top, or `browse/categories`);
//! anything else, an endpoint Spotify added since included, becomes `{id}`: a new word costs a
//! less precise template, never a leak.

/// Top-level resources whose next segment is an id.
const ID_AFTER: [&str; 11] = [
    "albums",
    "artists",
    "audio-analysis",
    "audio-features",
    "audiobooks",
    "chapters",
    "episodes",
    "playlists",
    "shows",
    "tracks",
    "users",
];

/// The Web API's fixed path words.
const WORDS: [&str; 45] = [
    "albums",
    "artists",
    "audio-analysis",
    "audio-features",
    "audiobooks",
    "available-genre-seeds",
    "browse",
    "categories",
    "chapters",
    "contains",
    "currently-playing",
    "devices",
    "episodes",
    "featured-playlists",
    "followers",
    "following",
    "images",
    "items",
    "library",
    "markets",
    "me",
    "new-releases",
    "next",
    "pause",
    "play",
    "player",
    "playlists",
    "previous",
    "queue",
    "recently-played",
    "recommendations",
    "related-artists",
    "repeat",
    "search",
    "seek",
    "shows",
    "shuffle",
    "top",
    "top-tracks",
    "tracks",
    "users",
    "volume",
    "genres",
    "saved",
    "v1",
];

/// More segments than any Web API route has: the rest is folded into one `{id}`.
const MAX_SEGMENTS: usize = 8;

/// `/v1/...` (the query already gone) as its template.
pub fn template(path: &str) -> String {
    let mut out = String::with_capacity(path.len().min(64));
    let segments = path.trim_start_matches('/').split('/');
    let mut previous: Option<&str> = None;
    for (i, segment) in segments.enumerate() {
        if i >= MAX_SEGMENTS {
            out.push_str("/{id}");
            break;
        }
        if segment.is_empty() {
            continue;
        }
        // `/v1/RESOURCE/{id}`, and `/v1/browse/categories/{id}`.
        let id_place = match (i, previous) {
            (2, Some(p)) => ID_AFTER.contains(&p),
            (3, Some("categories")) => true,
            _ => false,
        };
        let kept = !id_place && WORDS.contains(&segment);
        out.push('/');
        out.push_str(if kept { segment } else { "{id}" });
        previous = Some(segment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::template;

    #[test]
    fn ids_become_placeholders_and_the_api_words_stay() {
        for (path, want) in [
            ("/v1/me", "/v1/me"),
            ("/v1/me/player/play", "/v1/me/player/play"),
            ("/v1/me/tracks/contains", "/v1/me/tracks/contains"),
            (
                "/v1/playlists/3cEYpjA9oz9GiPac4AsH4n/items",
                "/v1/playlists/{id}/items",
            ),
            (
                "/v1/playlists/p1/followers/contains",
                "/v1/playlists/{id}/followers/contains",
            ),
            ("/v1/users/alice/playlists", "/v1/users/{id}/playlists"),
            ("/v1/users/tracks", "/v1/users/{id}"),
            ("/v1/artists/a1/top-tracks", "/v1/artists/{id}/top-tracks"),
            (
                "/v1/browse/categories/party/playlists",
                "/v1/browse/categories/{id}/playlists",
            ),
            ("/v1/browse/new-releases", "/v1/browse/new-releases"),
            ("/v1/search", "/v1/search"),
            ("/v1/brand-new/xyz", "/v1/{id}/{id}"),
            ("/v1/tracks/", "/v1/tracks"),
            (
                "/v1/a/b/c/d/e/f/g/h/i/j",
                "/v1/{id}/{id}/{id}/{id}/{id}/{id}/{id}/{id}",
            ),
        ] {
            assert_eq!(template(path), want, "{path}");
        }
    }
}
