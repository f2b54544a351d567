//! The fixed, deterministic catalogue: artists, albums, tracks, users and playlists.
//!
//! IDs are 22-character base62 strings derived from names with SHA-256, so they are
//! the same on every run and every machine.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

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

pub(crate) static USERS: [User; 2] = [
    User {
        id: "alice",
        display_name: "Alice Andersson",
        email: "alice@example.com",
        country: "SE",
        product: "premium",
        followers: 42,
        now_playing: Some(("ABBA", "Dancing Queen")),
    },
    User {
        id: "bob",
        display_name: "Bob Baker",
        email: "bob@example.com",
        country: "US",
        product: "free",
        followers: 7,
        now_playing: None,
    },
];

pub(crate) fn user(id: &str) -> Option<&'static User> {
    USERS.iter().find(|u| u.id == id)
}

/// Markets every track is available in (arrays are kept present for clients that
/// expect them).
pub(crate) const MARKETS: [&str; 6] = ["DE", "FR", "GB", "SE", "US", "JP"];

enum Tracks {
    Fixed(&'static [&'static str]),
    /// The first `count` titles of `base`, each with `suffix` appended.
    Variants {
        base: &'static [&'static str],
        count: usize,
        suffix: &'static str,
    },
}

struct AlbumData {
    name: &'static str,
    year: u16,
    tracks: Tracks,
}

const ABBA_GOLD: &[&str] = &[
    "Dancing Queen",
    "Knowing Me, Knowing You",
    "Take a Chance on Me",
    "Mamma Mia",
    "Lay All Your Love on Me",
    "Super Trouper",
    "I Have a Dream",
    "The Winner Takes It All",
    "Money, Money, Money",
    "SOS",
    "Chiquitita",
    "Fernando",
    "Voulez-Vous",
    "Gimme! Gimme! Gimme! (A Man After Midnight)",
    "Does Your Mother Know",
    "One of Us",
    "The Name of the Game",
    "Thank You for the Music",
    "Waterloo",
    "Ring Ring",
];

/// ABBA has 50 tracks so that `q=abba` pages into 20 + 20 + 10.
const DATA: &[(&str, &[AlbumData])] = &[
    (
        "ABBA",
        &[
            AlbumData {
                name: "ABBA Gold: Greatest Hits",
                year: 1992,
                tracks: Tracks::Fixed(ABBA_GOLD),
            },
            AlbumData {
                name: "Live at Wembley Arena",
                year: 2014,
                tracks: Tracks::Variants {
                    base: ABBA_GOLD,
                    count: 15,
                    suffix: " (Live 1979)",
                },
            },
            AlbumData {
                name: "The Definitive Collection",
                year: 2001,
                tracks: Tracks::Variants {
                    base: ABBA_GOLD,
                    count: 15,
                    suffix: " - Remastered 2001",
                },
            },
        ],
    ),
    (
        "Queen",
        &[
            AlbumData {
                name: "A Night at the Opera",
                year: 1975,
                tracks: Tracks::Fixed(&[
                    "Death on Two Legs",
                    "You're My Best Friend",
                    "'39",
                    "Love of My Life",
                    "Bohemian Rhapsody",
                ]),
            },
            AlbumData {
                name: "Greatest Hits",
                year: 1981,
                tracks: Tracks::Fixed(&[
                    "Another One Bites the Dust",
                    "Killer Queen",
                    "Fat Bottomed Girls",
                    "Bicycle Race",
                    "Somebody to Love",
                    "Don't Stop Me Now",
                    "We Will Rock You",
                    "We Are the Champions",
                    "Crazy Little Thing Called Love",
                    "Under Pressure",
                ]),
            },
        ],
    ),
    (
        "Daft Punk",
        &[
            AlbumData {
                name: "Homework",
                year: 1997,
                tracks: Tracks::Fixed(&["Revolution 909", "Da Funk", "Around the World"]),
            },
            AlbumData {
                name: "Discovery",
                year: 2001,
                tracks: Tracks::Fixed(&[
                    "One More Time",
                    "Aerodynamic",
                    "Digital Love",
                    "Harder, Better, Faster, Stronger",
                    "Something About Us",
                ]),
            },
            AlbumData {
                name: "Random Access Memories",
                year: 2013,
                tracks: Tracks::Fixed(&[
                    "Give Life Back to Music",
                    "Instant Crush",
                    "Lose Yourself to Dance",
                    "Get Lucky",
                ]),
            },
        ],
    ),
    (
        "Nina Simone",
        &[
            AlbumData {
                name: "Little Girl Blue",
                year: 1959,
                tracks: Tracks::Fixed(&[
                    "Mood Indigo",
                    "My Baby Just Cares for Me",
                    "Little Girl Blue",
                ]),
            },
            AlbumData {
                name: "I Put a Spell on You",
                year: 1965,
                tracks: Tracks::Fixed(&[
                    "I Put a Spell on You",
                    "Ne me quitte pas",
                    "Feeling Good",
                ]),
            },
            AlbumData {
                name: "Pastel Blues",
                year: 1965,
                tracks: Tracks::Fixed(&["Be My Husband", "Trouble in Mind", "Sinnerman"]),
            },
        ],
    ),
    (
        "Radiohead",
        &[
            AlbumData {
                name: "The Bends",
                year: 1995,
                tracks: Tracks::Fixed(&[
                    "High and Dry",
                    "Fake Plastic Trees",
                    "Street Spirit (Fade Out)",
                ]),
            },
            AlbumData {
                name: "OK Computer",
                year: 1997,
                tracks: Tracks::Fixed(&[
                    "Airbag",
                    "Paranoid Android",
                    "Let Down",
                    "Karma Police",
                    "No Surprises",
                ]),
            },
            AlbumData {
                name: "Kid A",
                year: 2000,
                tracks: Tracks::Fixed(&["Everything in Its Right Place", "Idioteque"]),
            },
            AlbumData {
                name: "In Rainbows",
                year: 2007,
                tracks: Tracks::Fixed(&["Nude", "Weird Fishes/Arpeggi", "Reckoner"]),
            },
        ],
    ),
    (
        "Beyoncé",
        &[
            AlbumData {
                name: "Dangerously in Love",
                year: 2003,
                tracks: Tracks::Fixed(&["Crazy in Love", "Naughty Girl"]),
            },
            AlbumData {
                name: "I Am... Sasha Fierce",
                year: 2008,
                tracks: Tracks::Fixed(&[
                    "If I Were a Boy",
                    "Halo",
                    "Single Ladies (Put a Ring on It)",
                ]),
            },
            AlbumData {
                name: "4",
                year: 2011,
                tracks: Tracks::Fixed(&["Love On Top", "Run the World (Girls)"]),
            },
            AlbumData {
                name: "Lemonade",
                year: 2016,
                tracks: Tracks::Fixed(&["Hold Up", "Formation"]),
            },
            AlbumData {
                name: "Renaissance",
                year: 2022,
                tracks: Tracks::Fixed(&["BREAK MY SOUL", "CUFF IT"]),
            },
        ],
    ),
];

/// (owner, name, description, followers, [(artist, track)])
type PlaylistData = (
    &'static str,
    &'static str,
    &'static str,
    u64,
    &'static [(&'static str, &'static str)],
);

const PLAYLISTS: &[PlaylistData] = &[
    (
        "alice",
        "Dancing in the Kitchen",
        "ABBA all day long",
        12,
        &[
            ("ABBA", "Dancing Queen"),
            ("ABBA", "Mamma Mia"),
            ("ABBA", "Super Trouper"),
            ("ABBA", "Take a Chance on Me"),
            ("ABBA", "Gimme! Gimme! Gimme! (A Man After Midnight)"),
            ("ABBA", "Voulez-Vous"),
            ("ABBA", "Waterloo"),
            ("ABBA", "Lay All Your Love on Me"),
        ],
    ),
    (
        "alice",
        "Late Night Soul",
        "Nina, slowly",
        3,
        &[
            ("Nina Simone", "Feeling Good"),
            ("Nina Simone", "Sinnerman"),
            ("Nina Simone", "My Baby Just Cares for Me"),
            ("Nina Simone", "I Put a Spell on You"),
            ("Nina Simone", "Mood Indigo"),
        ],
    ),
    (
        "alice",
        "Road Trip",
        "Windows down",
        5,
        &[
            ("Queen", "Don't Stop Me Now"),
            ("Daft Punk", "One More Time"),
            ("Queen", "Bohemian Rhapsody"),
            ("Daft Punk", "Get Lucky"),
            ("Beyoncé", "Crazy in Love"),
            ("Queen", "Fat Bottomed Girls"),
            ("Daft Punk", "Around the World"),
            ("Beyoncé", "BREAK MY SOUL"),
            ("ABBA", "Does Your Mother Know"),
            ("Queen", "Under Pressure"),
        ],
    ),
    (
        "bob",
        "Rainy Days",
        "",
        1,
        &[
            ("Radiohead", "No Surprises"),
            ("Radiohead", "Fake Plastic Trees"),
            ("Radiohead", "Reckoner"),
            ("Nina Simone", "Ne me quitte pas"),
        ],
    ),
];

/// The large playlist: alice's, cycling through the whole catalogue in order until it
/// holds `LARGE_PLAYLIST_LEN` tracks, so paging (and streaming a 100-item page of
/// well over 100 KB) can be exercised.
const LARGE_PLAYLIST: (&str, &str, &str, u64) = (
    "alice",
    "Everything, Again and Again",
    "The whole catalogue on repeat",
    2,
);
pub(crate) const LARGE_PLAYLIST_LEN: usize = 1000;

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
    for (owner, name, description, followers, items) in PLAYLISTS {
        let tracks = items
            .iter()
            .filter_map(|(artist, title)| catalog.find_track(artist, title))
            .collect();
        catalog.playlists.push(Playlist {
            id: base62_id(&format!("playlist:{owner}:{name}")),
            name,
            description,
            owner,
            public: true,
            followers: *followers,
            tracks,
        });
    }
    let (owner, name, description, followers) = LARGE_PLAYLIST;
    let count = catalog.tracks.len();
    catalog.playlists.push(Playlist {
        id: base62_id(&format!("playlist:{owner}:{name}")),
        name,
        description,
        owner,
        public: true,
        followers,
        tracks: (0..LARGE_PLAYLIST_LEN).map(|i| i % count).collect(),
    });
    catalog
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
        let large = c
            .playlist_by_id(crate::LARGE_PLAYLIST_ID)
            .expect("large playlist");
        assert_eq!(large.owner, "alice");
        assert_eq!(large.tracks.len(), LARGE_PLAYLIST_LEN);
        for user in &USERS {
            if let Some((artist, title)) = user.now_playing {
                assert!(c.find_track(artist, title).is_some());
            }
        }
    }
}
