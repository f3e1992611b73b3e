//! What the `cargo xtask bench` programs share to measure real processes:
//! start a binary and time it to its `<name> listening on <addr>` lines
//! ([`start_announced`]), hold it for the run ([`Proc`], killed on drop),
//! read its resident memory and threads ([`rss_kib`], [`threads`]), and sort samples into
//! percentiles ([`percentile`]).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process killed and reaped on drop.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Proc {
    /// Process ID.
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` (stdout piped, stderr discarded) and waits for a
/// `<name> listening on <addr>` line for each of `names`. Returns the
/// process, the addresses in the order of `names`, and the time from the
/// spawn to the last of those lines. Stdout keeps being drained afterwards
/// so the process never blocks on it.
pub fn start_announced(
    cmd: &mut Command,
    names: &[&str],
) -> std::io::Result<(Proc, Vec<String>, Duration)> {
    let t0 = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let proc = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut addrs = vec![String::new(); names.len()];
    while addrs.iter().any(String::is_empty) {
        let Some(Ok(line)) = lines.next() else {
            return Err(std::io::Error::other(format!(
                "{:?} exited before announcing {names:?}",
                cmd.get_program()
            )));
        };
        if let Some((name, addr)) = line.split_once(" listening on ")
            && let Some(i) = names.iter().position(|n| *n == name)
        {
            addrs[i] = addr.trim().to_owned();
        }
    }
    let elapsed = t0.elapsed();
    std::thread::spawn(move || for _ in lines {});
    Ok((proc, addrs, elapsed))
}

/// A numeric field of `/proc/<pid>/status` (the first number after `name:`).
fn status_field(pid: u32, name: &str) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no {name} for process {pid}")))
}

/// Resident set size of process `pid` (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> std::io::Result<u64> {
    status_field(pid, "VmRSS")
}

/// Threads of process `pid`.
pub fn threads(pid: u32) -> std::io::Result<u64> {
    status_field(pid, "Threads")
}

/// The `p` quantile (0.0–1.0) of `sorted`, nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let ms = |n| Duration::from_millis(n);
        let v: Vec<Duration> = (1..=11).map(ms).collect();
        assert_eq!(percentile(&v, 0.5), ms(6));
        assert_eq!(percentile(&v, 0.0), ms(1));
        assert_eq!(percentile(&v, 1.0), ms(11));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn rss_of_this_process() {
        assert!(rss_kib(std::process::id()).is_ok_and(|k| k > 0));
        assert!(threads(std::process::id()).is_ok_and(|n| n >= 1));
    }
}
