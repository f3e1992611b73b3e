//! The async runtime of a daemon: one thread for the per-session sidecars
//! (a current-thread runtime costs no worker stacks or malloc arenas and
//! wakes tasks without cross-thread hand-offs), or worker threads for the
//! daemons that serve many callers at once.

use tokio::runtime::{Builder, Runtime};

/// How many threads run the daemon's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only.
    One,
    /// This many workers.
    Workers(usize),
    /// One worker per core.
    PerCore,
}

/// A runtime with I/O and timers enabled.
pub fn async_runtime(threads: Threads) -> std::io::Result<Runtime> {
    let mut builder = match threads {
        Threads::One => Builder::new_current_thread(),
        Threads::Workers(_) | Threads::PerCore => Builder::new_multi_thread(),
    };
    if let Threads::Workers(n) = threads {
        builder.worker_threads(n.max(1));
    }
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_choice_runs_tasks_on_the_threads_it_names() -> std::io::Result<()> {
        let one = async_runtime(Threads::One)?;
        assert_eq!(one.metrics().num_workers(), 1);
        let main = std::thread::current().id();
        assert_eq!(one.block_on(async { std::thread::current().id() }), main);
        let two = async_runtime(Threads::Workers(2))?;
        assert_eq!(two.metrics().num_workers(), 2);
        let spawned =
            two.block_on(async { tokio::spawn(async { std::thread::current().id() }).await });
        assert_ne!(spawned.ok(), Some(main));
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(
            async_runtime(Threads::PerCore)?.metrics().num_workers(),
            cores
        );
        Ok(())
    }
}
