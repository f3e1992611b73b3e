//! What `ambient-session-probe` does: it stands in for an agent that tries
//! calls it should not be able to make. Run as a session's runner (the
//! process runtime), it takes its session token from the exchange as every
//! runner does, then runs the cells of `PROBE_CELLS` (a JSON array) with it
//! and prints one line per cell, `probe: {"name", "ok", "status"}`; the
//! test that wrote the cells decides which may succeed. It prints
//! `probe: done` at the end, then waits for SIGTERM when `PROBE_HOLD=1`.
//!
//! It never prints a token: `probe: token {"jwt", "sha256"}` says whether
//! the token it got is a JWT and gives its SHA-256, so a test can tell it
//! from the control plane's token without either being shown.
//!
//! A cell is one of:
//! - `{"name", "rest": [METHOD, PATH], "body"?: JSON}`: PATH is appended to
//!   `BACKEND_API_URL`; `ok` when the answer is 2xx (a stream: its head);
//! - `{"name", "grpc": RPC, "session"?}`: one `ambient.v1` call on that
//!   session (its own without `session`) (`GetSession`, `ListSessions`, `PushSessionMessage`,
//!   `WatchSessionMessages`, `WatchSessions`, `UpdateSessionStatus`,
//!   `DeleteSession`, `ListProjects`; the status update writes
//!   `sdk_session_id`, or the cell's `phase`);
//!   `ok` when it answered OK (a stream:
//!   when it opened);
//! - `{"name", "exchange_as": SESSION_ID}`: a token exchange claiming
//!   another session, from this process;
//! - `{"name", "exchange_v3": PATH|null, "rest"?: [METHOD, PATH]}`: an
//!   exchange v3 (wire.md §3) with the session key file at PATH (null:
//!   `AMBIENT_SESSION_KEY_FILE`), then, when it answered 200 and `rest` is
//!   given, that call with the token it got; `status` is the exchange's
//!   status (and the call's, after a `/`).

use std::time::Duration;

use ambient_protocol::Secret;
use ambient_protocol::v1::project_service_client::ProjectServiceClient;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use ambient_protocol::v1::{
    DeleteSessionRequest, GetSessionRequest, ListProjectsRequest, ListSessionsRequest,
    PushSessionMessageRequest, UpdateSessionStatusRequest, WatchSessionMessagesRequest,
    WatchSessionsRequest,
};
use ambient_runner_client::config::Config;
use ambient_runner_client::{Api, CallError, TokenSource};
use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

fn say(line: &str) {
    println!("probe: {line}");
}

/// Runs the probe.
pub async fn run(config: Config) -> Result<()> {
    let settings = config.validate()?;
    let session_id = settings
        .session_id
        .clone()
        .context("SESSION_ID is not set")?;
    let tokens = TokenSource::from_config(&settings.token)?;
    let first = tokens.start().await.context("fetching the session token")?;
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, first.value.expose().as_bytes());
    let sha256: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let jwt = first.value.expose().split('.').count() == 3;
    say(&format!("token {}", json!({"jwt": jwt, "sha256": sha256})));
    let api = Api::new(
        &settings.grpc_url,
        settings.use_tls,
        settings.ca_file.as_deref(),
        tokens.clone(),
    )?;
    let base = std::env::var("BACKEND_API_URL").context("BACKEND_API_URL is not set")?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let cells: Vec<Value> =
        serde_json::from_str(&std::env::var("PROBE_CELLS").context("PROBE_CELLS is not set")?)
            .context("PROBE_CELLS is not a JSON array")?;
    for cell in &cells {
        let name = cell["name"].as_str().unwrap_or("?").to_owned();
        let token = tokens.token().await?.value;
        let (ok, status) = if let Some(file) = cell.get("exchange_v3") {
            let then = cell["rest"].as_array().map(|r| (&http, base.as_str(), r));
            exchange_v3_cell(&settings.token, file.as_str(), then).await?
        } else if let Some(rest) = cell["rest"].as_array() {
            rest_cell(&http, &base, &token, rest, cell.get("body")).await?
        } else if let Some(rpc) = cell["grpc"].as_str() {
            let session = cell["session"].as_str().unwrap_or(&session_id);
            grpc_cell(&api, rpc, session, cell["phase"].as_str()).await?
        } else if let Some(other) = cell["exchange_as"].as_str() {
            exchange_cell(&settings.token, other).await
        } else {
            bail!("cell {name}: no rest, grpc or exchange_as");
        };
        say(&json!({"name": name, "ok": ok, "status": status}).to_string());
    }
    say("done");
    if std::env::var("PROBE_HOLD").is_ok_and(|v| v == "1") {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        term.recv().await;
    }
    tokens.stop().await;
    Ok(())
}

async fn rest_cell(
    http: &reqwest::Client,
    base: &str,
    token: &Secret,
    rest: &[Value],
    body: Option<&Value>,
) -> Result<(bool, String)> {
    let (Some(method), Some(path)) = (
        rest.first().and_then(Value::as_str),
        rest.get(1).and_then(Value::as_str),
    ) else {
        bail!("a rest cell is [METHOD, PATH]");
    };
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut req = http
        .request(method, format!("{}{path}", base.trim_end_matches('/')))
        .bearer_auth(token.expose());
    if let Some(body) = body {
        req = req.json(body);
    }
    Ok(match req.send().await {
        Ok(resp) => (
            resp.status().is_success(),
            resp.status().as_u16().to_string(),
        ),
        Err(e) => (false, format!("error: {e}")),
    })
}

fn outcome<T>(result: Result<T, CallError>) -> (bool, String) {
    match result {
        Ok(_) => (true, "OK".into()),
        Err(CallError::Status(s)) => (false, format!("{:?}", s.code())),
        Err(e) => (false, format!("error: {e}")),
    }
}

async fn grpc_cell(
    api: &Api,
    rpc: &str,
    session: &str,
    phase: Option<&str>,
) -> Result<(bool, String)> {
    let id = session.to_owned();
    let sessions = |ch| SessionServiceClient::new(ch);
    Ok(match rpc {
        "GetSession" => outcome(
            api.unary(GetSessionRequest { id }, |ch, r| async move {
                sessions(ch).get_session(r).await
            })
            .await,
        ),
        "ListSessions" => outcome(
            api.unary(ListSessionsRequest::default(), |ch, r| async move {
                sessions(ch).list_sessions(r).await
            })
            .await,
        ),
        "PushSessionMessage" => outcome(
            api.unary(
                PushSessionMessageRequest {
                    session_id: id,
                    event_type: "assistant".into(),
                    payload: "probe".into(),
                },
                |ch, r| async move { sessions(ch).push_session_message(r).await },
            )
            .await,
        ),
        "WatchSessionMessages" => outcome(
            api.open_stream(
                WatchSessionMessagesRequest {
                    session_id: id,
                    after_seq: 0,
                },
                |ch, r| async move { sessions(ch).watch_session_messages(r).await },
            )
            .await,
        ),
        "WatchSessions" => outcome(
            api.open_stream(WatchSessionsRequest::default(), |ch, r| async move {
                sessions(ch).watch_sessions(r).await
            })
            .await,
        ),
        "UpdateSessionStatus" => outcome(
            api.unary(
                UpdateSessionStatusRequest {
                    id,
                    sdk_session_id: phase.is_none().then(|| "probe".to_owned()),
                    phase: phase.map(str::to_owned),
                    ..UpdateSessionStatusRequest::default()
                },
                |ch, r| async move { sessions(ch).update_session_status(r).await },
            )
            .await,
        ),
        "DeleteSession" => outcome(
            api.unary(DeleteSessionRequest { id }, |ch, r| async move {
                sessions(ch).delete_session(r).await
            })
            .await,
        ),
        "ListProjects" => outcome(
            api.unary(ListProjectsRequest::default(), |ch, r| async move {
                ProjectServiceClient::new(ch).list_projects(r).await
            })
            .await,
        ),
        other => bail!("unknown rpc {other}"),
    })
}

/// An exchange v3 with the key file at `file` (else the session's own),
/// then `then`'s call with the token it got.
async fn exchange_v3_cell(
    config: &ambient_runner_client::config::TokenConfig,
    file: Option<&str>,
    then: Option<(&reqwest::Client, &str, &Vec<Value>)>,
) -> Result<(bool, String)> {
    use ambient_protocol::exchange::v3::SessionKeyFile;
    use ambient_runner_client::config::TokenConfig;
    let TokenConfig::Exchange { url, .. } = config else {
        return Ok((false, "no exchange configured".into()));
    };
    let path = match file {
        Some(f) => f.to_owned(),
        None => std::env::var(ambient_protocol::env::AMBIENT_SESSION_KEY_FILE)
            .context("AMBIENT_SESSION_KEY_FILE is not set")?,
    };
    let key = match SessionKeyFile::read(std::path::Path::new(&path)) {
        Ok(k) => k,
        Err(e) => return Ok((false, format!("error: {e}"))),
    };
    let url = reqwest::Url::parse(url.as_str()).context("token URL")?;
    let header = key.authorization("GET", url.path(), std::time::SystemTime::now())?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let resp = match http
        .get(url.clone())
        .header(reqwest::header::AUTHORIZATION, header)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Ok((false, format!("error: {e}"))),
    };
    let status = resp.status();
    if !status.is_success() {
        return Ok((false, status.as_u16().to_string()));
    }
    let body: Value = resp.json().await.context("the exchange's answer")?;
    let token = Secret::new(body["token"].as_str().unwrap_or_default().to_owned());
    let Some((http, base, rest)) = then else {
        return Ok((true, "200".into()));
    };
    let (ok, call) = rest_cell(http, base, &token, rest, None).await?;
    Ok((ok, format!("200/{call}")))
}

/// An exchange claiming `other` from this process: its status code.
async fn exchange_cell(
    config: &ambient_runner_client::config::TokenConfig,
    other: &str,
) -> (bool, String) {
    use ambient_protocol::exchanger::{ExchangeError, ExchangerConfig, TokenExchanger};
    use ambient_runner_client::config::TokenConfig;
    let TokenConfig::Exchange {
        url,
        public_key,
        protocol,
        ..
    } = config
    else {
        return (false, "no exchange configured".into());
    };
    let mut claimed = ExchangerConfig::new(url, public_key.clone(), other);
    claimed.protocol = *protocol;
    claimed.retry_waits = Vec::new();
    let exchanger = match TokenExchanger::new(claimed) {
        Ok(x) => x,
        Err(e) => return (false, format!("error: {e}")),
    };
    match exchanger.fetch().await {
        Ok(_) => (true, "200".into()),
        Err(ExchangeError::Status { status, .. }) => (false, status.to_string()),
        Err(e) => (false, format!("error: {e}")),
    }
}
