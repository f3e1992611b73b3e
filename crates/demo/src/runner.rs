//! What `ambient-demo-runner` does, configured by the runner environment of
//! a session pod (wire.md §5):
//!
//! 1. fetches its API token (the control plane's exchange) and pushes a
//!    few `assistant` messages to its session;
//! 2. connects to `AMBIENT_MCP_URL` over SSE and calls `get_session` and
//!    `push_message`;
//! 3. connects to every credential sidecar of `CREDENTIAL_MCP_URLS`
//!    (`<url>/sse`), calls its `report` tool and shows a fingerprint of the
//!    credential its command received — never the credential; a sidecar
//!    running a real third-party server (no `report` tool) has its server
//!    name and tools shown instead;
//! 4. exits 0. With `DEMO_RUNNER_HOLD=1` it first waits for a `user`
//!    message `exit` (or SIGTERM), after `RESUME_AFTER_SEQ` when the
//!    session was started again (an `exit` of the last run does not count
//!    twice); with `DEMO_RUNNER_WATCH_CREDENTIALS=1`
//!    it meanwhile pushes a message whenever a credential's fingerprint
//!    changes (a rotation reaching the sidecar's command).

use std::collections::BTreeMap;
use std::time::Duration;

use ambient_protocol::provider::Provider;
use ambient_runner_client::config::Config;
use ambient_runner_client::{Api, SessionMessages, TokenSource};
use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::proof::{fingerprint, secret_variable};
use crate::sse::McpSession;

/// How long a sidecar's port is waited for (as the reference runner does).
const SIDECAR_WAIT: Duration = Duration::from_secs(60);

fn say(line: &str) {
    println!("demo-runner: {line}");
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v == "true")
}

/// Runs the demo runner.
pub async fn run(config: Config) -> Result<()> {
    let settings = config.validate()?;
    let session_id = settings
        .session_id
        .clone()
        .context("SESSION_ID is not set")?;
    let tokens = TokenSource::from_config(&settings.token)?;
    let first = tokens.start().await.context("fetching the API token")?;
    let ttl = first
        .expires_at
        .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
        .map_or("no expiry".to_owned(), |d| {
            format!("valid {} s", d.as_secs())
        });
    say(&format!("API token fetched ({}, {ttl})", tokens.kind()));
    let api = Api::new(
        &settings.grpc_url,
        settings.use_tls,
        settings.ca_file.as_deref(),
        tokens.clone(),
    )?;
    let messages = SessionMessages::new(api, session_id.clone());
    let push = |text: String| {
        let messages = messages.clone();
        async move {
            say(&text);
            messages
                .push("assistant", &text)
                .await
                .map(|_| ())
                .context("pushing a message")
        }
    };
    push(format!(
        "Hello from the demo runner of session {session_id}: my API token came from the {} source.",
        tokens.kind()
    ))
    .await?;
    if let Ok(url) = std::env::var("AMBIENT_MCP_URL") {
        platform_tools(&url, &session_id, &push).await?;
    }
    let sidecars = credential_sidecars()?;
    let mut seen = BTreeMap::new();
    for (provider, url) in &sidecars {
        let mcp = McpSession::connect(url, SIDECAR_WAIT)
            .await
            .with_context(|| format!("connecting to the {provider} credential sidecar"))?;
        let tools = mcp.tool_names().await?;
        if !tools.iter().any(|t| t == "report") {
            push(format!(
                "credential {provider} sidecar serves {} with {} tools: {}",
                mcp.server(),
                tools.len(),
                tools.join(", ")
            ))
            .await?;
            continue;
        }
        let print = credential_print(&mcp, *provider).await?;
        push(format!(
            "credential {provider} arrived: its MCP server got {} = {print}",
            secret_variable(*provider)
        ))
        .await?;
        seen.insert(*provider, (mcp, print));
    }
    if flag("DEMO_RUNNER_HOLD") {
        hold(&messages, &mut seen, &sidecars, &push).await?;
    }
    push("Done: every step worked.".into()).await?;
    tokens.stop().await;
    Ok(())
}

async fn platform_tools<F, Fut>(url: &str, session_id: &str, push: &F) -> Result<()>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mcp = McpSession::connect(url, SIDECAR_WAIT)
        .await
        .context("connecting to ambient-mcp")?;
    let text = mcp
        .call_tool("get_session", json!({"session_id": session_id}))
        .await?;
    let session: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    push(format!(
        "ambient-mcp get_session: name {:?}, phase {}",
        session.get("name").and_then(Value::as_str).unwrap_or(""),
        session.get("phase").and_then(Value::as_str).unwrap_or("?")
    ))
    .await?;
    mcp.call_tool(
        "push_message",
        json!({"session_id": session_id, "text": "hello through ambient-mcp's push_message"}),
    )
    .await?;
    push("ambient-mcp push_message: stored".into()).await
}

/// Provider → sidecar base URL, from `CREDENTIAL_MCP_URLS`.
fn credential_sidecars() -> Result<BTreeMap<Provider, String>> {
    let Ok(raw) = std::env::var("CREDENTIAL_MCP_URLS") else {
        return Ok(BTreeMap::new());
    };
    let urls: BTreeMap<String, String> =
        serde_json::from_str(&raw).context("CREDENTIAL_MCP_URLS is not a JSON object")?;
    urls.into_iter()
        .map(|(p, url)| {
            Provider::parse(&p)
                .map(|p| (p, url))
                .map_err(|_| anyhow::anyhow!("CREDENTIAL_MCP_URLS names unknown provider {p:?}"))
        })
        .collect()
}

/// The fingerprint of the credential the sidecar's command received (its
/// `report` tool lists its environment and the files it points at).
async fn credential_print(mcp: &McpSession, provider: Provider) -> Result<String> {
    let text = mcp.call_tool("report", json!({})).await?;
    let report: Value = serde_json::from_str(&text).context("report is not JSON")?;
    let var = secret_variable(provider);
    let Some(value) = report
        .pointer(&format!("/env/{var}"))
        .and_then(Value::as_str)
    else {
        bail!("the {provider} sidecar's command did not get {var}");
    };
    // A file credential (kubeconfig): the file's content is the secret.
    let secret = report
        .get("files")
        .and_then(|f| f.get(value))
        .and_then(Value::as_str)
        .unwrap_or(value);
    Ok(fingerprint(secret))
}

type Seen = BTreeMap<Provider, (McpSession, String)>;

/// Waits for a `user` message `exit` (or SIGTERM), meanwhile reporting
/// credential changes when asked to.
async fn hold<F, Fut>(
    messages: &SessionMessages,
    seen: &mut Seen,
    sidecars: &BTreeMap<Provider, String>,
    push: &F,
) -> Result<()>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let after = std::env::var(ambient_protocol::env::RESUME_AFTER_SEQ)
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    say(&format!(
        "holding until a user message \"exit\" (or SIGTERM), watching messages after seq {after}"
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut watch = Box::pin(messages.watch(after));
    let watching = flag("DEMO_RUNNER_WATCH_CREDENTIALS");
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            _ = term.recv() => {
                say("SIGTERM: exiting");
                return Ok(());
            }
            m = watch.next() => match m {
                Some(Ok(m)) if m.event_type == "user" && m.payload.trim() == "exit" => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("watching messages: {e}"),
                None => bail!("the message watch ended"),
            },
            _ = tick.tick(), if watching => {
                for (provider, url) in sidecars {
                    let print = match seen.get(provider) {
                        Some((mcp, _)) => credential_print(mcp, *provider).await,
                        None => Err(anyhow::anyhow!("not connected")),
                    };
                    let print = match print {
                        Ok(p) => p,
                        // The sidecar restarted its command: a new session.
                        Err(_) => match McpSession::connect(url, Duration::from_secs(5)).await {
                            Ok(mcp) => {
                                let p = credential_print(&mcp, *provider).await?;
                                seen.insert(*provider, (mcp, String::new()));
                                p
                            }
                            Err(_) => continue,
                        },
                    };
                    if let Some((_, last)) = seen.get_mut(provider)
                        && *last != print
                    {
                        *last = print.clone();
                        push(format!("credential {provider} changed: now {print}")).await?;
                    }
                }
            }
        }
    }
}
