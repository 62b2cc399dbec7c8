//! Job leases: with several instances on one database, each scheduled run happens once.
//!
//! A lease is a row per job naming its holder, an expiry, and the scheduled time of the last
//! run that was started. Starting a run is one conditional upsert: it succeeds only for a
//! scheduled time later than the last one started, and only when no other holder's lease is
//! running. Two instances racing for the same occurrence cannot both win, and an instance
//! whose clock lags cannot run an occurrence again after the other one finished it.

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
    /// Scheduled time of the last run started (ms).
    pub last_scheduled_at: i64,
    /// Start of the last run (ms).
    pub last_started_at: Option<i64>,
    /// End of the last run (ms).
    pub last_finished_at: Option<i64>,
    /// `ok` or the error of the last run.
    pub last_status: Option<String>,
}

impl Store {
    /// Starts the run of `job` scheduled at `scheduled_at` for `holder`, holding the lease
    /// until `until` at most. Returns whether this holder got the run.
    pub async fn try_start_run(
        &self,
        job: &str,
        holder: &str,
        scheduled_at: i64,
        now: i64,
        until: i64,
    ) -> StoreResult<bool> {
        let started = on_pool!(self, pool => sqlx::query(
            "INSERT INTO job_leases (job, holder, lease_until, last_scheduled_at, last_started_at) \
             VALUES ($1, $2, $5, $3, $4) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until, \
             last_scheduled_at = excluded.last_scheduled_at, last_started_at = excluded.last_started_at \
             WHERE job_leases.last_scheduled_at < excluded.last_scheduled_at \
             AND job_leases.lease_until <= excluded.last_started_at",
        )
        .bind(job)
        .bind(holder)
        .bind(scheduled_at)
        .bind(now)
        .bind(until)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(started == 1)
    }

    /// Extends the lease of the run of `job` that `holder` started at `started_at` to `until`;
    /// returns whether that run still held it.
    pub async fn renew_lease(&self, job: &str, holder: &str, started_at: i64, until: i64) -> StoreResult<bool> {
        let renewed = on_pool!(self, pool => sqlx::query(
            "UPDATE job_leases SET lease_until = $4 WHERE job = $1 AND holder = $2 AND last_started_at = $3",
        )
        .bind(job)
        .bind(holder)
        .bind(started_at)
        .bind(until)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(renewed == 1)
    }

    /// Records the end of a run and frees the lease if `holder` still holds it.
    pub async fn finish_run(&self, job: &str, holder: &str, now: i64, status: &str) -> StoreResult<()> {
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
            "SELECT job, holder, lease_until, last_scheduled_at, last_started_at, last_finished_at, last_status \
             FROM job_leases WHERE job = $1",
        )
        .bind(job)
        .fetch_optional(pool)
        .await)?;
        Ok(lease)
    }

    /// Every lease row, for `inspect`.
    pub async fn job_leases(&self) -> StoreResult<Vec<JobLease>> {
        let leases = on_pool!(self, pool => sqlx::query_as::<_, JobLease>(
            "SELECT job, holder, lease_until, last_scheduled_at, last_started_at, last_finished_at, last_status \
             FROM job_leases ORDER BY job",
        )
        .fetch_all(pool)
        .await)?;
        Ok(leases)
    }
}
