//! How this process's threads ask Linux for the cores they share with the database, the load
//! balancer and everything else on the machine.
//!
//! The threads serving requests ask for short time slices. Since Linux 6.12 the scheduler
//! (EEVDF) lets a waking task with a shorter slice preempt one with a longer slice: a lookup
//! arriving while PostgreSQL writes a rotation's million rows on both cores is served at once
//! instead of after the writer's slice (up to a 4 ms tick). Measured through a rotation on
//! PostgreSQL, the lookups' p99 went from 3.9× idle to 1.7–1.8× (about 1× once the load
//! generator on the same cores did the same; BENCHMARKS.md, "Rotation: serving threads ask for
//! short slices"). Earlier kernels accept the request and ignore it.
//! Background work (a push's parse, sort and merge) asks for the opposite: a lower priority
//! and the default slice, so that it yields the cores to the serving threads and is not cut
//! into short pieces when nothing else runs.
//!
//! The one `unsafe` block of the crate is here: `sched_setattr(2)` has no safe wrapper in the
//! crates the service uses (`rustix` has none; `setpriority` sets the nice value only).

use std::time::Duration;

/// The slice the serving threads ask for: the kernel's shortest, about the processor time of a
/// lookup of a hundred hashes.
pub const SERVING_SLICE: Duration = Duration::from_micros(100);

/// Asks for [`SERVING_SLICE`] for the calling thread, keeping its nice value and policy; the
/// threads it starts inherit it. For the threads of a runtime that serves requests (the
/// binary's `serve` calls it from each runtime thread's start; an application embedding the
/// service may do the same). Where the kernel refuses, the thread keeps the default slice.
pub fn serve_promptly() {
    #[cfg(target_os = "linux")]
    if let Err(error) = set_fair_scheduling(current_niceness(), Some(SERVING_SLICE)) {
        tracing::debug!(%error, "serving threads keep the default time slice");
    }
}

/// Gives the calling thread the nice value `niceness` (higher: lower priority) and the default
/// slice, for work that must yield the cores to the serving threads. Where the kernel refuses
/// the slice, the nice value is set alone; where it refuses that too, the work runs at normal
/// priority, which is only slower for the lookups around it.
pub fn yield_to_serving(niceness: i32) {
    #[cfg(target_os = "linux")]
    if set_fair_scheduling(niceness, None).is_err()
        && let Err(error) = rustix::process::setpriority_process(None, niceness)
    {
        tracing::debug!(%error, "background work at normal priority");
    }
}

/// The calling thread's nice value (0 when it cannot be read).
#[cfg(target_os = "linux")]
fn current_niceness() -> i32 {
    rustix::process::getpriority_process(None).unwrap_or(0)
}

/// Sets the calling thread's nice value and slice (`None`: the default one), keeping its
/// scheduling policy (an operator may have chosen `SCHED_BATCH` for the whole service).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_fair_scheduling(niceness: i32, slice: Option<Duration>) -> std::io::Result<()> {
    let attributes = libc::sched_attr {
        size: u32::try_from(std::mem::size_of::<libc::sched_attr>()).unwrap_or(u32::MAX),
        sched_policy: 0,
        sched_flags: libc::SCHED_FLAG_KEEP_POLICY as u64,
        sched_nice: niceness,
        sched_priority: 0,
        // 0 asks for the default slice.
        sched_runtime: slice.map_or(0, |slice| u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX)),
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_setattr(2) only reads `size` bytes through the pointer, which points to a
    // live, initialised `sched_attr` of exactly that size for the duration of the call; pid 0
    // is the calling thread, flags 0 is the only value defined.
    let result = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attributes, 0) };
    if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::process::getpriority_process;

    /// The calling thread's slice, from `/proc/thread-self/sched` (`se.slice`, in nanoseconds).
    fn slice_ns() -> u64 {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap();
        let line = sched.lines().find(|line| line.starts_with("se.slice")).expect("a kernel that reports se.slice");
        line.rsplit(':').next().unwrap().trim().parse().unwrap()
    }

    #[test]
    fn serving_threads_get_short_slices_and_background_work_a_lower_priority_with_the_default() {
        std::thread::spawn(|| {
            let default_slice = slice_ns();
            super::serve_promptly();
            assert_eq!(slice_ns(), 100_000, "a serving thread's slice");
            assert_eq!(getpriority_process(None).unwrap(), 0, "its nice value is kept");
            let inherited = std::thread::spawn(slice_ns).join().unwrap();
            assert_eq!(inherited, 100_000, "threads it starts inherit the slice");
            super::yield_to_serving(10);
            assert_eq!(getpriority_process(None).unwrap(), 10);
            assert_eq!(slice_ns(), default_slice, "background work gets the default slice back");
        })
        .join()
        .unwrap();
    }
}
