//! The audit lines in a gateway's log (`server.log` target `audit`): each a whole line that is
//! one JSON object with an `evt_` id.

use std::time::Duration;

use serde_json::Value;

use super::Gateway;

/// How long an audit line may take to appear.
const AUDIT_WAIT: Duration = Duration::from_secs(15);

/// The audit lines in the gateway's log: each a whole line that is one JSON object with an
/// `evt_` id.
pub fn audit_lines(gw: &Gateway) -> Vec<Value> {
    gw.log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["id"].as_str().is_some_and(|id| id.starts_with("evt_")))
        .collect()
}

pub fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

/// Waits until the log has an audit line of `kind`, and returns the lines of that kind.
pub async fn wait_for_event(gw: &Gateway, kind: &str) -> Vec<Value> {
    gw.wait_until(
        AUDIT_WAIT,
        format!("an audit line of type {kind}"),
        || async { !of_type(&audit_lines(gw), kind).is_empty() },
    )
    .await;
    of_type(&audit_lines(gw), kind)
        .into_iter()
        .cloned()
        .collect()
}
