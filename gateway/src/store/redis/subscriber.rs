//! The one subscription per store to the invalidation, purge and cool-down channels, kept
//! alive forever: on the server, on the master Sentinel names, or on one cluster node (a
//! classic `PUBLISH` reaches every node of a cluster). Whenever it is (re)made, anything
//! published meanwhile may be lost, so the replica forgets its whole cache (`All`) and reads
//! the running cool-down from its key.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::keys::{COOL_DOWN_CHANNEL, COOL_DOWN_KEY, INVALIDATION_CHANNEL, PURGE_CHANNEL};
use super::link::Link;
use super::OP_TIMEOUT;
use crate::store::api::{CoolDownNotice, Invalidation, PurgeNotice};

/// Wait between attempts to subscribe again.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(250);

/// Keeps one subscription to the invalidation and cool-down channels alive, forever.
pub(super) async fn subscribe_forever(
    link: Arc<Link>,
    tx: mpsc::UnboundedSender<Invalidation>,
    cool_downs: mpsc::UnboundedSender<CoolDownNotice>,
) {
    loop {
        if tx.is_closed() && cool_downs.is_closed() {
            return;
        }
        let pubsub = tokio::time::timeout(OP_TIMEOUT, async {
            let client = link.pubsub_client().await?;
            let pubsub = client.get_async_pubsub().await?;
            Ok::<_, redis::RedisError>((client, pubsub))
        })
        .await;
        match pubsub {
            Ok(Ok((client, mut pubsub))) => {
                let channels = [INVALIDATION_CHANNEL, PURGE_CHANNEL, COOL_DOWN_CHANNEL];
                if pubsub.subscribe(&channels).await.is_ok() {
                    // Anything published while we were not subscribed is lost.
                    let _ = tx.send(Invalidation::All);
                    if let Some(running) = running_cool_down(&link, &client).await {
                        let _ = cool_downs.send(running);
                    }
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        deliver(msg.get_channel_name(), payload, &tx, &cool_downs);
                    }
                    tracing::warn!("lost the Redis invalidation subscription; resubscribing");
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot subscribe to Redis invalidations yet")
            }
            Err(_) => tracing::debug!("no answer from Redis in time to subscribe"),
        }
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}

fn deliver(
    channel: &str,
    payload: String,
    tx: &mpsc::UnboundedSender<Invalidation>,
    cool_downs: &mpsc::UnboundedSender<CoolDownNotice>,
) {
    match channel {
        COOL_DOWN_CHANNEL => match CoolDownNotice::decode(&payload) {
            Some(notice) => {
                let _ = cool_downs.send(notice);
            }
            None => tracing::warn!("unreadable cool-down notice on Redis"),
        },
        PURGE_CHANNEL => match PurgeNotice::decode(&payload) {
            Some(notice) => {
                let _ = tx.send(Invalidation::Answers(notice));
            }
            None => tracing::warn!("unreadable purge notice on Redis"),
        },
        _ => {
            let _ = tx.send(Invalidation::Key(payload));
        }
    }
}

/// The cool-down still running (its key and what is left of it), read once per subscription:
/// on a connection of its own to the node just subscribed to (the shared one may not have
/// noticed yet that Redis came back), or on a cluster through the cluster client (the key's
/// slot may be on another node).
async fn running_cool_down(link: &Link, node: &redis::Client) -> Option<CoolDownNotice> {
    let read = async {
        let mut c = link.conn_for_one_read(node).await?;
        let (reason, left_ms): (Option<String>, i64) = redis::pipe()
            .get(COOL_DOWN_KEY)
            .pttl(COOL_DOWN_KEY)
            .query_async(&mut c)
            .await?;
        Ok::<_, redis::RedisError>(reason.zip((left_ms > 0).then_some(left_ms)))
    };
    match tokio::time::timeout(OP_TIMEOUT, read).await {
        Ok(Ok(Some((reason, left_ms)))) => CoolDownNotice::decode(&format!("{left_ms}:{reason}")),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            link.failed(Some(&e));
            tracing::warn!(error = %e, "cannot read the running cool-down from Redis");
            None
        }
        Err(_) => {
            link.failed(None);
            tracing::warn!("no answer from Redis in time for the running cool-down");
            None
        }
    }
}
