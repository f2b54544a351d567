//! One store, several apps: each app sees the store through its own [`Scoped`] view, whose
//! keys and user ids carry the app's prefix, `~NAME/`. The `default` app (a single-app
//! config) has no prefix, so a store written before `[[apps]]` is read as it was.
//!
//! `~` sorts after every character of a Spotify user id, so in the user index (listed in
//! byte order) the prefixed apps' users follow the default app's, each app's together:
//! a page of one app is a run of the index. What other replicas publish (invalidations,
//! cool-downs) arrives once for the process; [`Scopes::new`] hands each view its share: a
//! session's invalidation and a cool-down to the app they name, the rest to every app.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::api::*;

/// What starts a prefixed app's key or user id.
const MARK: char = '~';

/// The views of one store, by app, in the config's order.
pub struct Scopes {
    pub views: Vec<Arc<dyn Store>>,
}

impl Scopes {
    /// A view per app name (`None`: the default app, unprefixed). The store's invalidations
    /// and cool-downs are taken here, once, and passed on: a session key to the app whose
    /// prefix it carries, everything else to every app.
    pub fn new(store: Arc<dyn Store>, apps: &[Option<&str>]) -> Scopes {
        // A store that shares nothing (memory, file) has no receivers to hand out.
        let invalidations = store.invalidations();
        let cool_downs = store.cool_downs();
        let mut invalidation_txs = Vec::new();
        let mut cool_down_txs = Vec::new();
        let mut views: Vec<Arc<dyn Store>> = Vec::new();
        for app in apps {
            let prefix = app.map(|a| format!("{MARK}{a}/")).unwrap_or_default();
            let invalidations_rx = invalidations.as_ref().map(|_| {
                let (tx, rx) = unbounded_channel();
                invalidation_txs.push((prefix.clone(), tx));
                rx
            });
            let cool_downs_rx = cool_downs.as_ref().map(|_| {
                let (tx, rx) = unbounded_channel();
                cool_down_txs.push((app.map(str::to_string), tx));
                rx
            });
            views.push(Arc::new(Scoped {
                inner: Arc::clone(&store),
                app: app.map(str::to_string),
                prefix,
                invalidations: Mutex::new(invalidations_rx),
                cool_downs: Mutex::new(cool_downs_rx),
            }));
        }
        if invalidations.is_some() || cool_downs.is_some() {
            match crate::runtime::io_home() {
                Ok(home) => {
                    if let Some(rx) = invalidations {
                        home.spawn(route_invalidations(rx, invalidation_txs));
                    }
                    if let Some(rx) = cool_downs {
                        home.spawn(route_cool_downs(rx, cool_down_txs));
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot follow other replicas' changes"),
            }
        }
        Scopes { views }
    }
}

async fn route_invalidations(
    mut rx: UnboundedReceiver<Invalidation>,
    apps: Vec<(String, UnboundedSender<Invalidation>)>,
) {
    while let Some(change) = rx.recv().await {
        match change {
            Invalidation::Key(key) => {
                let owner = apps.iter().find(|(prefix, _)| {
                    if prefix.is_empty() {
                        !key.starts_with(MARK)
                    } else {
                        key.starts_with(prefix.as_str())
                    }
                });
                if let Some((prefix, tx)) = owner {
                    let _ = tx.send(Invalidation::Key(key[prefix.len()..].to_string()));
                }
            }
            other => {
                for (_, tx) in &apps {
                    let _ = tx.send(other.clone());
                }
            }
        }
    }
}

/// A cool-down to the app it names (its account's apps then hold through the account's
/// hold, `quota::AccountHold`); one naming an app this process does not serve, to none.
async fn route_cool_downs(
    mut rx: UnboundedReceiver<CoolDownNotice>,
    apps: Vec<(Option<String>, UnboundedSender<CoolDownNotice>)>,
) {
    while let Some(notice) = rx.recv().await {
        if let Some((_, tx)) = apps.iter().find(|(app, _)| *app == notice.app) {
            let _ = tx.send(notice);
        }
    }
}

/// One app's view of the store.
struct Scoped {
    inner: Arc<dyn Store>,
    /// The app's name; `None` for the default app.
    app: Option<String>,
    /// Empty for the default app.
    prefix: String,
    invalidations: Mutex<Option<UnboundedReceiver<Invalidation>>>,
    cool_downs: Mutex<Option<UnboundedReceiver<CoolDownNotice>>>,
}

impl Scoped {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// An id of the index as this app names it, if it is this app's.
    fn own<'a>(&self, id: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            (!id.starts_with(MARK)).then_some(id)
        } else {
            id.strip_prefix(self.prefix.as_str())
        }
    }
}

#[async_trait]
impl Store for Scoped {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn get(&self, ns: Namespace, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get(ns, &self.key(key)).await
    }
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreResult<()> {
        self.inner.put(ns, &self.key(key), value, ttl).await
    }
    async fn delete(&self, ns: Namespace, key: &str) -> StoreResult<bool> {
        self.inner.delete(ns, &self.key(key)).await
    }
    async fn take(&self, ns: Namespace, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.take(ns, &self.key(key)).await
    }
    /// The whole store's: expiry knows no apps.
    async fn purge_expired(&self) -> StoreResult<usize> {
        self.inner.purge_expired().await
    }
    /// The whole store's (every app's) values.
    async fn count(&self, ns: Namespace) -> StoreResult<usize> {
        self.inner.count(ns).await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn add_user_session(&self, user_id: &str, key: &str, ttl: Duration) -> StoreResult<()> {
        self.inner
            .add_user_session(&self.key(user_id), &self.key(key), ttl)
            .await
    }
    async fn user_sessions(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let keys = self.inner.user_sessions(&self.key(user_id)).await?;
        Ok(keys
            .iter()
            .filter_map(|k| self.own(k).map(str::to_string))
            .collect())
    }
    async fn remove_user_session(&self, user_id: &str, key: &str) -> StoreResult<bool> {
        self.inner
            .remove_user_session(&self.key(user_id), &self.key(key))
            .await
    }
    async fn users_page(&self, after: Option<&str>, limit: usize) -> StoreResult<UsersPage> {
        // The default app's users come first; the first prefixed id ends its run.
        let start = match after {
            Some(a) => Some(self.key(a)),
            None if self.prefix.is_empty() => None,
            None => Some(self.prefix.clone()),
        };
        let page = self.inner.users_page(start.as_deref(), limit).await?;
        let users: Vec<String> = page
            .users
            .iter()
            .map_while(|id| self.own(id).map(str::to_string))
            .collect();
        let ended_early = users.len() < page.users.len();
        let next = match page.next {
            Some(_) if !ended_early => users.last().cloned(),
            _ => None,
        };
        Ok(UsersPage { users, next })
    }
    async fn lock(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool> {
        self.inner.lock(&self.key(name), owner, ttl).await
    }
    async fn unlock(&self, name: &str, owner: &str) -> StoreResult<()> {
        self.inner.unlock(&self.key(name), owner).await
    }
    async fn publish_invalidation(&self, key: &str) -> StoreResult<()> {
        self.inner.publish_invalidation(&self.key(key)).await
    }
    async fn publish_purge(&self, notice: &PurgeNotice) -> StoreResult<()> {
        self.inner.publish_purge(notice).await
    }
    fn invalidations(&self) -> Option<UnboundedReceiver<Invalidation>> {
        self.invalidations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
    async fn publish_cool_down(&self, notice: CoolDownNotice) -> StoreResult<()> {
        let notice = CoolDownNotice {
            app: self.app.clone(),
            ..notice
        };
        self.inner.publish_cool_down(notice).await
    }
    fn cool_downs(&self) -> Option<UnboundedReceiver<CoolDownNotice>> {
        self.cool_downs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
    async fn take_budget(
        &self,
        account: Option<&str>,
        limit: u32,
        app_limit: Option<u32>,
        window: Duration,
    ) -> StoreResult<Option<Option<Duration>>> {
        self.inner
            .take_budget(account, limit, app_limit, window)
            .await
    }
    async fn add_budget_calls(
        &self,
        account: Option<&str>,
        calls: &LocalCalls,
        window: Duration,
    ) -> StoreResult<()> {
        self.inner.add_budget_calls(account, calls, window).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const TTL: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn each_app_sees_its_own_keys_users_and_pages() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let views = Scopes::new(Arc::clone(&store), &[None, Some("radio")]).views;
        let (default, radio) = (&views[0], &views[1]);
        default
            .put(Namespace::Session, "k", b"d".to_vec(), TTL)
            .await
            .unwrap();
        radio
            .put(Namespace::Session, "k", b"r".to_vec(), TTL)
            .await
            .unwrap();
        assert_eq!(
            default.get(Namespace::Session, "k").await.unwrap(),
            Some(b"d".to_vec())
        );
        assert_eq!(
            radio.get(Namespace::Session, "k").await.unwrap(),
            Some(b"r".to_vec())
        );
        // The default app's key is the store's own: a store written before [[apps]] reads.
        assert_eq!(
            store.get(Namespace::Session, "k").await.unwrap(),
            Some(b"d".to_vec())
        );
        for user in ["alice", "bob", "carol"] {
            default.add_user_session(user, "k", TTL).await.unwrap();
        }
        for user in ["alice", "zed"] {
            radio.add_user_session(user, "k", TTL).await.unwrap();
        }
        assert_eq!(radio.user_sessions("alice").await.unwrap(), ["k"]);
        // Pages of two: each app's users, in order, and only its own.
        let page = default.users_page(None, 2).await.unwrap();
        assert_eq!(
            (page.users.as_slice(), page.next.as_deref()),
            (&["alice".to_string(), "bob".into()][..], Some("bob"))
        );
        let page = default.users_page(Some("bob"), 2).await.unwrap();
        assert_eq!(
            (page.users.as_slice(), page.next),
            (&["carol".to_string()][..], None)
        );
        let page = radio.users_page(None, 5).await.unwrap();
        assert_eq!(
            (page.users.as_slice(), page.next),
            (&["alice".to_string(), "zed".into()][..], None)
        );
        // A revocation in radio leaves the default app's alice.
        radio.remove_user_session("alice", "k").await.unwrap();
        assert!(radio.user_sessions("alice").await.unwrap().is_empty());
        assert_eq!(default.user_sessions("alice").await.unwrap(), ["k"]);
    }
}
