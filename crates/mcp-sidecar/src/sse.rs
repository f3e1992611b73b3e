//! Server-sent events framing for the devserver's message stream: bytes
//! in, as the network delivers them, and the `data` of every complete event
//! out. Lines end at CRLF, LF or a lone CR; events end at a blank line; `data:` lines
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
        self.buffer = normalize_line_ends(&self.buffer);
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
    fn a_lone_cr_ends_a_line_however_the_bytes_arrive() {
        let stream = b"data: x\r\rdata: y\n\r\r\ndata: z\r\n\r\n";
        let mut whole = SseFrames::default();
        assert_eq!(whole.push(stream), ["x", "y", "z"]);
        let mut bytewise = SseFrames::default();
        let got: Vec<String> = stream.iter().flat_map(|b| bytewise.push(&[*b])).collect();
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
        let bytewise: Vec<String> = stream.iter().flat_map(|b| f.push(&[*b])).collect();
        assert_eq!(bytewise, whole);
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
