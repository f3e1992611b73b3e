//! A minimal MCP client over the legacy SSE transport: `GET <base>/sse`
//! yields an `endpoint` event naming where to POST JSON-RPC messages; the
//! answers arrive as `message` events on the stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

impl Drop for McpSession {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Splits complete events off `buffer`: (event name, data).
pub fn take_events(buffer: &mut String) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let mut event = "message".to_owned();
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d).to_owned());
            }
        }
        if !data.is_empty() {
            out.push((event, data.join("\n")));
        }
    }
    out
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
        let session = McpSession {
            http,
            endpoint,
            waiters,
            next_id: AtomicI64::new(1),
            reader,
        };
        session
            .request(
                "initialize",
                json!({
                    "protocolVersion": "2025-03-26",
                    "capabilities": {},
                    "clientInfo": {"name": "ambient-demo-runner", "version": env!("CARGO_PKG_VERSION")},
                }),
            )
            .await?;
        session
            .notify("notifications/initialized", json!({}))
            .await?;
        Ok(session)
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
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        for (event, data) in take_events(&mut buffer) {
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
    use super::*;

    #[test]
    fn events_split_on_blank_lines_and_keep_partial_ones() {
        let mut buf =
            "event: endpoint\ndata: /message?sessionId=1\n\ndata: {\"a\":1}\n\nda".to_owned();
        assert_eq!(
            take_events(&mut buf),
            vec![
                ("endpoint".to_owned(), "/message?sessionId=1".to_owned()),
                ("message".to_owned(), "{\"a\":1}".to_owned())
            ]
        );
        assert_eq!(buf, "da");
    }
}
