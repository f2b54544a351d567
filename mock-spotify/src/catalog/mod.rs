//! The fixed, deterministic catalogue: artists, albums, tracks, users and playlists,
//! built once from the tables in `data` into the records of `model`, and looked up
//! (by id, by name, by search query) from here.
//!
//! IDs are 22-character base62 strings derived from names with SHA-256, so they are
//! the same on every run and every machine.

mod data;
mod model;

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub use data::DEFAULT_REGISTERED;
pub use data::LARGE_PLAYLIST_ID;
use data::{Tracks, DATA, LARGE_PLAYLIST, LARGE_PLAYLIST_LEN, PLAYLISTS};
pub(crate) use data::{MARKETS, USERS};
pub(crate) use model::{Album, Artist, Catalog, Playlist, Track, User};

pub(crate) fn user(id: &str) -> Option<&'static User> {
    USERS.iter().chain(listeners()).find(|u| u.id == id)
}

/// How many generated listeners there are besides alice, bob and carol.
pub const LISTENERS: usize = 20;

/// `listener01` to `listener20`: generated users for load with many signed-in users
/// (`benches/quota.sh`). They can log in and call the API like the three named users, but
/// the consent page does not list them (pass `mock_user=listenerNN`), and a
/// development-mode app has them unregistered (switch to `extended_quota`).
fn listeners() -> &'static [User] {
    static LISTENER_USERS: OnceLock<Vec<User>> = OnceLock::new();
    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }
    LISTENER_USERS.get_or_init(|| {
        (1..=LISTENERS)
            .map(|i| {
                let id = format!("listener{i:02}");
                User {
                    account_id: leak(format!("acc{}", &base62_id(&format!("account:{id}"))[..19])),
                    display_name: leak(format!("Listener {i:02}")),
                    email: leak(format!("{id}@example.com")),
                    country: MARKETS[i % MARKETS.len()],
                    product: "premium",
                    followers: i as u64,
                    now_playing: None,
                    id: leak(id),
                }
            })
            .collect()
    })
}

/// The artist of the generated part of the catalogue (no "a" in any of its names, so
/// searches the tests make, `q=a` among them, find what they found before).
const GENERATED_ARTIST: &str = "Zipf Ensemble";
/// Tracks in the generated part: 50 albums ("Études, Book N") of 20 tracks ("Étude No. N").
pub const GENERATED_TRACKS: usize = 1000;
const GENERATED_PER_ALBUM: usize = 20;

/// The ids of the generated tracks, in order (`GET /v1/tracks/{id}` answers each), for load
/// generators that need a catalogue larger than the hand-written one.
pub fn generated_track_ids() -> Vec<&'static str> {
    let c = catalog();
    c.tracks
        .iter()
        .filter(|t| c.artists[t.artist].name == GENERATED_ARTIST)
        .map(|t| t.id.as_str())
        .collect()
}

/// Appends the generated artist, albums and tracks (after the seeded playlists and the large
/// playlist, which therefore keep their tracks).
fn add_generated(catalog: &mut Catalog) {
    let artist = catalog.artists.len();
    let key = format!("artist:{GENERATED_ARTIST}");
    catalog.artists.push(Artist {
        id: base62_id(&key),
        name: GENERATED_ARTIST,
        popularity: stable_number(&key, 20, 30) as u32,
        followers: stable_number(&key, 1_000, 50_000),
    });
    for book in 1..=GENERATED_TRACKS / GENERATED_PER_ALBUM {
        let album_name = format!("Études, Book {book}");
        let album = catalog.albums.len();
        let mut album_tracks = Vec::with_capacity(GENERATED_PER_ALBUM);
        for i in 0..GENERATED_PER_ALBUM {
            let name = format!("Étude No. {}", (book - 1) * GENERATED_PER_ALBUM + i + 1);
            let key = format!("track:{GENERATED_ARTIST}:{album_name}:{name}");
            album_tracks.push(catalog.tracks.len());
            catalog.tracks.push(Track {
                id: base62_id(&key),
                name,
                artist,
                album,
                track_number: i as u32 + 1,
                duration_ms: stable_number(&key, 90_000, 240_000),
                popularity: stable_number(&key, 5, 40) as u32,
            });
        }
        catalog.albums.push(Album {
            id: base62_id(&format!("album:{GENERATED_ARTIST}:{album_name}")),
            name: album_name,
            artist,
            year: 2020,
            tracks: album_tracks,
        });
    }
}

/// 22 base62 characters derived from `key`, like a Spotify ID.
pub(crate) fn base62_id(key: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(key.as_bytes());
    digest
        .iter()
        .take(22)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// A number in `lo..lo+span` derived from `key`, for stable durations and counts.
fn stable_number(key: &str, lo: u64, span: u64) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[24..32]);
    lo + u64::from_le_bytes(bytes) % span
}

pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(build)
}

fn build() -> Catalog {
    let mut artists = Vec::new();
    let mut albums = Vec::new();
    let mut tracks = Vec::new();
    for (artist_name, artist_albums) in DATA {
        let artist = artists.len();
        let key = format!("artist:{artist_name}");
        artists.push(Artist {
            id: base62_id(&key),
            name: artist_name,
            popularity: stable_number(&key, 60, 35) as u32,
            followers: stable_number(&key, 500_000, 20_000_000),
        });
        for data in artist_albums.iter() {
            let album = albums.len();
            let names: Vec<String> = match &data.tracks {
                Tracks::Fixed(names) => names.iter().map(|n| n.to_string()).collect(),
                Tracks::Variants {
                    base,
                    count,
                    suffix,
                } => base
                    .iter()
                    .take(*count)
                    .map(|n| format!("{n}{suffix}"))
                    .collect(),
            };
            let mut album_tracks = Vec::new();
            for (i, name) in names.into_iter().enumerate() {
                let key = format!("track:{artist_name}:{}:{name}", data.name);
                album_tracks.push(tracks.len());
                tracks.push(Track {
                    id: base62_id(&key),
                    name,
                    artist,
                    album,
                    track_number: i as u32 + 1,
                    duration_ms: stable_number(&key, 150_000, 150_000),
                    popularity: stable_number(&key, 35, 60) as u32,
                });
            }
            albums.push(Album {
                id: base62_id(&format!("album:{artist_name}:{}", data.name)),
                name: data.name.to_string(),
                artist,
                year: data.year,
                tracks: album_tracks,
            });
        }
    }
    let mut catalog = Catalog {
        artists,
        albums,
        tracks,
        playlists: Vec::new(),
    };
    for &(owner, name, description, followers, items) in PLAYLISTS {
        let tracks = items
            .iter()
            .filter_map(|(artist, title)| catalog.find_track(artist, title))
            .collect();
        let playlist = playlist((owner, name, description, followers), tracks);
        catalog.playlists.push(playlist);
    }
    let count = catalog.tracks.len();
    let tracks = (0..LARGE_PLAYLIST_LEN).map(|i| i % count).collect();
    catalog.playlists.push(playlist(LARGE_PLAYLIST, tracks));
    add_generated(&mut catalog);
    catalog
}

/// A seeded playlist from (owner, name, description, followers); its id comes from
/// owner and name.
fn playlist(
    (owner, name, description, followers): (&'static str, &'static str, &'static str, u64),
    tracks: Vec<usize>,
) -> Playlist {
    Playlist {
        id: base62_id(&format!("playlist:{owner}:{name}")),
        name,
        description,
        owner,
        public: true,
        followers,
        tracks,
    }
}

impl Catalog {
    /// Index of the first track named `title` by `artist`.
    pub(crate) fn find_track(&self, artist: &str, title: &str) -> Option<usize> {
        self.tracks
            .iter()
            .position(|t| t.name == title && self.artists[t.artist].name == artist)
    }

    pub(crate) fn track_by_id(&self, id: &str) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }

    pub(crate) fn artist_by_id(&self, id: &str) -> Option<&Artist> {
        self.artists.iter().find(|a| a.id == id)
    }

    pub(crate) fn album_by_id(&self, id: &str) -> Option<&Album> {
        self.albums.iter().find(|a| a.id == id)
    }

    pub(crate) fn playlist_by_id(&self, id: &str) -> Option<&Playlist> {
        self.playlists.iter().find(|p| p.id == id)
    }

    /// Tracks matching a search query, in catalogue order. Every whitespace-separated
    /// term must occur (case- and accent-insensitively) in the track or artist name;
    /// `track:`, `artist:` and `album:` prefixes restrict a term to that field.
    pub(crate) fn search_tracks(&self, query: &str) -> Vec<usize> {
        let terms: Vec<(Option<&str>, String)> = query
            .split_whitespace()
            .map(|term| match term.split_once(':') {
                Some((field @ ("track" | "artist" | "album"), value)) => (Some(field), fold(value)),
                _ => (None, fold(term)),
            })
            .filter(|(_, value)| !value.is_empty())
            .collect();
        if terms.is_empty() {
            return Vec::new();
        }
        self.tracks
            .iter()
            .enumerate()
            .filter(|(_, track)| {
                let name = fold(&track.name);
                let artist = fold(self.artists[track.artist].name);
                let album = fold(&self.albums[track.album].name);
                terms.iter().all(|(field, value)| match field {
                    Some("track") => name.contains(value.as_str()),
                    Some("artist") => artist.contains(value.as_str()),
                    Some("album") => album.contains(value.as_str()),
                    _ => name.contains(value.as_str()) || artist.contains(value.as_str()),
                })
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// Lowercases and strips common Latin accents, so "beyonce" finds "Beyoncé".
fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ä' | 'å' | 'ã' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ñ' => 'n',
            'ç' => 'c',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_base62() {
        let id = base62_id("track:ABBA:ABBA Gold: Greatest Hits:Dancing Queen");
        assert_eq!(id.len(), 22);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(
            id,
            base62_id("track:ABBA:ABBA Gold: Greatest Hits:Dancing Queen")
        );
    }

    #[test]
    fn ids_are_unique() {
        let c = catalog();
        let mut ids: Vec<&str> = c.tracks.iter().map(|t| t.id.as_str()).collect();
        ids.extend(c.artists.iter().map(|a| a.id.as_str()));
        ids.extend(c.albums.iter().map(|a| a.id.as_str()));
        ids.extend(c.playlists.iter().map(|p| p.id.as_str()));
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn abba_has_fifty_tracks_and_playlists_resolve() {
        let c = catalog();
        assert_eq!(c.search_tracks("abba").len(), 50);
        assert_eq!(c.search_tracks("ABBA dancing").len(), 3);
        assert_eq!(c.search_tracks("beyonce halo").len(), 1);
        assert_eq!(c.search_tracks("artist:queen").len(), 15);
        for (playlist, data) in c.playlists.iter().zip(PLAYLISTS) {
            assert_eq!(playlist.tracks.len(), data.4.len(), "{}", playlist.name);
        }
        let large = c.playlist_by_id(LARGE_PLAYLIST_ID).expect("large playlist");
        assert_eq!(large.owner, "alice");
        assert_eq!(large.tracks.len(), LARGE_PLAYLIST_LEN);
        for user in &USERS {
            if let Some((artist, title)) = user.now_playing {
                assert!(c.find_track(artist, title).is_some());
            }
        }
    }

    #[test]
    fn the_generated_part_has_a_thousand_tracks_and_twenty_listeners() {
        let ids = generated_track_ids();
        assert_eq!(ids.len(), GENERATED_TRACKS);
        let c = catalog();
        for id in &ids {
            assert_eq!(id.len(), 22);
            assert!(c.track_by_id(id).is_some());
        }
        // The hand-written catalogue's searches find what they found before.
        assert_eq!(c.search_tracks("etude").len(), GENERATED_TRACKS);
        assert!(c
            .search_tracks("a")
            .iter()
            .all(|&i| { c.artists[c.tracks[i].artist].name != GENERATED_ARTIST }));
        let large = c.playlist_by_id(LARGE_PLAYLIST_ID).expect("large playlist");
        assert!(large
            .tracks
            .iter()
            .all(|&i| c.artists[c.tracks[i].artist].name != GENERATED_ARTIST));
        for i in 1..=LISTENERS {
            let u = user(&format!("listener{i:02}")).expect("listener");
            assert_eq!(u.account_id.len(), 22);
        }
        assert!(user("listener00").is_none() && user("listener21").is_none());
    }
}
