//! What a token refresh (`tokens::user`) needs of a session's record, and no more: the stored
//! record adopted when another replica wrote a newer one, a refreshed record written back, and
//! the session ended when Spotify refuses its refresh token. The refresh itself (the token
//! endpoint, one refresh at a time, the cross-replica lock) is `tokens::user`'s: this room does
//! not know the token endpoint.
//!
//! A refreshed record the store does not take (it is down) is the only copy of a rotated
//! refresh token: it is kept here and written again every second until the store takes it
//! (`save_unsaved`, from the server's lifecycle task); `/readyz` fails meanwhile.

use std::sync::Arc;

use super::record::{LiveSession, SessionRecord};
use super::registry::{SessionError, Sessions};
use super::streams::CloseReason;
use crate::secret::SessionKey;

/// The records of a refresh.
impl Sessions {
    /// Brings `session` up to the record the store holds when that one is newer (another
    /// replica refreshed: the re-read oauth2-proxy and Nango both had to add after races
    /// logged users out). [`SessionError::Ended`] when the store no longer holds it (ended
    /// elsewhere: logout, revoked); its cached copy is dropped then.
    pub async fn adopt_stored(&self, session: &LiveSession) -> Result<(), SessionError> {
        let Some(stored) = self.load_record(&session.key).await? else {
            self.cache.remove(&session.key);
            return Err(SessionError::Ended);
        };
        session.update(|local| {
            if stored.updated_at_ms > local.updated_at_ms {
                *local = stored;
            }
        });
        Ok(())
    }

    /// Writes `record`, just refreshed, for `session`; true when the store took it. Spotify
    /// may have rotated the refresh token: if the store does not take the new record now, it
    /// must not be lost, so it is kept and written again until it lands.
    pub async fn save_refreshed(&self, session: &Arc<LiveSession>, record: &SessionRecord) -> bool {
        if self.persist(&session.key, record).await.is_err() {
            self.keep_unsaved(session);
            return false;
        }
        true
    }

    /// Ends `session` because Spotify refused its refresh token (`invalid_grant`): as
    /// [`Self::end`] does, and the user's shared answers go too, on every replica (Spotify's
    /// Developer Policy).
    pub async fn end_refused(&self, session: &LiveSession) {
        // Best effort: the cache entry is gone either way.
        let _ = self.end(&session.key, CloseReason::InvalidGrant).await;
        self.purge_user_answers(&session.user_id()).await;
    }
}

/// Refreshed records the store did not take.
impl Sessions {
    /// Keeps a refreshed session that the store refused, to be written again.
    fn keep_unsaved(&self, session: &Arc<LiveSession>) {
        let (n, added) = {
            let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
            let added = unsaved
                .insert(session.key.clone(), Arc::clone(session))
                .is_none();
            (unsaved.len(), added)
        };
        if added {
            self.metrics
                .unsaved_sessions
                .with_label_values(&[self.events.app()])
                .inc();
        }
        tracing::error!(
            unsaved = n,
            "a refreshed session could not be written to the session store; it is kept in \
             memory and written again every second, and /readyz fails until it is saved. Check \
             the store (a restart now would lose the session's new refresh token)"
        );
    }

    /// A refreshed session that is waiting for the store, if `key` is one.
    pub(super) fn unsaved(&self, key: &SessionKey) -> Option<Arc<LiveSession>> {
        let unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        unsaved.get(key).cloned()
    }

    pub(super) fn forget_unsaved(&self, key: &SessionKey) {
        let removed = {
            let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
            unsaved.remove(key).is_some()
        };
        if removed {
            self.metrics
                .unsaved_sessions
                .with_label_values(&[self.events.app()])
                .dec();
        }
    }

    /// Whether the refreshed record of the session `key` waits for the store.
    pub fn is_unsaved(&self, key: &SessionKey) -> bool {
        self.unsaved(key).is_some()
    }

    /// How many refreshed sessions wait for the store (`/readyz` fails while any do).
    pub fn unsaved_count(&self) -> usize {
        self.unsaved.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Writes every waiting refreshed session again; those the store takes stop waiting.
    pub async fn save_unsaved(&self) {
        let waiting: Vec<Arc<LiveSession>> = {
            let unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
            unsaved.values().cloned().collect()
        };
        for session in waiting {
            // Ended meanwhile (here, or announced by another replica): writing it again would
            // bring it back.
            if session.is_ended() || self.has_ended(&session.key) {
                self.forget_unsaved(&session.key);
                continue;
            }
            let record = session.record();
            if self.persist(&session.key, &record).await.is_ok() {
                // Unless it changed again meanwhile (then the newer record waits).
                let current = session.with_record(|r| r.updated_at_ms);
                if current == record.updated_at_ms {
                    self.forget_unsaved(&session.key);
                    tracing::info!("a refreshed session waiting for the store is saved now");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::registry::tests::{record, sessions};
    use super::*;

    /// A refresh adopts a newer stored record (another replica refreshed), never an older one,
    /// and finds the session ended once the store no longer holds it.
    #[tokio::test]
    async fn a_refresh_adopts_only_a_newer_stored_record_and_sees_an_end() {
        let s = sessions();
        let key = SessionKey::new("key-alice");
        s.persist(&key, &record("alice")).await.expect("put");
        let live = s.by_key(&key).await.expect("store").expect("live");
        let mut newer = live.record();
        newer.access_token = crate::secret::AccessToken::new("from-another-replica");
        newer.updated_at_ms += 1;
        s.persist(&key, &newer).await.expect("put");
        s.adopt_stored(&live).await.expect("held");
        assert_eq!(
            live.with_record(|r| r.access_token.expose().to_string()),
            "from-another-replica"
        );

        let mut older = live.record();
        older.access_token = crate::secret::AccessToken::new("stale");
        older.updated_at_ms -= 2;
        s.persist(&key, &older).await.expect("put");
        s.adopt_stored(&live).await.expect("held");
        assert_eq!(
            live.with_record(|r| r.access_token.expose().to_string()),
            "from-another-replica"
        );

        s.end_refused(&live).await;
        assert!(matches!(
            s.adopt_stored(&live).await,
            Err(SessionError::Ended)
        ));
        assert!(s.by_key(&key).await.expect("store").is_none());
    }
}
