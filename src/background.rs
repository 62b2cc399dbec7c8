//! CPU-bound work that would otherwise hold a request-serving thread for a long time: the
//! digest, parsing, sorting and merging of a push of millions of hashes, and the index builds;
//! and the [`Pace`] of long database work that lookups share the database with.
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

/// Paces a long run of database work that lookups share the database with: after each bite,
/// a pause as long as the bite took, so that the work takes at most half of the database's
/// time. A rotation's million rows written flat out kept a core of the database busy for
/// seconds and raised the lookups' p99 several fold on a two-core host; paced, it takes about
/// twice as long and the lookups barely notice.
#[derive(Debug)]
pub struct Pace {
    bite_started: tokio::time::Instant,
}

impl Pace {
    /// Starts timing the first bite.
    #[must_use]
    pub fn new() -> Self {
        Self { bite_started: tokio::time::Instant::now() }
    }

    /// Waits as long as the bite since the last call took, then starts timing the next one.
    pub async fn between_bites(&mut self) {
        tokio::time::sleep(self.bite_started.elapsed()).await;
        self.bite_started = tokio::time::Instant::now();
    }
}

impl Default for Pace {
    fn default() -> Self {
        Self::new()
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

    #[tokio::test(start_paused = true)]
    async fn a_pace_waits_as_long_as_the_bite_took() {
        let mut pace = super::Pace::new();
        tokio::time::advance(std::time::Duration::from_millis(30)).await;
        let paused = tokio::time::Instant::now();
        pace.between_bites().await;
        assert_eq!(paused.elapsed(), std::time::Duration::from_millis(30));
        // The next bite is timed from the end of the pause.
        tokio::time::advance(std::time::Duration::from_millis(5)).await;
        let paused = tokio::time::Instant::now();
        pace.between_bites().await;
        assert_eq!(paused.elapsed(), std::time::Duration::from_millis(5));
    }

    #[tokio::test]
    #[should_panic(expected = "broken")]
    async fn a_panic_goes_on_in_the_caller() {
        super::run(|| panic!("broken")).await;
    }
}
