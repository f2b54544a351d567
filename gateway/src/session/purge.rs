//! A user who leaves — disconnects, is revoked by an operator, or whose session ends by
//! `invalid_grant` — leaves no shared answer behind: the egress cache's answers and the calls
//! in flight for that user (`quota::purge`) are forgotten here at once, and on every other
//! replica through the store, after the invalidations of the user's sessions.
//!
//! The notice names the user as the store names what it indexes: by a keyed hash of the
//! answers' owner line, never by the user id (`store::PurgeNotice`). A notice the store does
//! not take (Redis is down) is kept and published again every second until it does
//! (`publish_unpublished_purges`, from the server's lifecycle task): the disconnect itself has
//! succeeded by then (the user's sessions are gone from the store, which is what it needs), so
//! failing it would leave the user nothing to retry with. A replica whose subscription was
//! down may have missed notices, so it forgets every user's answers when it is back
//! (`Invalidation::All`), as it forgets every cached session.

use std::sync::Arc;

use crate::crypto::Keyring;
use crate::quota::purge::{OwnerMatch, SharedAnswers};
use crate::store::PurgeNotice;

/// The kind of the keyed hash of an owner line (`Keyring::index_key`): its own label, so the
/// hash says nothing about any other store key.
const OWNER_HASH: &str = "answers-owner";
/// Notices kept while the store does not take them; past this the oldest go, with an error
/// log (a replica cut off that long forgets every user's answers when it is back anyway).
pub(super) const MAX_UNPUBLISHED: usize = 10_000;

/// The notice for `owner`: its hash under the current secret and, during a rotation, under the
/// previous one.
pub(super) fn notice_for(keys: &Keyring, owner: &str) -> PurgeNotice {
    let mut owner_hashes = vec![keys.index_key(OWNER_HASH, owner)];
    owner_hashes.extend(keys.previous_index_key(OWNER_HASH, owner));
    PurgeNotice { owner_hashes }
}

/// The owners another replica's notice names: those whose hash, under either of this
/// replica's secrets, is in it.
pub(super) fn owners_named(keys: Arc<Keyring>, notice: PurgeNotice) -> OwnerMatch {
    Arc::new(move |owner: &str| {
        let named = |hash: String| notice.owner_hashes.contains(&hash);
        named(keys.index_key(OWNER_HASH, owner))
            || keys
                .previous_index_key(OWNER_HASH, owner)
                .is_some_and(named)
    })
}

/// Purges what `matches` names from `answers`, counting what it dropped.
pub(super) fn purge_counted(
    answers: &SharedAnswers,
    matches: OwnerMatch,
    counter: &prometheus::IntCounter,
) {
    let dropped = answers.purge(matches);
    counter.inc_by(dropped as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::tests::ring;
    use crate::secret::Secret;

    #[test]
    fn a_notice_names_its_owner_under_either_secret_and_no_one_else() {
        let old = ring("old-secret-0123456789abcdef0123456789");
        let rotated = Keyring::new(
            &Secret::runtime("new-secret-0123456789abcdef0123456789"),
            Some(&Secret::runtime("old-secret-0123456789abcdef0123456789")),
        );
        let notice = notice_for(&rotated, "user:alice");
        assert_eq!(notice.owner_hashes.len(), 2);
        assert!(
            !notice.encode().contains("alice"),
            "the user id never travels"
        );
        // A replica still on the old secret, and one on the new: both match alice only.
        for keys in [Arc::new(old), Arc::new(rotated)] {
            let named = owners_named(keys, notice.clone());
            assert!(named("user:alice"));
            assert!(!named("user:bob") && !named("app"));
        }
    }
}
