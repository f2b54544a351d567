"""An internal app using spotipy through spotify-gateway's egress listener.

No client secret and no Spotify token: spotipy's `prefix` points at the gateway, which
injects the user's token. Against `spotify-gateway demo`:

    pip install -r requirements.txt && python app.py
"""
import os

import requests
import spotipy

PUBLIC = os.environ.get("GATEWAY_PUBLIC", "http://127.0.0.1:8080")
EGRESS = os.environ.get("GATEWAY_EGRESS", "http://127.0.0.1:8081")
USER = os.environ.get("SPOTIFY_USER", "alice")


def sign_in(user: str) -> None:
    """Log the user in through the gateway, approving at the demo's mock Spotify."""
    browser = requests.Session()
    login = browser.get(f"{PUBLIC}/auth/login", allow_redirects=False)
    consent = browser.get(
        login.headers["location"] + f"&mock_user={user}&mock_decision=approve",
        allow_redirects=False,
    )
    callback = browser.get(consent.headers["location"], allow_redirects=False)
    if callback.status_code != 302:
        raise SystemExit(f"login failed: {callback.status_code} {callback.text}")
    print(f"signed in as {user}")


def main() -> None:
    sign_in(USER)
    # The demo trusts X-Spotify-User-Id from loopback (egress.trust_user_header). An app behind
    # the public listener would send the X-Gateway-User header it received instead, or pass it
    # as spotipy's `auth`.
    session = requests.Session()
    session.headers["X-Spotify-User-Id"] = USER
    sp = spotipy.Spotify(
        auth="not-a-spotify-token",  # ignored by the gateway; spotipy insists on one
        requests_session=session,
    )
    sp.prefix = f"{EGRESS}/v1/"  # default: https://api.spotify.com/v1/

    results = sp.search(q="abba", type="track", limit=10)
    page = 1
    while results:
        tracks = results["tracks"]
        print(f"search page {page}: {len(tracks['items'])} tracks, first: {tracks['items'][0]['name']}")
        # spotipy follows Spotify's absolute `next` link, which the gateway rewrote to itself.
        results = sp.next(tracks)
        page += 1

    me = sp.current_user()
    # Spotify asks apps to key users by `account_id` (2026) rather than `id`.
    print(f"profile: {me['display_name']} ({me['id']}, account {me.get('account_id')})")
    playlists = sp.current_user_playlists()["items"]
    for playlist in playlists:
        print(f"playlist: {playlist['name']} ({playlist['items']['total']} items)")
    # Since February 2026 a playlist's entries are at /playlists/{id}/items, `item` in each; the
    # old /tracks path answers 403 to development-mode apps. spotipy 2.25's playlist_items()
    # still asks /tracks, so this goes through its generic call.
    first = playlists[0]
    entries = sp._get(f"playlists/{first['id']}/items", limit=5)
    names = [e["item"]["name"] for e in entries["items"]]
    print(f"items of {first['name']}: {entries['total']}, first: {names[0]}")


if __name__ == "__main__":
    main()
