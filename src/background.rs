//! CPU-bound work that would otherwise hold a request-serving thread for a long time: the
//! digest, parsing, sorting and merging of a push of millions of hashes, and the index builds.
//!
//! It runs on a thread of its own at a lower scheduling priority (Linux keeps a nice value per
//! thread): lookups arriving meanwhile take the cores first, so their latency barely moves
//! while a push is applied, and on an idle machine the work runs at full speed all the same.
//! A thread is started per piece of work, a few per push: pushes come minutes apart, and a
//! thread whose priority was lowered cannot raise it back to serve in a pool.

/// Nice value of the background threads (0 is normal, 19 the lowest): at 10 the scheduler
/// gives a request-serving thread about ten times the share of a background one.
const NICENESS: i32 = 10;

/// Runs `work` on a new thread of lower priority and waits for its result; a panic in `work`
/// goes on in the caller.
///
/// # Panics
/// When the thread cannot be started, as [`std::thread::spawn`] does.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("background-work".to_owned())
        .spawn(move || {
            lower_priority();
            // The receiver is gone only when the caller was dropped (a request cancelled).
            let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
        })
        .expect("a background thread starts");
    match result.await {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => unreachable!("the background thread always sends its outcome"),
    }
}

/// Lowers the calling thread's priority; where that is refused, the work runs at normal
/// priority, which is only slower for the lookups around it.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(None, NICENESS) {
        tracing::debug!(%error, "background work at normal priority");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::process::getpriority_process;

    #[tokio::test]
    async fn work_runs_on_a_thread_of_lower_priority_and_returns_its_value() {
        let before = getpriority_process(None).unwrap();
        let (value, niceness) = super::run(|| (6 * 7, getpriority_process(None).unwrap())).await;
        assert_eq!(value, 42);
        assert!(niceness >= super::NICENESS, "the work's thread at niceness {niceness}");
        assert_eq!(getpriority_process(None).unwrap(), before, "the caller's thread keeps its priority");
    }

    #[tokio::test]
    #[should_panic(expected = "broken")]
    async fn a_panic_goes_on_in_the_caller() {
        super::run(|| panic!("broken")).await;
    }
}
