//! A persistent thread pool for data-parallel kernels.
//!
//! Workers are spawned once. [`ThreadPool::run`] publishes a job (a borrowed
//! closure and a task count) by bumping a generation counter; workers that are
//! spinning see it within nanoseconds, parked ones are woken through a condvar.
//! Tasks are handed out through an atomic counter and the calling thread takes
//! tasks too. A worker must *join* a job (count itself in `active` while the
//! job is `open`) before touching it; once every task is done the caller
//! closes the job and waits only for workers that joined to leave. So a
//! worker the OS has not scheduled yet (an oversubscribed machine) never holds
//! the caller up, and the borrowed closure never outlives the call.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before parking, by default: long enough to
/// stay hot across the short gaps between one decode step's matmuls.
const DEFAULT_SPIN: Duration = Duration::from_micros(300);

type Task = dyn Fn(usize) + Sync;

/// The job workers read after seeing a new generation.
struct Job {
    /// Lifetime-erased pointer to the caller's closure; valid while the job
    /// is open or any worker is still joined to it.
    f: Option<*const Task>,
    n_tasks: usize,
}

struct Shared {
    generation: AtomicU64,
    /// Written only by the thread holding `run_lock` while the job is closed
    /// and no worker is joined (see the `Sync` impl).
    job: UnsafeCell<Job>,
    open: AtomicBool,
    active: AtomicUsize,
    next: AtomicUsize,
    done: AtomicUsize,
    sleepers: AtomicUsize,
    park: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
    panicked: AtomicBool,
    spin: Duration,
}

// SAFETY: `job` is the only non-Sync field. `run` writes it only while
// `open` is false and it has seen `active == 0` after closing (SeqCst), then
// sets `open` (SeqCst, which publishes the write). A worker reads it only
// after incrementing `active` and then seeing `open` true (both SeqCst), so a
// read never overlaps a write, and `run` does not return (ending the
// closure's borrow) until those workers have decremented `active`.
unsafe impl Sync for Shared {}
// SAFETY: the raw closure pointer is only dereferenced under the protocol above.
unsafe impl Send for Shared {}

/// Persistent worker threads; see the module docs.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    run_lock: Mutex<()>,
}

impl ThreadPool {
    /// A pool where `run` uses `n_threads` threads in all: the caller plus
    /// `n_threads - 1` workers (0 is treated as 1).
    pub fn new(n_threads: usize) -> Self {
        Self::with_spin(n_threads, DEFAULT_SPIN)
    }

    /// Like [`ThreadPool::new`], with idle workers spinning for `spin` before parking.
    pub fn with_spin(n_threads: usize, spin: Duration) -> Self {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(Job {
                f: None,
                n_tasks: 0,
            }),
            open: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            park: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            spin,
        });
        let mut workers = Vec::new();
        for i in 1..n_threads.max(1) {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("kernels-{i}"))
                .spawn(move || worker(&s));
            match spawned {
                Ok(h) => workers.push(h),
                // Fewer threads is slower, not wrong: run with what we have.
                Err(_) => break,
            }
        }
        ThreadPool {
            shared,
            workers,
            run_lock: Mutex::new(()),
        }
    }

    /// Threads `run` spreads work over, the caller included.
    pub fn n_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Whether [`ThreadPool::for_parts`] shares `n` items (at least
    /// `min_items`, and two) over more than the calling thread.
    pub fn shares(&self, n: usize, min_items: usize) -> bool {
        n >= min_items.max(2) && !self.workers.is_empty()
    }

    /// Runs `f(first, part)` over `items` cut into consecutive parts
    /// (`first`: the part's first index), shared over the threads when there
    /// are at least `min_items` items, else in one part on the calling
    /// thread. Each part is handed to exactly one task, so `f` may write it.
    pub fn for_parts<T: Send>(
        &self,
        items: &mut [T],
        min_items: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let n = items.len();
        if !self.shares(n, min_items) {
            f(0, items);
            return;
        }
        // Two parts per thread evens out a thread that starts late.
        let per = n.div_ceil(self.n_threads() * 2);
        let parts: Vec<Mutex<(usize, &mut [T])>> = items
            .chunks_mut(per)
            .enumerate()
            .map(|(i, c)| Mutex::new((i * per, c)))
            .collect();
        self.run(parts.len(), &|t| {
            let mut part = parts[t].lock().unwrap_or_else(|p| p.into_inner());
            let (first, items) = &mut *part;
            f(*first, items);
        });
    }

    /// [`ThreadPool::for_parts`] over the `row_len`-element rows of `data`:
    /// `f(i, row)` for every row `i`, shared over the threads when there are
    /// at least `min_rows`.
    ///
    /// # Panics
    /// If `data.len()` is not a multiple of `row_len`.
    pub fn for_rows<T: Send>(
        &self,
        data: &mut [T],
        row_len: usize,
        min_rows: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        assert!(
            row_len > 0 && data.len().is_multiple_of(row_len),
            "whole rows"
        );
        // A pass too small to share runs here, without gathering its rows.
        if !self.shares(data.len() / row_len, min_rows) {
            for (i, row) in data.chunks_exact_mut(row_len).enumerate() {
                f(i, row);
            }
            return;
        }
        let mut rows: Vec<&mut [T]> = data.chunks_exact_mut(row_len).collect();
        self.for_parts(&mut rows, min_rows, &|first, part| {
            for (i, row) in part.iter_mut().enumerate() {
                f(first + i, row);
            }
        });
    }

    /// Runs `f(i)` for every `i` in `0..n_tasks` across the workers and the
    /// calling thread; returns when all are done. A nested or concurrent call
    /// (while another `run` is in progress) runs its tasks on its own thread.
    ///
    /// # Panics
    /// Re-raises a panic from any task once all workers are done with the job.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks <= 1 || self.workers.is_empty() {
            (0..n_tasks).for_each(f);
            return;
        }
        let _guard = match self.run_lock.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                (0..n_tasks).for_each(f);
                return;
            }
        };
        let s = &*self.shared;
        // SAFETY: erasing the closure's lifetime is sound because this function
        // does not return before every worker that joined the job has left it.
        let f_static: *const Task =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Task>(f) };
        // SAFETY: the job is closed and no worker is joined (the previous
        // `run` waited for that), so nobody reads `job` now.
        unsafe {
            *s.job.get() = Job {
                f: Some(f_static),
                n_tasks,
            }
        };
        s.next.store(0, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        s.open.store(true, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _p = s.park.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        take_tasks(s, f, n_tasks);
        wait_until(|| s.done.load(Ordering::Acquire) >= n_tasks);
        s.open.store(false, Ordering::SeqCst);
        wait_until(|| s.active.load(Ordering::SeqCst) == 0);
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a thread pool task panicked");
        }
    }
}

/// Spins briefly, then yields the CPU, until `cond` holds.
fn wait_until(cond: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !cond() {
        if spins < 1 << 12 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Claims and runs tasks until none are left, counting each one done (a
/// panicking task is recorded and counted too).
fn take_tasks(s: &Shared, f: &(dyn Fn(usize) + Sync + '_), n_tasks: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n_tasks {
            return;
        }
        if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
            s.panicked.store(true, Ordering::Relaxed);
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

fn worker(s: &Shared) {
    // Workers start before any job is published, at generation 0.
    let mut seen = 0;
    loop {
        if !wait_for_job(s, seen) {
            return;
        }
        seen = s.generation.load(Ordering::Acquire);
        s.active.fetch_add(1, Ordering::SeqCst);
        if s.open.load(Ordering::SeqCst) {
            // SAFETY: joined while open: see `impl Sync for Shared`.
            let job = unsafe { &*s.job.get() };
            if let Some(f) = job.f {
                // SAFETY: the closure outlives the job while we are joined.
                take_tasks(s, unsafe { &*f }, job.n_tasks);
            }
        }
        s.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Spins, then parks, until the generation moves past `seen`; false on shutdown.
fn wait_for_job(s: &Shared, seen: u64) -> bool {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if s.shutdown.load(Ordering::Acquire) {
            return false;
        }
        if s.generation.load(Ordering::Acquire) != seen {
            return true;
        }
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(64) || start.elapsed() < s.spin {
            std::hint::spin_loop();
            continue;
        }
        let mut guard = s.park.lock().unwrap_or_else(|p| p.into_inner());
        s.sleepers.fetch_add(1, Ordering::SeqCst);
        while s.generation.load(Ordering::SeqCst) == seen && !s.shutdown.load(Ordering::SeqCst) {
            guard = s.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
        s.sleepers.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        return !s.shutdown.load(Ordering::Acquire);
    }
}

/// The thread count to use when none is configured: one per physical core
/// (a core's hardware threads share its vector units and caches, so a
/// second thread per core adds contention to these kernels, not speed),
/// never more than this process may run in parallel.
pub fn default_threads() -> usize {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    physical_cores().map_or(available, |cores| cores.clamp(1, available))
}

/// Distinct physical cores among the online CPUs (Linux sysfs); `None` where
/// the topology cannot be read.
fn physical_cores() -> Option<usize> {
    let cpus = std::fs::read_dir("/sys/devices/system/cpu").ok()?;
    let mut cores = std::collections::HashSet::new();
    for entry in cpus.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_cpu = name
            .strip_prefix("cpu")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_cpu {
            continue;
        }
        // An offline CPU has no topology to read; it is not ours to use.
        let topology = entry.path().join("topology");
        let siblings = std::fs::read_to_string(topology.join("core_cpus_list"))
            .or_else(|_| std::fs::read_to_string(topology.join("thread_siblings_list")));
        if let Ok(list) = siblings {
            cores.insert(list.trim().to_string());
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _p = self.shared.park.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            // A worker never panics (tasks are caught), so a join error is moot.
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row is handed to exactly one call, with its own index, on one
    /// thread or several.
    #[test]
    fn for_rows_visits_each_row_once_with_its_index() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            for (n_rows, min) in [(0, 4), (1, 4), (3, 4), (4, 4), (17, 4), (64, 2)] {
                let mut data = vec![0u32; n_rows * 5];
                pool.for_rows(&mut data, 5, min, &|i, row| {
                    assert_eq!(row.len(), 5);
                    for v in row.iter_mut() {
                        *v += i as u32 + 1;
                    }
                });
                for (i, row) in data.chunks_exact(5).enumerate() {
                    assert!(
                        row.iter().all(|&v| v == i as u32 + 1),
                        "{threads} threads, row {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn default_threads_is_at_least_one_and_at_most_the_cpus() {
        let n = default_threads();
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(n >= 1 && n <= available, "{n} of {available}");
    }

    #[test]
    fn runs_every_task_exactly_once() {
        for n_threads in [1, 2, 3] {
            let pool = ThreadPool::new(n_threads);
            for n_tasks in [0, 1, 2, 7, 100] {
                let hits: Vec<AtomicUsize> = (0..n_tasks).map(|_| AtomicUsize::new(0)).collect();
                pool.run(n_tasks, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                    "{n_threads} {n_tasks}"
                );
            }
        }
    }

    #[test]
    fn many_quick_runs_and_parked_workers() {
        let pool = ThreadPool::with_spin(2, Duration::from_micros(1));
        let total = AtomicUsize::new(0);
        for round in 0..2000 {
            if round % 500 == 0 {
                // Let the worker park before the next run (bounded wait).
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while pool.shared.sleepers.load(Ordering::SeqCst) < pool.workers.len()
                    && std::time::Instant::now() < deadline
                {
                    std::thread::yield_now();
                }
            }
            pool.run(4, &|i| {
                total.fetch_add(i + 1, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 2000 * 10);
    }

    #[test]
    fn nested_run_does_not_deadlock() {
        let pool = ThreadPool::new(2);
        let total = AtomicUsize::new(0);
        pool.run(3, &|_| {
            pool.run(3, &|j| {
                total.fetch_add(j, Ordering::Relaxed);
            });
        });
        assert_eq!(total.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn task_panic_is_reraised_and_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(8, &|i| {
                if i == 5 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let total = AtomicUsize::new(0);
        pool.run(8, &|_| {
            total.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(total.load(Ordering::Relaxed), 8);
    }
}
