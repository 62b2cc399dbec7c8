//! Job leases: with several instances on one database, each scheduled run happens once.
//!
//! A lease is a row per job naming its holder and an expiry. Taking it is one conditional
//! upsert, so two instances racing for it cannot both win, on SQLite or PostgreSQL.

use super::{Store, StoreResult, on_pool};

/// The state of a job as recorded in its lease row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobLease {
    /// Job name.
    pub job: String,
    /// Instance that holds (or last held) the lease.
    pub holder: String,
    /// The lease is free after this time (ms).
    pub lease_until: i64,
    /// Start of the last run (ms).
    pub last_started_at: Option<i64>,
    /// End of the last run (ms).
    pub last_finished_at: Option<i64>,
    /// `ok` or the error of the last run.
    pub last_status: Option<String>,
}

impl Store {
    /// Takes the lease of `job` for `holder` until `until`, if it is free at `now` or already
    /// held by `holder`. Returns whether the lease was taken.
    pub async fn try_acquire_lease(&self, job: &str, holder: &str, now: i64, until: i64) -> StoreResult<bool> {
        let taken = on_pool!(self, pool => sqlx::query(
            "INSERT INTO job_leases (job, holder, lease_until, last_started_at) VALUES ($1, $2, $4, $3) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until, \
             last_started_at = excluded.last_started_at \
             WHERE job_leases.lease_until <= $3 OR job_leases.holder = excluded.holder",
        )
        .bind(job)
        .bind(holder)
        .bind(now)
        .bind(until)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(taken == 1)
    }

    /// Records the end of a run and frees the lease if `holder` still holds it.
    pub async fn release_lease(&self, job: &str, holder: &str, now: i64, status: &str) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE job_leases SET lease_until = $3, last_finished_at = $3, last_status = $4 \
             WHERE job = $1 AND holder = $2",
        )
        .bind(job)
        .bind(holder)
        .bind(now)
        .bind(status)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// The lease row of `job`, if the job has ever run.
    pub async fn job_lease(&self, job: &str) -> StoreResult<Option<JobLease>> {
        let lease = on_pool!(self, pool => sqlx::query_as::<_, JobLease>(
            "SELECT job, holder, lease_until, last_started_at, last_finished_at, last_status \
             FROM job_leases WHERE job = $1",
        )
        .bind(job)
        .fetch_optional(pool)
        .await)?;
        Ok(lease)
    }
}
