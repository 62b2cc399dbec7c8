//! Prometheus metrics: what is recorded, under which names, and the process-wide recorder.
//!
//! Recording goes through the `metrics` facade, which does nothing until a recorder is
//! installed: the service installs one only when `metrics_listen` is set, and serves its text
//! exposition on that separate listener (`GET /metrics`), never on the public one. Every name
//! recorded here is listed in `docs/operations.md`.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets (seconds) for requests and jobs: sub-millisecond lookups up to minute-long
/// rotations.
const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Size buckets (bytes) for push bodies: a handful of hashes up to a 1M-hash snapshot (~70 MB).
const BYTES_BUCKETS: &[f64] = &[1e3, 1e4, 1e5, 1e6, 1e7, 3e7, 1e8, 3e8];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder on first call and returns its handle; `None` when the
/// process already has another recorder (an application embedding the service).
pub fn install() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".to_owned()), DURATION_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Suffix("body_bytes".to_owned()), BYTES_BUCKETS)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            gauge!("fis_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        })
        .clone()
}

/// An answered HTTP request: its route template (`unmatched` for unknown paths, so that
/// scanners cannot create series), method and status.
pub fn http_request(route: &str, method: &str, status: u16, seconds: f64) {
    let (route, method) = (route.to_owned(), method.to_owned());
    counter!("fis_http_requests_total", "route" => route.clone(), "method" => method, "status" => status.to_string())
        .increment(1);
    histogram!("fis_http_request_duration_seconds", "route" => route).record(seconds);
}

/// A lookup answered: hashes (or plain addresses) asked, own ones found, found at other servers.
pub fn lookup(algorithm: &'static str, asked: usize, found_own: usize, found_third_party: usize) {
    counter!("fis_lookup_requests_total", "algorithm" => algorithm).increment(1);
    counter!("fis_lookup_addresses_total", "algorithm" => algorithm).increment(as_u64(asked));
    counter!("fis_lookup_found_total", "algorithm" => algorithm, "kind" => "own").increment(as_u64(found_own));
    counter!("fis_lookup_found_total", "algorithm" => algorithm, "kind" => "third_party")
        .increment(as_u64(found_third_party));
}

/// A push received and stored.
pub fn push_accepted(added: u64, removed: u64, seconds: f64) {
    counter!("fis_pushes_total", "result" => "accepted").increment(1);
    counter!("fis_push_hashes_added_total").increment(added);
    counter!("fis_push_hashes_removed_total").increment(removed);
    histogram!("fis_push_duration_seconds").record(seconds);
}

/// A push refused, by the errcode answered.
pub fn push_refused(errcode: &'static str) {
    counter!("fis_pushes_total", "result" => "refused", "reason" => errcode).increment(1);
}

/// A scheduled job or command run (`pepper-rotation`, `directory-sync`, `federation-push`): its
/// outcome and duration; a success also sets the time of the last success.
pub fn job_run(job: &str, succeeded: bool, seconds: f64, now_ms: i64) {
    let job = job.to_owned();
    let result = if succeeded { "success" } else { "failure" };
    counter!("fis_job_runs_total", "job" => job.clone(), "result" => result).increment(1);
    histogram!("fis_job_duration_seconds", "job" => job.clone()).record(seconds);
    if succeeded {
        #[allow(clippy::cast_precision_loss)] // milliseconds since 1970 fit an f64 exactly
        gauge!("fis_job_last_success_timestamp_seconds", "job" => job).set(now_ms as f64 / 1000.0);
    }
}

/// Whether this instance holds a scheduled job's lease (runs it) now.
pub fn job_lease_held(job: &str, held: bool) {
    gauge!("fis_job_lease_held", "job" => job.to_owned()).set(if held { 1.0 } else { 0.0 });
}

/// A job's lease taken over by another instance while this one ran the job (it ran longer than
/// the lease and could not renew it in time).
pub fn job_lease_lost(job: &str) {
    counter!("fis_job_lease_lost_total", "job" => job.to_owned()).increment(1);
}

/// The size of a push's body as read (decompressed).
pub fn push_body_bytes(bytes: usize) {
    #[allow(clippy::cast_precision_loss)] // bodies far below 2^52 bytes
    histogram!("fis_push_body_bytes").record(bytes as f64);
}

/// A push to one federated identity service, by target.
pub fn federation_push(target: &str, succeeded: bool) {
    let result = if succeeded { "success" } else { "failure" };
    counter!("fis_federation_pushes_total", "target" => target.to_owned(), "result" => result).increment(1);
}

/// A request refused by a rate limit.
pub fn rate_limited() {
    counter!("fis_rate_limited_total").increment(1);
}

/// A mail or SMS handed to its server, or not.
pub fn message(kind: &'static str, succeeded: bool) {
    counter!("fis_messages_total", "kind" => kind, "result" => if succeeded { "sent" } else { "failed" }).increment(1);
}

/// The lookup data in memory, per source and pepper slot, set at each scrape.
pub fn index_size(source: &'static str, pepper: &'static str, hashes: usize) {
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    gauge!("fis_index_hashes", "source" => source, "pepper" => pepper).set(hashes as f64);
}

/// The database pool, set at each scrape.
pub fn database_pool(size: u32, idle: usize) {
    gauge!("fis_database_connections", "state" => "open").set(f64::from(size));
    #[allow(clippy::cast_precision_loss)]
    gauge!("fis_database_connections", "state" => "idle").set(idle as f64);
}

/// The probe query of a scrape: whether it answered (within 5 s) and how long it took,
/// waiting for a pooled connection included.
pub fn database_probe(answered: bool, seconds: f64) {
    gauge!("fis_database_up").set(if answered { 1.0 } else { 0.0 });
    gauge!("fis_database_probe_seconds").set(seconds);
}

fn as_u64(count: usize) -> u64 {
    u64::try_from(count).unwrap_or(u64::MAX)
}
