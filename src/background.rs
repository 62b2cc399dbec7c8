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

/// Runs `aside` on a second thread while `here` runs on the calling one, and returns both
/// results: one piece of work split over two cores (a push's sort is two halves sorted side by
/// side). The second thread has the caller's priority, since Linux threads inherit their
/// creator's nice value: called from [`run`], both halves stay behind the lookups as the whole
/// did. A panic on either side goes on in the caller.
///
/// # Panics
/// When the second thread cannot be started, as [`std::thread::spawn`] does.
pub fn join<A: Send, B>(aside: impl FnOnce() -> A + Send, here: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|scope| {
        let other = std::thread::Builder::new()
            .name("background-work".to_owned())
            .spawn_scoped(scope, aside)
            .expect("a background thread starts");
        let mine = here();
        match other.join() {
            Ok(theirs) => (theirs, mine),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Items handed in batches from the first stage of a [`pipeline`] to the second.
pub struct Handoff<T> {
    batch: Vec<T>,
    next_stage: std::sync::mpsc::SyncSender<Vec<T>>,
}

/// Items per batch: a channel operation per item would cost more than the work on it.
const HANDOFF_BATCH: usize = 8192;
/// Batches waiting for the second stage at most: what a slow second stage holds in memory.
const HANDOFF_BATCHES_WAITING: usize = 8;

impl<T> Handoff<T> {
    /// Hands `item` to the second stage.
    pub fn push(&mut self, item: T) {
        self.batch.push(item);
        if self.batch.len() == HANDOFF_BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(HANDOFF_BATCH));
        // Refused only when the second stage has panicked: its panic is what the caller gets.
        let _ = self.next_stage.send(batch);
    }
}

/// Runs `first` on the calling thread and `second` on another, `second` taking in order the
/// items `first` hands over, and returns both results: a stream of work in two steps (a push
/// body's JSON scanned here, its hashes decoded there) takes the time of the slower step, not
/// of both. At the caller's priority, as [`join`]'s second thread.
///
/// # Panics
/// When the second thread cannot be started; a panic on either side goes on in the caller.
pub fn pipeline<T: Send, F, S: Send>(
    first: impl FnOnce(&mut Handoff<T>) -> F,
    second: impl FnOnce(&mut dyn Iterator<Item = T>) -> S + Send,
) -> (F, S) {
    let (next_stage, arriving) = std::sync::mpsc::sync_channel(HANDOFF_BATCHES_WAITING);
    let (done, first_result) = join(
        move || second(&mut arriving.into_iter().flatten()),
        move || {
            let mut handoff = Handoff { batch: Vec::with_capacity(HANDOFF_BATCH), next_stage };
            let result = first(&mut handoff);
            handoff.send();
            // Dropping the handoff closes the channel: the second stage's items end there.
            drop(handoff);
            result
        },
    );
    (first_result, done)
}

/// Lowers the calling thread's priority (see [`crate::scheduling::yield_to_serving`]).
fn lower_priority() {
    crate::scheduling::yield_to_serving(NICENESS);
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
    async fn both_halves_of_a_split_run_at_the_lower_priority() {
        let niceness = || getpriority_process(None).unwrap();
        let ((aside, here), (first, second)) = super::run(move || {
            let halves = super::join(niceness, niceness);
            let stages = super::pipeline(|_: &mut super::Handoff<()>| niceness(), |_| niceness());
            (halves, stages)
        })
        .await;
        for (part, value) in [("aside", aside), ("here", here), ("first", first), ("second", second)] {
            assert!(value >= super::NICENESS, "{part} at niceness {value}");
        }
    }

    #[test]
    fn a_pipeline_hands_over_every_item_in_order() {
        let count = super::HANDOFF_BATCH * 3 + 5;
        let (first, second) = super::pipeline(
            |handoff| {
                (0..count).for_each(|item| handoff.push(item));
                "scanned"
            },
            |items| items.collect::<Vec<_>>(),
        );
        assert_eq!(first, "scanned");
        assert_eq!(second, (0..count).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "second stage")]
    fn a_panic_in_the_second_stage_goes_on_in_the_caller() {
        super::pipeline(
            |handoff| (0..super::HANDOFF_BATCH * 20).for_each(|item| handoff.push(item)),
            |_| panic!("second stage"),
        );
    }

    #[tokio::test]
    #[should_panic(expected = "broken")]
    async fn a_panic_goes_on_in_the_caller() {
        super::run(|| panic!("broken")).await;
    }
}
