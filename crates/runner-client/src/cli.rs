//! The `ambient-runner-client` commands: `token`, `push`, `watch`, each
//! printing JSON lines on stdout (logs go to stderr).

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use ambient_protocol::env;
use ambient_protocol::exchanger::format_rfc3339;
use ambient_protocol::v1::SessionMessage;
use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::channel::Api;
use crate::config::{Config, Settings};
use crate::messages::{SessionMessages, WatchError};
use crate::session::{End, wait_terminal};
use crate::token::TokenSource;

/// The runner's token and session-message client. Configured from the
/// runner environment (wire.md §5); every variable is also a flag. Output:
/// one JSON object per line on stdout; logs on stderr.
#[derive(Debug, Parser)]
#[command(name = "ambient-runner-client", version)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a fresh API token: {"token", "expires_at", "source"}.
    Token,
    /// Push one message to the session; prints the stored message.
    Push(PushArgs),
    /// Print the session's messages after a seq, then every new one, each
    /// exactly once and in order, across reconnects and token refreshes.
    Watch(WatchArgs),
}

/// `push` arguments.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// Event type (anything but `user`, which the API refuses from a runner).
    #[arg(long, value_name = "T")]
    pub event_type: String,
    /// The payload: literal text, @FILE to read a file, or - for stdin.
    #[arg(long, value_name = "P|@FILE|-")]
    pub payload: String,
    /// Session to push to [default: --session-id].
    #[arg(long, value_name = "S")]
    pub session: Option<String>,
}

/// `watch` arguments.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Start after this seq (a restarted session gets RESUME_AFTER_SEQ).
    #[arg(long, value_name = "N", env = env::RESUME_AFTER_SEQ, default_value_t = 0)]
    pub after_seq: i64,
    /// Session to watch [default: --session-id].
    #[arg(long, value_name = "S")]
    pub session: Option<String>,
    /// Stop (exit 0) once the session is Stopped, Completed or Failed, or
    /// deleted, after printing what arrives within --drain-ms.
    #[arg(long)]
    pub until_phase_terminal: bool,
    /// With --until-phase-terminal: keep printing until no message came for
    /// this many milliseconds after the end was seen.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub drain_ms: u64,
}

/// The session a command acts on.
fn session_of(flag: Option<&String>, settings: &Settings) -> Result<String> {
    flag.cloned()
        .or_else(|| settings.session_id.clone())
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| anyhow!("no session: give --session or set {}", env::SESSION_ID))
}

/// Runs `command`; returns when it is done or `shutdown` resolves.
pub async fn run(
    command: Command,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let tokens = TokenSource::from_config(&settings.token)?;
    let result = tokio::select! {
        r = execute(command, &settings, &tokens) => r,
        () = shutdown => {
            tracing::info!("shutdown requested");
            Ok(())
        }
    };
    tokens.stop().await;
    result
}

async fn execute(command: Command, settings: &Settings, tokens: &TokenSource) -> Result<()> {
    let api = || {
        Api::new(
            &settings.grpc_url,
            settings.use_tls,
            settings.ca_file.as_deref(),
            tokens.clone(),
        )
    };
    match command {
        Command::Token => {
            let t = tokens.token().await?;
            print_line(&json!({
                "token": t.value.expose(),
                "expires_at": t.expires_at.map(format_rfc3339),
                "source": tokens.kind(),
            }))
        }
        Command::Push(args) => {
            let session = session_of(args.session.as_ref(), settings)?;
            let payload = read_payload(&args.payload)?;
            let messages = SessionMessages::new(api()?, session);
            let m = messages.push(&args.event_type, payload).await?;
            print_line(&message_json(&m))
        }
        Command::Watch(args) => {
            let session = session_of(args.session.as_ref(), settings)?;
            tokens.start().await?;
            watch(api()?, &session, &args).await
        }
    }
}

async fn watch(api: Api, session: &str, args: &WatchArgs) -> Result<()> {
    let messages = SessionMessages::new(api.clone(), session);
    let stream = messages.watch(args.after_seq);
    tokio::pin!(stream);
    let end = async {
        if args.until_phase_terminal {
            wait_terminal(&api, session).await
        } else {
            std::future::pending().await
        }
    };
    tokio::pin!(end);
    let drain = Duration::from_millis(args.drain_ms);
    let mut ended = false;
    let idle = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
    tokio::pin!(idle);
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(m)) => {
                    print_line(&message_json(&m))?;
                    if ended {
                        idle.as_mut().reset(tokio::time::Instant::now() + drain);
                    }
                }
                // After the end (or when the session is gone), the watch
                // failing is how it ends, not an error.
                Some(Err(_)) if ended => return Ok(()),
                Some(Err(WatchError::Refused(s)))
                    if args.until_phase_terminal && s.code() == tonic::Code::NotFound =>
                {
                    tracing::info!(session, "session deleted");
                    return Ok(());
                }
                Some(Err(e)) => bail!("{e}"),
                None => return Ok(()),
            },
            r = &mut end, if !ended => {
                match r? {
                    End::Phase(p) => tracing::info!(session, phase = %p, "session ended"),
                    End::Deleted => tracing::info!(session, "session deleted"),
                }
                ended = true;
                idle.as_mut().reset(tokio::time::Instant::now() + drain);
            }
            () = &mut idle, if ended => return Ok(()),
        }
    }
}

/// `-` is stdin, `@FILE` a file, anything else the payload itself.
fn read_payload(arg: &str) -> Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the payload from stdin")?;
        return Ok(s);
    }
    if let Some(path) = arg.strip_prefix('@') {
        let path = PathBuf::from(path);
        return std::fs::read_to_string(&path)
            .with_context(|| format!("reading the payload file {}", path.display()));
    }
    Ok(arg.to_owned())
}

/// A message as JSON, with the field names of the REST mapping.
pub fn message_json(m: &SessionMessage) -> Value {
    json!({
        "id": m.id,
        "session_id": m.session_id,
        "seq": m.seq,
        "event_type": m.event_type,
        "payload": m.payload,
        "created_at": m.created_at.as_ref().map(ToString::to_string),
    })
}

fn print_line(v: &Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}").and_then(|()| out.flush())?;
    Ok(())
}
