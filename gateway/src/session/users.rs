//! Users as an operator sees them (the admin API, `admin/api.rs`): a summary of each user's
//! live sessions — never a token, a cookie or a session id — and revoking a user everywhere.
//!
//! Users are found through the store's user → sessions index (`Store::users_page`,
//! `Store::user_sessions`); each session's sealed record is opened here, so the summary is
//! what the shared store holds, the same from every replica.

use futures::StreamExt;
use serde::Serialize;

use super::purge::{notice_for, purge_counted, MAX_UNPUBLISHED};
use super::record::SessionRecord;
use super::registry::Sessions;
use super::streams::CloseReason;
use crate::quota::purge;
use crate::secret::SessionKey;
use crate::store::{PurgeNotice, StoreError};

/// Users summarised at once while a page is built: each is a few store reads.
const SUMMARY_CONCURRENCY: usize = 16;

/// One user, as the admin API answers it. Holds nothing that opens a session.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UserSummary {
    pub user_id: String,
    /// From the most recently updated session.
    pub account_id: Option<String>,
    pub display_name: Option<String>,
    /// Live sessions (on every replica: they share the store).
    pub sessions: usize,
    /// The earliest login among the live sessions (RFC 3339).
    pub created_at: Option<String>,
    /// The latest change (a login or a token refresh) of any of them (RFC 3339). The gateway
    /// does not write the store on every request, so this is not the last request.
    pub last_seen: Option<String>,
    /// The scopes granted to the most recently updated session.
    pub scopes: Vec<String>,
    /// The soonest re-consent deadline among the sessions (RFC 3339), when known.
    pub reauth_by: Option<String>,
}

/// A page of users and the cursor of the next one.
#[derive(Debug, Clone, Serialize)]
pub struct UsersListing {
    pub users: Vec<UserSummary>,
    pub next_cursor: Option<String>,
}

fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

impl UserSummary {
    fn of(user_id: &str, records: &[SessionRecord]) -> Option<UserSummary> {
        let latest = records.iter().max_by_key(|r| r.updated_at_ms)?;
        Some(UserSummary {
            user_id: user_id.to_string(),
            account_id: latest.account_id.clone(),
            display_name: latest.display_name.clone(),
            sessions: records.len(),
            created_at: records.iter().map(|r| r.created_at_ms).min().map(rfc3339),
            last_seen: Some(rfc3339(latest.updated_at_ms)),
            scopes: latest.scopes.iter().map(str::to_string).collect(),
            reauth_by: records
                .iter()
                .filter_map(|r| r.reauth_by_ms)
                .min()
                .map(rfc3339),
        })
    }
}

impl Sessions {
    /// The live sessions of `user_id` as stored, with their store keys.
    async fn user_records(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        let keys = self
            .user_session_keys(user_id)
            .await
            .map_err(|e| self.store_error(e))?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // Ended lately (here or announced by another replica): not a session any more.
            if self.has_ended(&key) {
                continue;
            }
            if let Some(record) = self.load_record(&key).await? {
                out.push((key, record));
            }
        }
        Ok(out)
    }

    /// `user_id`'s summary; `None` when the user has no live session.
    pub async fn user_summary(&self, user_id: &str) -> Result<Option<UserSummary>, StoreError> {
        let records: Vec<SessionRecord> = self
            .user_records(user_id)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        Ok(UserSummary::of(user_id, &records))
    }

    /// Up to `limit` users with a live session, after the cursor `after` (a user id), in
    /// user id order. A page may hold fewer than `limit` when sessions ended between the
    /// index read and the record reads; `next_cursor` is what says whether more follow.
    pub async fn users_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<UsersListing, StoreError> {
        let page = self
            .store
            .users_page(after, limit)
            .await
            .map_err(|e| self.store_error(e))?;
        // Owned ids, so the futures borrow nothing from the page (the admin listener's
        // `Send` future needs that).
        let summaries: Vec<Result<Option<UserSummary>, StoreError>> =
            futures::stream::iter(page.users)
                .map(|user| async move { self.user_summary(&user).await })
                .buffered(SUMMARY_CONCURRENCY)
                .collect()
                .await;
        let mut users = Vec::with_capacity(summaries.len());
        for summary in summaries {
            users.extend(summary?);
        }
        Ok(UsersListing {
            users,
            next_cursor: page.next,
        })
    }

    /// An operator revokes `user_id`: every session of the user ends on every replica (as by
    /// `disconnect`: remembered as ended, cached copies dropped here and, by the published
    /// invalidation, on the others), and their records and indexes are deleted. Returns how
    /// many live sessions ended.
    pub async fn revoke_user(&self, user_id: &str) -> Result<usize, StoreError> {
        let records = self.user_records(user_id).await?;
        let mut indexes = vec![user_id.to_string()];
        for (_, record) in &records {
            for index in super::record::identity_indexes(record) {
                if !indexes.contains(&index) {
                    indexes.push(index);
                }
            }
        }
        // Every key in the index, stale ones too, so none is left behind.
        let keys = self
            .user_session_keys(user_id)
            .await
            .map_err(|e| self.store_error(e))?;
        self.end_user(user_id, keys, None, indexes, CloseReason::Revoked)
            .await?;
        Ok(records.len())
    }
}

/// A departed user's shared answers (`purge`): forgotten here, and on the other replicas by a
/// notice kept and published again while the store does not take it.
impl Sessions {
    /// Forgets `user_id`'s shared answers here and tells the other replicas to (kept and sent
    /// again while the store does not take the notice). Call it once the user's sessions have
    /// ended, so no call of theirs starts after it.
    pub(crate) async fn purge_user_answers(&self, user_id: &str) {
        let owner = purge::user_owner(user_id);
        purge_counted(
            &self.answers,
            purge::only(owner.clone()),
            &self
                .metrics
                .answers_purged
                .with_label_values(&[self.events.app()]),
        );
        let notice = notice_for(&self.keys(), &owner);
        if let Err(e) = self.store.publish_purge(&notice).await {
            tracing::error!(
                error = %e,
                "could not tell the other replicas to forget a departed user's cached answers; \
                 retrying every second"
            );
            self.keep_unpublished(notice);
        }
    }

    fn keep_unpublished(&self, notice: PurgeNotice) {
        let mut waiting = self
            .unpublished_purges
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if waiting.len() >= MAX_UNPUBLISHED {
            waiting.remove(0);
            tracing::error!(
                "too many purge notices wait for the store: the oldest is dropped (replicas \
                 forget every user's answers when their subscription comes back)"
            );
        }
        waiting.push(notice);
    }

    /// Publishes the purge notices the store did not take, oldest first; stops at the first
    /// it still refuses.
    pub async fn publish_unpublished_purges(&self) {
        loop {
            let next = {
                let waiting = self
                    .unpublished_purges
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                match waiting.first() {
                    Some(n) => n.clone(),
                    None => return,
                }
            };
            if self.store.publish_purge(&next).await.is_err() {
                return;
            }
            let left = {
                let mut waiting = self
                    .unpublished_purges
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if waiting.first() == Some(&next) {
                    waiting.remove(0);
                }
                waiting.len()
            };
            if left == 0 {
                tracing::info!("the purge notices that waited for the store are published");
            }
        }
    }
}
