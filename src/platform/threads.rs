//! Threads: how many a plan may use, and the pool our own ops split their work over (the one
//! tract's matmuls use).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tract_linalg::multithread::Executor;

use crate::error::{Error, Result};

/// The most threads a plan may use. The boards have 4 cores; a larger number is a mistake (a
/// C caller's uninitialized int, say), and each thread costs a stack: refused at load.
pub const MAX_THREADS: usize = 256;

/// One thread per core, within [`MAX_THREADS`]: what the CLI and the C API use by default.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS)
}

/// The executor for a plan on `threads` threads: `None` (the calling thread) for one.
///
/// The pool is built here rather than by tract's `Executor::multithread`, which panics when the
/// system refuses the threads.
pub(crate) fn executor(threads: usize) -> Result<Option<Executor>> {
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(Error::input(format!(
            "threads must be between 1 and {MAX_THREADS}, got {threads}"
        )));
    }
    if threads == 1 {
        return Ok(None);
    }
    // tract splits its element-wise, binary and reduce ops over the pool from 32768 elements
    // on. A BERT activation (tokens × 384) is a few microseconds of work for one core, less
    // than the hand-off: at 128 tokens and 2 threads the smoothing multiplies took 0.52 ms
    // per inference against 0.15 ms on one thread (results/performance.md, session 19). Our
    // own ops decide their splits themselves (`pool_for`).
    tract_linalg::multithread::set_threading_element_threshold(TRACT_SPLIT_ELEMENTS);
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|n| format!("bertlite-{n}"))
        .num_threads(threads)
        .build()
        .map_err(|e| Error::inference(format!("cannot start {threads} threads"), e))?;
    Ok(Some(Executor::MultiThread(Arc::new(pool))))
}

/// The thread pool the running plan uses (`--threads` > 1), for our own ops to split work
/// over; `None` on one thread.
pub(crate) fn current_pool() -> Option<Arc<rayon::ThreadPool>> {
    match tract_linalg::multithread::current_tract_executor() {
        Executor::MultiThread(pool) => Some(pool),
        _ => None,
    }
}

/// The pool an op on `rows` token rows (all texts of the batch) splits its work over:
/// [`current_pool`], or `None` (the calling thread) for a short input.
///
/// Handing work to rayon's workers costs each of them a wake-up and, after its share, a spell
/// of spinning for more. For a short text that overhead is a large share of every op, and
/// splitting only the larger ops does not help either: the workers fall asleep between them
/// and each split pays a wake-up. So an input below [`MIN_SPLIT_ROWS`] runs every op on one
/// thread, and a longer one splits every op, which keeps the workers warm between them
/// (measured in results/boards.md, "Threads").
pub(crate) fn pool_for(rows: usize) -> Option<Arc<rayon::ThreadPool>> {
    if !splits(rows) {
        return None;
    }
    current_pool()
}

/// Whether an input of `rows` token rows splits its ops over the threads ([`pool_for`]).
pub(crate) fn splits(rows: usize) -> bool {
    rows >= MIN_SPLIT_ROWS
}

/// Elements from which tract splits an element-wise op over the threads: above the largest
/// activation of a batch of 8 texts of 256 tokens (8 × 256 × 384).
const TRACT_SPLIT_ELEMENTS: usize = 1 << 20;

/// Token rows below which an inference runs on one thread ([`pool_for`]). Where the pool's
/// threads spin through an inference ([`KEEPS_AWAKE`]), a split costs a steal, not a
/// wake-up, and two threads gain from 8 rows on (results/performance.md, session 23); on
/// ARM the threads sleep between ops and a split below 32 rows cost more than it saved
/// (results/boards.md, "Threads").
const MIN_SPLIT_ROWS: usize = if KEEPS_AWAKE { 8 } else { 32 };

/// Whether [`run_on_pool`] keeps the pool's other threads spinning through an inference: on
/// x86_64 only (see there why not on ARM).
const KEEPS_AWAKE: bool = cfg!(target_arch = "x86_64");

/// A plan's thread pool, with what [`run_on_pool`] needs to know about the inferences on it.
pub(crate) struct Pool {
    pub(crate) threads: Arc<rayon::ThreadPool>,
    /// Whether an inference with the other threads kept awake is running.
    kept_awake: AtomicBool,
}

impl Pool {
    pub(crate) fn new(threads: Arc<rayon::ThreadPool>) -> Pool {
        Pool { threads, kept_awake: AtomicBool::new(false) }
    }
}

/// Runs `f` (a whole inference) on one of the pool's threads, with the pool's other threads
/// kept awake for its length on x86_64.
///
/// Kept awake: each of the other threads runs a job that looks for the inference's split work
/// (rayon's `yield_now`: steal a job if there is one) and spins in between, until `f` returns.
/// Left to rayon, an idle thread falls asleep after a few tens of microseconds, shorter than
/// the gaps between split ops, and waking it costs ~0.1 ms on a virtual machine whose idle
/// vCPU has halted: on this 2-core KVM host, two threads ran 128 tokens only 1.3× faster than
/// one (results/performance.md, session 19). ONNX Runtime's pool spins the same way.
/// Not on ARM: spinning is measured there only as instructions under qemu, which it would
/// inflate, and a board's idle core wakes in microseconds.
///
/// Why this cannot hang: the spinning jobs are spawned before any of the inference's split
/// work, so threads that steal (oldest first) take them before any of it, and the thread
/// running the inference skips them (a spinner above work the inference waits for would
/// wait forever). One inference at a time keeps them: a second caller of the same pool
/// meanwhile runs without (two inferences spinning for each other could each sit above the
/// other's work).
pub(crate) fn run_on_pool<R: Send>(pool: &Pool, f: impl FnOnce() -> R + Send) -> R {
    let alone = KEEPS_AWAKE
        && pool
            .kept_awake
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
    if !alone {
        return pool.threads.install(f);
    }
    let _alone = SetOnDrop(&pool.kept_awake, false);
    pool.threads.install(|| {
        let done = AtomicBool::new(false);
        let runner = rayon::current_thread_index();
        rayon::in_place_scope(|scope| {
            for _ in 1..pool.threads.current_num_threads() {
                scope.spawn(|_| keep_awake(&done, runner));
            }
            // Set when `f` returns or unwinds: the scope waits for the spinning jobs, so a
            // panic in `f` must stop them too, or the caller (the C API catches panics) hangs.
            let _done = SetOnDrop(&done, true);
            f()
        })
    })
}

/// Sets its flag to its value when dropped.
struct SetOnDrop<'a>(&'a AtomicBool, bool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(self.1, Ordering::Release);
    }
}

thread_local! {
    /// Whether this pool thread is already inside [`keep_awake`].
    static KEEPING_AWAKE: Cell<bool> = const { Cell::new(false) };
}

/// Steals and runs the pool's pending jobs, spinning between them, until `done`. Returns at
/// once on the thread running the inference (which picks up its own unstolen job while waiting
/// for a split: spinning there would never end) or on a thread already doing this.
fn keep_awake(done: &AtomicBool, runner: Option<usize>) {
    if rayon::current_thread_index() == runner || KEEPING_AWAKE.get() {
        return;
    }
    KEEPING_AWAKE.set(true);
    let mut idle = 0u32;
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle = 0,
            // Now and then the core goes to the OS, should another process want it: on a
            // busy machine, spinning without would take its time slices.
            Some(rayon::Yield::Idle) => {
                idle = idle.wrapping_add(1);
                if idle.is_multiple_of(64) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            None => break,
        }
    }
    KEEPING_AWAKE.set(false);
}
