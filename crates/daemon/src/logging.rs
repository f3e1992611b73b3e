//! Logs go to stderr, as human-readable text (the default) or one JSON
//! object per line, filtered by a `tracing` env-filter expression.

/// Log output format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The `--log-level` expression does not parse.
    #[error("invalid --log-level {level:?}: {reason}")]
    Filter { level: String, reason: String },
    /// A global subscriber was already installed.
    #[error("cannot initialise logging: {0}")]
    Init(String),
}

/// Installs the global subscriber: `level` is an env-filter expression
/// (`info`, `debug`, `ambient_mcp=trace,info`, ...). ANSI colours only
/// when stderr is a terminal. Installs the redacting panic hook too
/// ([`crate::panic`]): a panic is output like a log line.
pub fn init_tracing(format: LogFormat, level: &str) -> Result<(), LoggingError> {
    crate::panic::install_panic_hook();
    let filter =
        tracing_subscriber::EnvFilter::try_new(level).map_err(|e| LoggingError::Filter {
            level: level.to_owned(),
            reason: e.to_string(),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| LoggingError::Init(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_is_a_clear_error() {
        let err = init_tracing(LogFormat::Text, "info,=[").err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("invalid --log-level"), "{msg}");
    }
}
