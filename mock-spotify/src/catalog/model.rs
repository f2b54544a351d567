//! The catalogue's record types, as the Web API renders them: artists, albums and
//! tracks (linked by index into `Catalog`'s vectors), users and playlists.

pub(crate) struct Artist {
    pub id: String,
    pub name: &'static str,
    pub popularity: u32,
    pub followers: u64,
}

pub(crate) struct Album {
    pub id: String,
    pub name: String,
    pub artist: usize,
    pub year: u16,
    pub tracks: Vec<usize>,
}

pub(crate) struct Track {
    pub id: String,
    pub name: String,
    pub artist: usize,
    pub album: usize,
    pub track_number: u32,
    pub duration_ms: u64,
    pub popularity: u32,
}

pub(crate) struct User {
    pub id: &'static str,
    /// Spotify's stable, pseudonymous `account_id` (May 2026), which Spotify asks apps to
    /// use instead of `id`.
    pub account_id: &'static str,
    pub display_name: &'static str,
    pub email: &'static str,
    pub country: &'static str,
    pub product: &'static str,
    pub followers: u64,
    /// What `/v1/me/player/currently-playing` reports: (artist, track name).
    pub now_playing: Option<(&'static str, &'static str)>,
}

pub(crate) struct Playlist {
    pub id: String,
    pub name: &'static str,
    pub description: &'static str,
    pub owner: &'static str,
    pub public: bool,
    pub followers: u64,
    pub tracks: Vec<usize>,
}

pub(crate) struct Catalog {
    pub artists: Vec<Artist>,
    pub albums: Vec<Album>,
    pub tracks: Vec<Track>,
    pub playlists: Vec<Playlist>,
}
