//! Server-sent events framing, for every SSE consumer of the project (the
//! API's message stream in ambient-mcp, the legacy MCP SSE transport in the
//! demo runner and the tests): bytes in, as the network delivers them, and
//! every complete event out. Lines end at CRLF, LF or a lone CR; events end
//! at a blank line; `data:` lines are joined with `\n`; `event:` names the
//! event (`message` when absent); other fields and comments are ignored; an
//! event without data is not dispatched (the SSE rules). Bytes are kept
//! until their event is complete, so a chunk boundary inside a multi-byte
//! character (or inside a CRLF) changes nothing.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `message` when the event has none.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// The undelivered tail of a stream.
#[derive(Debug, Default)]
pub struct SseFrames {
    buffer: Vec<u8>,
}

impl SseFrames {
    /// Adds `chunk`; returns every event it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(chunk);
        self.buffer = normalize_line_ends(&self.buffer);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(len) = self.buffer[start..].windows(2).position(|w| w == b"\n\n") {
            if let Some(event) = event_of(&self.buffer[start..start + len]) {
                out.push(event);
            }
            start += len + 2;
        }
        self.buffer.drain(..start);
        out
    }

    /// Forgets a partial event (the stream was replaced).
    pub fn clear(&mut self) {
        self.buffer.clear();
    }
}

/// CRLF, LF and a lone CR all end a line (the SSE rule): each becomes LF.
/// A CR last in the buffer stays as it is, since the LF of a CRLF may come
/// in the next chunk; the next call decides.
fn normalize_line_ends(buffer: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buffer.len());
    let mut bytes = buffer.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if b != b'\r' {
            out.push(b);
            continue;
        }
        match bytes.peek() {
            None => out.push(b'\r'),
            Some(b'\n') => {}
            Some(_) => out.push(b'\n'),
        }
    }
    out
}

/// One event's block of lines, if it has data.
fn event_of(block: &[u8]) -> Option<SseEvent> {
    let mut event: Option<&[u8]> = None;
    let mut data: Vec<&[u8]> = Vec::new();
    for line in block.split(|&b| b == b'\n') {
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match field {
            b"data" => data.push(value),
            b"event" => event = Some(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    let event = match event {
        Some(name) if !name.is_empty() => String::from_utf8_lossy(name).into_owned(),
        _ => "message".to_owned(),
    };
    let data = String::from_utf8_lossy(&data.join(&b'\n')).into_owned();
    Some(SseEvent { event, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(events: Vec<SseEvent>) -> Vec<String> {
        events.into_iter().map(|e| e.data).collect()
    }

    #[test]
    fn events_are_named_message_unless_they_say_otherwise() {
        let mut f = SseFrames::default();
        let got = f.push(b"event: endpoint\ndata: /message?sessionId=1\n\ndata: {}\n\nevent:\ndata\n\nevent: x\n\n");
        let names: Vec<&str> = got.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, ["endpoint", "message", "message"]);
        assert_eq!(data(got), ["/message?sessionId=1", "{}", ""]);
    }

    #[test]
    fn events_split_and_the_partial_one_kept() {
        let mut f = SseFrames::default();
        let events = data(f.push(
            b"id: 1\ndata: {\"seq\":1}\n\n: ping\n\nid: 2\r\ndata: {\"seq\":2}\r\n\r\ndata: {\"se",
        ));
        assert_eq!(events, [r#"{"seq":1}"#, r#"{"seq":2}"#]);
        assert_eq!(f.push(b"q\":3}\r"), []);
        assert_eq!(data(f.push(b"\n\r\n")), [r#"{"seq":3}"#]);
        assert_eq!(data(f.push(b"data: a\ndata:b\n\n")), ["a\nb"]);
    }

    #[test]
    fn a_lone_cr_ends_a_line_however_the_bytes_arrive() {
        let stream = b"data: x\r\rdata: y\n\r\r\ndata: z\r\n\r\n";
        let mut whole = SseFrames::default();
        assert_eq!(data(whole.push(stream)), ["x", "y", "z"]);
        let mut bytewise = SseFrames::default();
        let got: Vec<String> = stream
            .iter()
            .flat_map(|b| data(bytewise.push(&[*b])))
            .collect();
        assert_eq!(got, ["x", "y", "z"]);
    }

    #[test]
    fn the_fuzzers_lone_cr_input_frames_alike_whole_cut_and_bytewise() {
        let stream: &[u8] = include_bytes!("../../../fuzz/seeds/sse_frames/regression-lone-cr");
        let whole = SseFrames::default().push(stream);
        for cut in 0..=stream.len() {
            let mut f = SseFrames::default();
            let mut split = f.push(&stream[..cut]);
            split.extend(f.push(&stream[cut..]));
            assert_eq!(split, whole, "cut at {cut}");
        }
        let mut f = SseFrames::default();
        let bytewise: Vec<SseEvent> = stream.iter().flat_map(|b| f.push(&[*b])).collect();
        assert_eq!(bytewise, whole);
    }

    #[test]
    fn a_character_split_across_chunks_arrives_whole() {
        let event = "data: {\"payload\":\"café ✓ 🚀\"}\n\n".as_bytes();
        for cut in 0..event.len() {
            let mut f = SseFrames::default();
            let mut got = f.push(&event[..cut]);
            got.extend(f.push(&event[cut..]));
            assert_eq!(data(got), [r#"{"payload":"café ✓ 🚀"}"#], "cut at {cut}");
        }
    }
}
