//! What `federated-identity-service inspect` prints: the state an operator needs to see.

use serde_json::{Value, json};

use crate::store::{Store, StoreResult};

/// Peppers, local 3PIDs and hashes, pushed hashes per server and pepper, job runs.
pub async fn report(store: &Store) -> StoreResult<Value> {
    let peppers = store.peppers().await?;
    let (active, inactive) = store.local_threepid_counts().await?;
    let local_hashes: serde_json::Map<String, Value> =
        store.local_hash_counts().await?.into_iter().map(|(pepper, count)| (pepper, json!(count))).collect();
    let pushed: Vec<Value> = store
        .push_snapshots()
        .await?
        .into_iter()
        .map(|snapshot| {
            json!({
                "server": snapshot.server,
                "pepper": snapshot.pepper,
                "hashes": snapshot.hash_count,
                "last_push_ms": snapshot.received_at,
            })
        })
        .collect();
    let jobs: Vec<Value> = store
        .job_leases()
        .await?
        .into_iter()
        .map(|lease| {
            json!({
                "job": lease.job,
                "last_started_ms": lease.last_started_at,
                "last_finished_ms": lease.last_finished_at,
                "last_status": lease.last_status,
                "instance": lease.holder,
            })
        })
        .collect();
    let pushes: Vec<Value> = store
        .push_statuses()
        .await?
        .into_iter()
        .map(|status| {
            json!({
                "target": status.target,
                "pepper": status.pepper,
                "hashes_sent": status.hashes_sent,
                "last_success_ms": status.last_success_at,
                "last_error": status.last_error,
                "last_error_ms": status.last_error_at,
            })
        })
        .collect();
    Ok(json!({
        "pushes_to_federated_services": pushes,
        "peppers": { "current": peppers.current, "previous": peppers.previous },
        "local_3pids": { "active": active, "inactive": inactive },
        "local_hashes_per_pepper": local_hashes,
        "pushed_hashes": pushed,
        "jobs": jobs,
    }))
}
