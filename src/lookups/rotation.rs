//! The pepper and its rotation.
//!
//! A rotation computes every local hash for a new pepper before publishing it, then switches
//! in one transaction (new current, old current kept as previous, older data deleted); lookups
//! keep answering throughout. One rotation at a time, whoever starts it: the scheduler and the
//! `rotate-pepper` command both hold the lease [`ROTATION_JOB`].

use super::Lookups;
use crate::background::Pace;
use crate::clock::Clock;
use crate::secret::random_secret;
use crate::store::{Peppers, Store, StoreResult};
use crate::telemetry::Progress;
use crate::vocabulary::hash_3pid;

/// Makes sure a current pepper exists, creating one from the CSPRNG on first start. With
/// several instances starting together, exactly one pepper wins.
pub async fn ensure_pepper(store: &Store, now: i64) -> StoreResult<Peppers> {
    let peppers = store.peppers().await?;
    if peppers.current.is_some() {
        return Ok(peppers);
    }
    if store.insert_first_pepper(&random_secret(32), now).await? {
        tracing::info!("created the first lookup pepper");
    }
    store.peppers().await
}

/// The name of the rotation job, also its lease key.
pub const ROTATION_JOB: &str = "pepper-rotation";

/// At startup: removes the pending pepper (and its hashes) of a rotation whose instance died,
/// unless a rotation is running now (its lease is renewed while it runs).
pub async fn clear_abandoned_rotation(store: &Store, now: i64) -> StoreResult<()> {
    let running = store.job_lease(ROTATION_JOB).await?.is_some_and(|lease| lease.lease_until > now);
    if running {
        return Ok(());
    }
    let abandoned = store.discard_pending_peppers().await?;
    if abandoned > 0 {
        tracing::warn!(abandoned, "removed the pending pepper of an interrupted rotation");
    }
    Ok(())
}

/// Local 3PIDs hashed per batch during a rotation: small bites, paced (see [`Pace`]), so that
/// the database keeps answering the instances' other queries quickly meanwhile.
const ROTATION_BATCH: i64 = 2_000;

/// Rotates the pepper: a new CSPRNG pepper, the hashes of every local 3PID computed for it
/// and written at a pace that leaves the database half its time for the lookups' instances,
/// then one switch (new current, old current kept as previous, older data deleted). On
/// failure nothing is published and the partial work is removed.
pub async fn rotate_pepper(store: &Store, clock: &Clock) -> anyhow::Result<String> {
    rotate_to(store, clock, random_secret(32)).await
}

/// Rotates to a given pepper, as [`rotate_pepper`] does to a new one. `import-node-db` uses it
/// to publish the peppers the clients of the Node service hold.
pub async fn rotate_to(store: &Store, clock: &Clock, pepper: String) -> anyhow::Result<String> {
    // The caller holds the rotation lease: a pending pepper now was left by a crashed run.
    let abandoned = store.discard_pending_peppers().await?;
    if abandoned > 0 {
        tracing::warn!(abandoned, "removed the pending pepper of an interrupted rotation");
    }
    store.insert_pending_pepper(&pepper, clock.now_ms()).await?;
    let computed = async {
        let (active, inactive) = store.local_threepid_counts().await?;
        let mut progress = Progress::new(ROTATION_JOB, u64::try_from(active + inactive).ok());
        let mut after = 0;
        let mut hashed = 0_usize;
        let mut pace = Pace::new();
        loop {
            let batch = store.local_threepids_after(after, ROTATION_BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            let rows: Vec<(String, i64)> = batch
                .iter()
                .map(|threepid| (hash_3pid(&threepid.address, &threepid.medium, &pepper), threepid.id))
                .collect();
            store.insert_local_hashes(&pepper, &rows).await?;
            hashed += rows.len();
            progress.add(u64::try_from(rows.len()).unwrap_or(u64::MAX));
            pace.between_bites().await;
        }
        progress.finish();
        store.activate_pepper(&pepper, clock.now_ms()).await?;
        Ok::<usize, crate::store::StoreError>(hashed)
    }
    .await;
    match computed {
        Ok(hashed) => Ok(format!("new pepper published, {hashed} local hashes computed")),
        Err(error) => {
            if let Err(cleanup) = store.discard_pending_pepper(&pepper).await {
                tracing::warn!(%cleanup, "could not remove the unpublished pepper");
            }
            Err(error.into())
        }
    }
}

impl Lookups {
    /// Rotates the pepper (see [`rotate_pepper`]); this instance's lookups see the new pepper
    /// as soon as it returns.
    pub async fn rotate_pepper(&self) -> anyhow::Result<String> {
        let outcome = rotate_pepper(&self.store, &self.clock).await;
        self.apply_own_write().await;
        outcome
    }
}
