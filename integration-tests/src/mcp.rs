//! A minimal MCP client over the two HTTP transports, written from the MCP
//! specification for tests of every MCP server we serve over HTTP
//! (ambient-mcp, the credential entrypoint's bridge): legacy SSE (GET /sse
//! → `endpoint` event, POST the messages there, replies on the stream) and
//! Streamable HTTP (POST /mcp, JSON or SSE answers, `Mcp-Session-Id`, a GET
//! stream for server-initiated messages). Messages from the server that are
//! not answers (notifications and requests) come out of [`McpClient::next_note`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ambient_protocol::sse::{SseEvent, SseFrames};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Which transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LegacySse,
    Streamable,
}

type Pending = Arc<std::sync::Mutex<HashMap<i64, oneshot::Sender<Value>>>>;

#[derive(Debug)]
pub struct McpClient {
    kind: Kind,
    base: String,
    http: reqwest::Client,
    endpoint: String,
    session: std::sync::Mutex<Option<String>>,
    pending: Pending,
    notes_tx: mpsc::UnboundedSender<Value>,
    notes: Mutex<mpsc::UnboundedReceiver<Value>>,
    next_id: AtomicI64,
    readers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    init: std::sync::Mutex<Value>,
}

impl Drop for McpClient {
    fn drop(&mut self) {
        if let Ok(readers) = self.readers.lock() {
            for r in readers.iter() {
                r.abort();
            }
        }
    }
}

/// Routes one JSON-RPC message from the server: a response to its waiter,
/// anything else to the notifications.
fn route(pending: &Pending, notes: &mpsc::UnboundedSender<Value>, msg: Value) {
    let is_response = msg.get("result").is_some() || msg.get("error").is_some();
    if is_response && let Some(id) = msg.get("id").and_then(Value::as_i64) {
        let waiter = pending.lock().ok().and_then(|mut p| p.remove(&id));
        if let Some(w) = waiter {
            let _ = w.send(msg);
        }
        return;
    }
    let _ = notes.send(msg);
}

/// Reads an SSE response, routing messages; the first `endpoint` event goes to `endpoint`.
async fn read_stream(
    mut resp: reqwest::Response,
    pending: Pending,
    notes: mpsc::UnboundedSender<Value>,
    mut endpoint: Option<oneshot::Sender<String>>,
) {
    let mut frames = SseFrames::default();
    while let Ok(Some(chunk)) = resp.chunk().await {
        for SseEvent { event, data } in frames.push(&chunk) {
            if event == "endpoint" {
                if let Some(tx) = endpoint.take() {
                    let _ = tx.send(data);
                }
                continue;
            }
            if let Ok(msg) = serde_json::from_str::<Value>(&data) {
                route(&pending, &notes, msg);
            }
        }
    }
}

impl McpClient {
    /// Connects and initialises.
    pub async fn connect(kind: Kind, addr: SocketAddr) -> Arc<McpClient> {
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        let mut readers = Vec::new();
        let endpoint = match kind {
            Kind::Streamable => format!("{base}/mcp"),
            Kind::LegacySse => {
                let resp = http
                    .get(format!("{base}/sse"))
                    .header("Accept", "text/event-stream")
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("GET /sse: {e}"));
                assert_eq!(resp.status().as_u16(), 200, "GET /sse");
                let (tx, rx) = oneshot::channel();
                readers.push(tokio::spawn(read_stream(
                    resp,
                    pending.clone(),
                    notes_tx.clone(),
                    Some(tx),
                )));
                let path = tokio::time::timeout(Duration::from_secs(10), rx)
                    .await
                    .unwrap_or_else(|_| panic!("no endpoint event"))
                    .unwrap_or_else(|_| panic!("stream closed before the endpoint event"));
                assert!(path.starts_with("/message?sessionId="), "endpoint {path}");
                format!("{base}{path}")
            }
        };
        let client = Arc::new(McpClient {
            kind,
            base,
            http,
            endpoint,
            session: std::sync::Mutex::new(None),
            pending,
            notes_tx,
            notes: Mutex::new(notes),
            next_id: AtomicI64::new(1),
            readers: std::sync::Mutex::new(readers),
            init: std::sync::Mutex::new(Value::Null),
        });
        let version = match kind {
            Kind::LegacySse => "2024-11-05",
            Kind::Streamable => "2025-03-26",
        };
        let init = client
            .request(
                "initialize",
                json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}),
            )
            .await;
        assert_eq!(init["result"]["protocolVersion"], version, "{init}");
        if let Ok(mut slot) = client.init.lock() {
            *slot = init["result"].clone();
        }
        client.notify("notifications/initialized", json!({})).await;
        if kind == Kind::Streamable {
            client.open_get_stream().await;
        }
        client
    }

    /// The MCP session ID (Streamable HTTP), or the legacy endpoint.
    pub fn session_id(&self) -> String {
        match self.kind {
            Kind::Streamable => self
                .session
                .lock()
                .ok()
                .and_then(|s| s.clone())
                .unwrap_or_default(),
            Kind::LegacySse => self.endpoint.clone(),
        }
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.endpoint)
            .header("Accept", "application/json, text/event-stream")
            .json(body);
        if self.kind == Kind::Streamable {
            req = req.header("MCP-Protocol-Version", "2025-03-26");
            if let Some(s) = self.session.lock().ok().and_then(|s| s.clone()) {
                req = req.header("Mcp-Session-Id", s);
            }
        }
        req
    }

    async fn open_get_stream(&self) {
        let mut req = self
            .http
            .get(&self.endpoint)
            .header("Accept", "text/event-stream")
            .header("MCP-Protocol-Version", "2025-03-26");
        if let Some(s) = self.session.lock().ok().and_then(|s| s.clone()) {
            req = req.header("Mcp-Session-Id", s);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("GET /mcp: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "GET /mcp stream");
        let reader = tokio::spawn(read_stream(
            resp,
            self.pending.clone(),
            self.notes_tx.clone(),
            None,
        ));
        if let Ok(mut r) = self.readers.lock() {
            r.push(reader);
        }
    }

    /// The server's `initialize` result.
    pub fn init_result(&self) -> Value {
        self.init.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Value) {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params});
        let resp = self
            .post(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(resp.status().as_u16(), 202, "{method}");
    }

    /// Answers a request the server sent (`id` as it came).
    pub async fn respond(&self, id: &Value, result: Value) {
        let body = json!({"jsonrpc": "2.0", "id": id, "result": result});
        let resp = self
            .post(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("answer to {id}: {e}"));
        assert_eq!(resp.status().as_u16(), 202, "answer to {id}");
    }

    /// Sends a request; returns the whole JSON-RPC response.
    pub async fn request(&self, method: &str, params: Value) -> Value {
        let id = self.next_id();
        self.request_as(id, method, params).await
    }

    /// A fresh request ID (for [`McpClient::request_as`]).
    pub fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request with ID `id`; returns the whole JSON-RPC response.
    pub async fn request_as(&self, id: i64, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        let resp = self
            .post(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        match self.kind {
            Kind::LegacySse => assert_eq!(resp.status().as_u16(), 202, "{method}"),
            Kind::Streamable => {
                assert_eq!(resp.status().as_u16(), 200, "{method}");
                if let Some(s) = resp
                    .headers()
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                    && let Ok(mut slot) = self.session.lock()
                {
                    *slot = Some(s.to_owned());
                }
                let is_sse = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|c| c.starts_with("text/event-stream"));
                if is_sse {
                    tokio::spawn(read_stream(
                        resp,
                        self.pending.clone(),
                        self.notes_tx.clone(),
                        None,
                    ));
                } else {
                    let msg: Value = resp
                        .json()
                        .await
                        .unwrap_or_else(|e| panic!("{method}: {e}"));
                    route(&self.pending, &self.notes_tx, msg);
                }
            }
        }
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("no answer to {method}"))
            .unwrap_or_else(|_| panic!("answer to {method} lost"))
    }

    /// The next server notification, waiting up to `wait`.
    pub async fn next_note(&self, wait: Duration) -> Option<Value> {
        let mut notes = self.notes.lock().await;
        tokio::time::timeout(wait, notes.recv())
            .await
            .ok()
            .flatten()
    }

    /// Closes a Streamable HTTP session (DELETE /mcp).
    pub async fn close(&self) {
        if self.kind == Kind::Streamable {
            let s = self.session_id();
            let _ = self
                .http
                .delete(&self.endpoint)
                .header("Mcp-Session-Id", s)
                .header("MCP-Protocol-Version", "2025-03-26")
                .send()
                .await;
        }
        if let Ok(readers) = self.readers.lock() {
            for r in readers.iter() {
                r.abort();
            }
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}
