//! A daemon that holds a secret and starts, or sits beside, processes it
//! does not trust makes itself non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`)
//! before it reads any secret: a process of the same uid can then no longer
//! read its `/proc/PID/environ`, `mem`, `fd/` or attach to it, while
//! `/proc/PID/stat` stays readable. The children it starts are dumpable
//! again after their `execve`, as usual.

/// Makes this process non-dumpable. On a failure the caller should stop:
/// running on would expose the secrets it is about to read.
pub fn make_non_dumpable() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{DumpableBehavior, set_dumpable_behavior};
        set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    }
    Ok(())
}

/// [`make_non_dumpable`], or one line on stderr (`<prefix>: …`) and exit 1.
pub fn make_non_dumpable_or_exit(prefix: &str) {
    if let Err(e) = make_non_dumpable() {
        eprintln!("{prefix}: cannot make the process non-dumpable: {e}");
        std::process::exit(1);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::process::{DumpableBehavior, dumpable_behavior};

    #[test]
    fn the_process_is_no_longer_dumpable() {
        assert_eq!(dumpable_behavior().ok(), Some(DumpableBehavior::Dumpable));
        super::make_non_dumpable().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            dumpable_behavior().ok(),
            Some(DumpableBehavior::NotDumpable)
        );
    }
}
