//! Threads: how many a plan may use, and the pool our own ops split their work over (the one
//! tract's matmuls use).

use std::sync::Arc;

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
    if rows < MIN_SPLIT_ROWS {
        return None;
    }
    current_pool()
}

/// Token rows below which an inference runs on one thread ([`pool_for`]).
const MIN_SPLIT_ROWS: usize = 32;
