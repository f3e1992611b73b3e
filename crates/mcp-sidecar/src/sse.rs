//! Server-sent events framing for the devserver's message stream: bytes
//! in, as the network delivers them, and the `data` of every complete event
//! out. Events end at a blank line (`\n\n`, CRLF accepted); `data:` lines
//! are joined with `\n`; other fields and comments are ignored. Bytes are
//! kept until their event is complete, so a chunk boundary inside a
//! multi-byte character (or inside a CRLF) changes nothing.

/// The undelivered tail of a stream.
#[derive(Debug, Default)]
pub struct SseFrames {
    buffer: Vec<u8>,
}

impl SseFrames {
    /// Adds `chunk`; returns the `data` of every event it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(chunk);
        // CRLF → LF; a CR last in the buffer waits for its LF.
        let mut normalized = Vec::with_capacity(self.buffer.len());
        for (i, &b) in self.buffer.iter().enumerate() {
            if b != b'\r' || self.buffer.get(i + 1) != Some(&b'\n') {
                normalized.push(b);
            }
        }
        self.buffer = normalized;
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(len) = self.buffer[start..].windows(2).position(|w| w == b"\n\n") {
            if let Some(data) = data_of(&self.buffer[start..start + len]) {
                out.push(data);
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

/// The joined `data:` lines of one event, if it has any.
fn data_of(block: &[u8]) -> Option<String> {
    let lines: Vec<&[u8]> = block
        .split(|&b| b == b'\n')
        .filter_map(|l| l.strip_prefix(b"data:"))
        .map(|d| d.strip_prefix(b" ").unwrap_or(d))
        .collect();
    (!lines.is_empty()).then(|| String::from_utf8_lossy(&lines.join(&b'\n')).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_and_the_partial_one_kept() {
        let mut f = SseFrames::default();
        let events = f.push(
            b"id: 1\ndata: {\"seq\":1}\n\n: ping\n\nid: 2\r\ndata: {\"seq\":2}\r\n\r\ndata: {\"se",
        );
        assert_eq!(events, [r#"{"seq":1}"#, r#"{"seq":2}"#]);
        assert_eq!(f.push(b"q\":3}\r"), Vec::<String>::new());
        assert_eq!(f.push(b"\n\r\n"), [r#"{"seq":3}"#]);
        assert_eq!(f.push(b"data: a\ndata:b\n\n"), ["a\nb"]);
    }

    #[test]
    fn a_character_split_across_chunks_arrives_whole() {
        let event = "data: {\"payload\":\"café ✓ 🚀\"}\n\n".as_bytes();
        for cut in 0..event.len() {
            let mut f = SseFrames::default();
            let mut got = f.push(&event[..cut]);
            got.extend(f.push(&event[cut..]));
            assert_eq!(got, [r#"{"payload":"café ✓ 🚀"}"#], "cut at {cut}");
        }
    }
}
