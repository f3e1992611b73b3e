//! A minimal MCP client over the legacy SSE transport: `GET <base>/sse`
//! yields an `endpoint` event naming where to POST JSON-RPC messages; the
//! answers arrive as `message` events on the stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ambient_protocol::sse::{SseEvent, SseFrames};
use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::sync::oneshot;

type Waiters = Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>>;

/// One MCP session over legacy SSE.
#[derive(Debug)]
pub struct McpSession {
    http: reqwest::Client,
    endpoint: String,
    waiters: Waiters,
    next_id: AtomicI64,
    reader: tokio::task::JoinHandle<()>,
    /// The `serverInfo.name` the server gave at `initialize`.
    server: String,
}

impl Drop for McpSession {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl McpSession {
    /// Connects to `<base>/sse` (retrying until `wait` passes, as a runner
    /// waits for a sidecar's port) and initialises the session.
    pub async fn connect(base: &str, wait: Duration) -> Result<McpSession> {
        let base = base.trim_end_matches('/');
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let deadline = Instant::now() + wait;
        let resp = loop {
            match http
                .get(format!("{base}/sse"))
                .header("Accept", "text/event-stream")
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => break r,
                Ok(r) if Instant::now() > deadline => bail!("GET {base}/sse: {}", r.status()),
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("GET {base}/sse"));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let waiters: Waiters = Arc::default();
        let (endpoint_tx, endpoint_rx) = oneshot::channel();
        let reader = tokio::spawn(read(resp, waiters.clone(), endpoint_tx));
        let path = tokio::time::timeout(CALL_TIMEOUT, endpoint_rx)
            .await
            .context("no endpoint event on the SSE stream")?
            .context("the SSE stream ended before its endpoint event")?;
        let endpoint = if path.starts_with("http://") || path.starts_with("https://") {
            path
        } else {
            let origin = reqwest::Url::parse(base)?;
            origin.join(&path)?.to_string()
        };
        let mut session = McpSession {
            http,
            endpoint,
            waiters,
            next_id: AtomicI64::new(1),
            reader,
            server: String::new(),
        };
        let init = session
            .request(
                "initialize",
                json!({
                    "protocolVersion": "2025-03-26",
                    "capabilities": {},
                    "clientInfo": {"name": "ambient-demo-runner", "version": env!("CARGO_PKG_VERSION")},
                }),
            )
            .await?;
        session.server = init
            .pointer("/serverInfo/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        session
            .notify("notifications/initialized", json!({}))
            .await?;
        Ok(session)
    }

    /// The server's name (`serverInfo.name` of `initialize`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The names of the server's tools (`tools/list`, every page).
    pub async fn tool_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let page = self.request("tools/list", params).await?;
            names.extend(
                page.get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.get("name").and_then(Value::as_str).map(String::from)),
            );
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
                _ => return Ok(names),
            }
        }
    }

    async fn post(&self, msg: &Value) -> Result<()> {
        let resp = self
            .http
            .post(&self.endpoint)
            .json(msg)
            .send()
            .await
            .context("POST to the MCP endpoint")?;
        if !resp.status().is_success() {
            bail!("the MCP endpoint answered {}", resp.status());
        }
        Ok(())
    }

    async fn notify(&self, method: &str, params: Value) -> Result<()> {
        self.post(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await
    }

    /// Sends a request and waits for its result.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            w.insert(id, tx);
        }
        self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, rx)
            .await
            .with_context(|| format!("no answer to {method}"))?
            .map_err(|_| anyhow!("the SSE stream ended before the answer to {method}"))?;
        if let Some(err) = answer.get("error") {
            bail!("{method} failed: {err}");
        }
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }

    /// Calls a tool; the text of its result (an `isError` result is an error).
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<String> {
        let result = self
            .request("tools/call", json!({"name": name, "arguments": arguments}))
            .await?;
        let text: Vec<&str> = result
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("text").and_then(Value::as_str))
            .collect();
        let text = text.join("\n");
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            bail!("tool {name} failed: {text}");
        }
        Ok(text)
    }
}

async fn read(mut resp: reqwest::Response, waiters: Waiters, endpoint: oneshot::Sender<String>) {
    let mut endpoint = Some(endpoint);
    let mut frames = SseFrames::default();
    while let Ok(Some(chunk)) = resp.chunk().await {
        for SseEvent { event, data } in frames.push(&chunk) {
            if event == "endpoint" {
                if let Some(tx) = endpoint.take() {
                    let _ = tx.send(data);
                }
                continue;
            }
            let Ok(msg) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            let waiter = msg
                .get("id")
                .and_then(Value::as_i64)
                .and_then(|id| waiters.lock().ok()?.remove(&id));
            if let Some(w) = waiter {
                let _ = w.send(msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    use super::*;

    /// Reads one HTTP/1.1 request: its first line and its body.
    async fn request(conn: &mut TcpStream) -> (String, Vec<u8>) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        let _ = conn.read_exact(&mut body).await;
        (head.lines().next().unwrap_or_default().to_owned(), body)
    }

    /// Writes `bytes` one per TCP segment, as a slow network delivers them.
    async fn dribble(conn: &mut TcpStream, bytes: &[u8]) {
        for b in bytes {
            let _ = conn.write_all(&[*b]).await;
            let _ = conn.flush().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A legacy-SSE MCP server that answers every request with `text` as a
    /// tool result, writing its stream byte by byte.
    async fn dribbling_server(text: &'static str) -> Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (ids_tx, ids_rx) = mpsc::unbounded_channel::<Value>();
        let mut ids_rx = Some(ids_rx);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let _ = conn.set_nodelay(true);
                let (line, body) = request(&mut conn).await;
                if line.starts_with("GET /sse") {
                    let Some(mut ids) = ids_rx.take() else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                        let _ = conn.write_all(head.as_bytes()).await;
                        dribble(
                            &mut conn,
                            b"event: endpoint\r\ndata: /message?sessionId=1\r\n\r\n",
                        )
                        .await;
                        while let Some(id) = ids.recv().await {
                            let answer = json!({"jsonrpc": "2.0", "id": id,
                                "result": {"content": [{"type": "text", "text": text}]}});
                            dribble(&mut conn, format!("data: {answer}\r\n\r\n").as_bytes()).await;
                        }
                    });
                    continue;
                }
                if let Ok(msg) = serde_json::from_slice::<Value>(&body)
                    && let Some(id) = msg.get("id")
                {
                    let _ = ids_tx.send(id.clone());
                }
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            }
        });
        Ok(format!("http://{addr}"))
    }

    #[tokio::test]
    async fn a_character_cut_by_the_network_arrives_whole() -> Result<()> {
        let text = "café ✓ — 🚀";
        let base = dribbling_server(text).await?;
        let session = McpSession::connect(&base, Duration::from_secs(5)).await?;
        let got = session.call_tool("get_session", json!({})).await?;
        assert_eq!(got, text);
        Ok(())
    }
}
