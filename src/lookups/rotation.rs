//! The pepper and its rotation.
//!
//! A rotation computes every local hash for a new pepper before publishing it, then switches
//! in one transaction (new current, old current kept as previous, older data deleted); lookups
//! keep answering throughout. One rotation at a time, whoever starts it: the scheduler and the
//! `rotate-pepper` command both hold the lease [`ROTATION_JOB`].

use super::Lookups;
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

/// Local 3PIDs hashed per batch during a rotation: small batches, paced (see [`Pace`]), so
/// that the database keeps answering the instances' other queries quickly meanwhile.
const ROTATION_BATCH: i64 = 2_000;

/// Paces the rotation's writes: after each batch, a pause as long as the batch took, so that
/// the rotation takes at most half of the database's time. Written flat out, a million rows
/// kept a core of PostgreSQL busy (a foreign-key check and an index entry per row) on the
/// cores the lookups used; paced, the rotation takes twice as long and the lookups' p99
/// through it fell by about a third (BENCHMARKS.md, "Rotation, paced").
#[derive(Debug)]
struct Pace {
    batch_started: tokio::time::Instant,
}

impl Pace {
    /// Starts timing the first batch.
    fn new() -> Self {
        Self { batch_started: tokio::time::Instant::now() }
    }

    /// Waits as long as the batch since the last call took, then starts timing the next one.
    async fn between_batches(&mut self) {
        tokio::time::sleep(self.batch_started.elapsed()).await;
        self.batch_started = tokio::time::Instant::now();
    }
}

/// Rotates the pepper: a new CSPRNG pepper, the hashes of every local 3PID computed for it
/// and written at a pace that leaves the database half its time for the lookups' instances,
/// then one switch (new current, old current kept as previous, older data deleted). On
/// failure nothing is published and the partial work is removed.
pub async fn rotate_pepper(store: &Store, clock: &Clock) -> anyhow::Result<String> {
    rotate_to(store, clock, random_secret(32)).await
}

/// Rotates to a given pepper, as [`rotate_pepper`] does to a new one, at the same pace.
/// `import-node-db` uses it to publish the peppers the clients of the Node service hold.
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
            pace.between_batches().await;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::{Instant, advance};

    use crate::clock::Clock;
    use crate::config::Config;
    use crate::store::{DirectoryChanges, NewThreepid, Store};

    /// More 3PIDs than a batch holds, not a multiple of it: each is hashed for the new pepper
    /// once, the last short batch included.
    #[tokio::test]
    async fn a_rotation_hashes_every_3pid_across_its_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&Config { data_dir: dir.path().to_owned(), ..Config::default() }).await.unwrap();
        let count = usize::try_from(super::ROTATION_BATCH).unwrap() * 2 + 1;
        let added = (0..count)
            .map(|n| NewThreepid {
                medium: "email".into(),
                address: format!("user{n}@example.org"),
                mxid: format!("@user{n}:example.org"),
                active: true,
            })
            .collect();
        store.apply_directory_changes(&DirectoryChanges { added, ..Default::default() }, 1).await.unwrap();
        let outcome = super::rotate_pepper(&store, &Clock::new()).await.unwrap();
        assert!(outcome.contains(&format!("{count} local hashes computed")), "{outcome}");
        let current = store.peppers().await.unwrap().current.unwrap();
        let counts = store.local_hash_counts().await.unwrap();
        assert!(counts.contains(&(current, i64::try_from(count).unwrap())), "{counts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pace_waits_as_long_as_the_batch_took() {
        let mut pace = super::Pace::new();
        advance(Duration::from_millis(30)).await;
        let paused = Instant::now();
        pace.between_batches().await;
        assert_eq!(paused.elapsed(), Duration::from_millis(30));
        // The next batch is timed from the end of the pause.
        advance(Duration::from_millis(5)).await;
        let paused = Instant::now();
        pace.between_batches().await;
        assert_eq!(paused.elapsed(), Duration::from_millis(5));
    }
}
