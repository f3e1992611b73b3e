//! MCP JSON-RPC framing on arbitrary bytes, both ways the bridges read it:
//! a client message (the legacy SSE `/message` body, a Streamable HTTP
//! POST) and a server message (a line of a child's stdout, read by the
//! credential bridge). Nothing may panic, and whatever is accepted
//! serialises to JSON that parses back to the same message (one line, so
//! the newline-delimited stdio framing cannot be split by it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<M: Serialize + DeserializeOwned>(data: &[u8]) {
    let Ok(message) = serde_json::from_slice::<M>(data) else {
        return;
    };
    let text = serde_json::to_string(&message).unwrap_or_else(|e| panic!("serialise: {e}"));
    assert!(!text.contains('\n'), "{text}");
    let again: M = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let text2 = serde_json::to_string(&again).unwrap_or_else(|e| panic!("serialise: {e}"));
    assert_eq!(text, text2);
}

fuzz_target!(|data: &[u8]| {
    round_trip::<ClientJsonRpcMessage>(data);
    round_trip::<ServerJsonRpcMessage>(data);
});
