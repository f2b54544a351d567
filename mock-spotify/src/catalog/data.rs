//! The catalogue's data tables: users, artists with their albums and track titles,
//! and the seeded playlists. `catalog::build` turns them into the `Catalog`; keeping
//! them apart from that code leaves each file short enough to read.

use super::model::User;

/// alice and bob are registered in the mock app's dashboard by default; carol is not (a
/// development-mode app's unregistered user, see `state::Store::registered`).
pub(crate) static USERS: [User; 3] = [
    User {
        id: "alice",
        account_id: "acc7Qm2xWv9LpR4tZk8sNd",
        display_name: "Alice Andersson",
        email: "alice@example.com",
        country: "SE",
        product: "premium",
        followers: 42,
        now_playing: Some(("ABBA", "Dancing Queen")),
    },
    User {
        id: "bob",
        account_id: "acc3Hf6bYc1JgT5wXe0uMa",
        display_name: "Bob Baker",
        email: "bob@example.com",
        country: "US",
        product: "free",
        followers: 7,
        now_playing: None,
    },
    User {
        id: "carol",
        account_id: "acc9Dk4nRq7VsB2yGh6pLo",
        display_name: "Carol Chen",
        email: "carol@example.com",
        country: "DE",
        product: "premium",
        followers: 3,
        now_playing: None,
    },
];

/// Users registered in a development-mode app's dashboard when the mock starts.
pub const DEFAULT_REGISTERED: [&str; 2] = ["alice", "bob"];

/// Markets every track is available in (arrays are kept present for clients that
/// expect them).
pub(crate) const MARKETS: [&str; 6] = ["DE", "FR", "GB", "SE", "US", "JP"];

pub(super) enum Tracks {
    Fixed(&'static [&'static str]),
    /// The first `count` titles of `base`, each with `suffix` appended.
    Variants {
        base: &'static [&'static str],
        count: usize,
        suffix: &'static str,
    },
}

pub(super) struct AlbumData {
    pub name: &'static str,
    pub year: u16,
    pub tracks: Tracks,
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
pub(super) const DATA: &[(&str, &[AlbumData])] = &[
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
pub(super) type PlaylistData = (
    &'static str,
    &'static str,
    &'static str,
    u64,
    &'static [(&'static str, &'static str)],
);

pub(super) const PLAYLISTS: &[PlaylistData] = &[
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
pub(super) const LARGE_PLAYLIST: (&str, &str, &str, u64) = (
    "alice",
    "Everything, Again and Again",
    "The whole catalogue on repeat",
    2,
);
pub(super) const LARGE_PLAYLIST_LEN: usize = 1000;

/// Id of alice's 1,000-track playlist (the catalogue on repeat), for paging tests:
/// `/v1/playlists/{LARGE_PLAYLIST_ID}/tracks?limit=100` is well over 100 KB.
pub const LARGE_PLAYLIST_ID: &str = "CtBPDp84wxaK1K17rQDFw2";
