//! Scheduled jobs: cron expressions as in the Node configuration (5 fields, or 6 with
//! seconds first; UTC), run by every instance with `cron_service`, each occurrence taken by
//! exactly one instance through a lease in the database.
//!
//! Jobs log their start, end, duration and errors. A failing or panicking job never stops
//! the server; the next occurrence runs as planned.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;

use crate::clock::Clock;
use crate::lookups::ROTATION_JOB;
use crate::secret::random_secret;
use crate::state::AppState;
use crate::store::Store;

/// How long a lease lasts unless renewed. A running job renews it every third of this, so an
/// instance that dies mid-run blocks the job for at most this long.
pub const LEASE: Duration = Duration::from_secs(60);

/// A job's body: returns a one-line summary for the log, or an error.
pub type JobBody = Arc<dyn Fn(AppState) -> Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send>> + Send + Sync>;

/// A scheduled job.
#[derive(Clone)]
pub struct Job {
    /// Name, also the lease key.
    pub name: &'static str,
    /// When it runs.
    pub schedule: Cron,
    /// What it does.
    pub body: JobBody,
}

/// The jobs of this configuration: pepper rotation always; directory sync with a user
/// directory; pushes with federated identity services to push to.
pub fn jobs(state: &AppState) -> anyhow::Result<Vec<Job>> {
    let config = &state.config;
    let rotation: JobBody = Arc::new(|state: AppState| Box::pin(async move { state.lookups.rotate_pepper().await }));
    let mut jobs = vec![Job { name: ROTATION_JOB, schedule: state.schedules.pepper_rotation.clone(), body: rotation }];
    if state.directory_sync.is_some() {
        let sync: JobBody = Arc::new(|state: AppState| {
            Box::pin(async move {
                let Some(sync) = &state.directory_sync else { return Ok("no user directory".to_owned()) };
                let summary = sync.sync().await?;
                Ok(format!(
                    "{} users: {} added, {} removed, {} changed, {} skipped",
                    summary.users, summary.added, summary.removed, summary.changed, summary.skipped
                ))
            })
        });
        jobs.push(Job { name: "directory-sync", schedule: state.schedules.directory_sync.clone(), body: sync });
    }
    if !config.federated_identity_services.is_empty() {
        let push: JobBody = Arc::new(|state: AppState| Box::pin(async move { state.pusher.push_all().await }));
        jobs.push(Job { name: "federation-push", schedule: state.schedules.federation_push.clone(), body: push });
    }
    Ok(jobs)
}

/// What happened to one occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Another instance runs (or ran) it.
    Skipped,
    /// This instance ran it; `Ok` holds the summary, `Err` the error.
    Ran(Result<String, String>),
}

/// Runs `job`'s occurrence scheduled at `scheduled_ms` if this instance wins its lease.
pub async fn run_occurrence(state: &AppState, instance: &str, job: &Job, scheduled_ms: i64) -> RunOutcome {
    // A separate task, so that a panic in the job is an error here, not a dead scheduler;
    // spawned only when the lease is won (the async block runs when first polled).
    let (run, state_for_job) = (job.body.clone(), state.clone());
    let body = async move {
        match tokio::spawn(run(state_for_job)).await {
            Ok(outcome) => outcome,
            Err(panic) => Err(anyhow::anyhow!("job panicked: {panic}")),
        }
    };
    run_leased(&state.store, &state.clock, job.name, instance, scheduled_ms, LEASE, body).await
}

/// Runs `body` as the occurrence of `job` scheduled at `scheduled_ms` if `holder` wins the
/// lease, renewing the lease every third of `lease` while it runs; records the outcome. The
/// scheduler and the `rotate-pepper` command both go through here, so a manual rotation never
/// overlaps a scheduled one. `body` is not started when the lease is not won.
pub async fn run_leased(
    store: &Store,
    clock: &Clock,
    job: &str,
    holder: &str,
    scheduled_ms: i64,
    lease: Duration,
    body: impl Future<Output = anyhow::Result<String>>,
) -> RunOutcome {
    let started_at = clock.now_ms();
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    match store.try_start_run(job, holder, scheduled_ms, started_at, started_at.saturating_add(lease_ms)).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(job, "another instance runs this occurrence");
            return RunOutcome::Skipped;
        }
        Err(error) => {
            tracing::warn!(job, %error, "cannot take the job lease; skipping this occurrence");
            return RunOutcome::Skipped;
        }
    }
    tracing::info!(job, "job started");
    crate::metrics::job_lease_held(job, true);
    let started = std::time::Instant::now();
    let renewing = async {
        let mut ticker = tokio::time::interval(lease / 3);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match store.renew_lease(job, holder, started_at, clock.now_ms().saturating_add(lease_ms)).await {
                Ok(true) => {}
                Ok(false) => {
                    crate::metrics::job_lease_lost(job);
                    tracing::warn!(job, "the job lease was taken over while the job runs");
                }
                Err(error) => tracing::warn!(job, %error, "cannot renew the job lease"),
            }
        }
    };
    let result = tokio::select! {
        outcome = body => outcome.map_err(|error| format!("{error:#}")),
        never = renewing => never,
    };
    // A number in JSON logs (u128 fields are written as strings).
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let status = match &result {
        Ok(summary) => {
            tracing::info!(job, duration_ms, summary = %summary, "job finished");
            "ok".to_owned()
        }
        Err(error) => {
            tracing::error!(job, duration_ms, %error, "job failed");
            format!("error: {error}")
        }
    };
    crate::metrics::job_run(job, result.is_ok(), started.elapsed().as_secs_f64(), clock.now_ms());
    crate::metrics::job_lease_held(job, false);
    if let Err(error) = store.finish_run(job, holder, clock.now_ms(), &status).await {
        tracing::warn!(job, %error, "cannot record the end of the job");
    }
    RunOutcome::Ran(result)
}

/// Starts every job of `state`'s configuration in `tasks`; each runs until its task is aborted.
pub fn spawn(state: &AppState, tasks: &mut tokio::task::JoinSet<()>) -> anyhow::Result<()> {
    let instance = random_secret(9);
    let jobs = jobs(state)?;
    // At startup the push waits for the directory sync: pushing first would send what the
    // database held before the directory was read.
    let has_directory_job = jobs.iter().any(|job| job.name == "directory-sync");
    let (synced, _) = tokio::sync::watch::channel(!has_directory_job);
    for job in jobs {
        let state = state.clone();
        let instance = instance.clone();
        let synced_sender = synced.clone();
        let mut synced = synced.subscribe();
        tasks.spawn(async move {
            tracing::info!(job = job.name, schedule = %job.schedule.pattern, "job scheduled (UTC)");
            if job.name == "federation-push" {
                let _ = synced.wait_for(|done| *done).await;
            }
            if job.name != ROTATION_JOB {
                // Directory sync and pushes also run once at startup, so that a new
                // instance does not wait for the first occurrence.
                run_occurrence(&state, &instance, &job, state.clock.now_ms()).await;
            }
            if job.name == "directory-sync" {
                synced_sender.send_replace(true);
            }
            loop {
                let Some(next) = next_occurrence(&job.schedule, Utc::now()) else {
                    tracing::warn!(job = job.name, "the schedule has no next occurrence");
                    return;
                };
                let wait = (next - Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                run_occurrence(&state, &instance, &job, next.timestamp_millis()).await;
            }
        });
    }
    Ok(())
}

fn next_occurrence(schedule: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.find_next_occurrence(&after, false).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::parse_cron;
    use chrono::TimeZone;

    #[test]
    fn five_and_six_field_expressions_are_accepted() {
        let daily = parse_cron("0 0 * * *").unwrap();
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(next_occurrence(&daily, start), Some(Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap()));
        let every_ten_seconds = parse_cron("*/10 * * * * *").unwrap();
        assert_eq!(
            next_occurrence(&every_ten_seconds, start),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 10).unwrap())
        );
        assert!(parse_cron("every day").is_err());
        assert!(parse_cron("61 * * * *").is_err());
    }
}
