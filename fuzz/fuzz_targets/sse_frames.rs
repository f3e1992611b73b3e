//! The SSE framing shared by every SSE consumer (`ambient_protocol::sse`) on arbitrary
//! bytes: nothing may panic, and where the network cuts the stream changes
//! nothing — the events of the stream delivered whole equal those of the
//! same bytes delivered in two chunks cut anywhere (the first input byte
//! picks the cut), even inside a character or a CRLF.
#![no_main]

use ambient_protocol::sse::{SseEvent, SseFrames};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let whole = SseFrames::default().push(stream);
    let cut = usize::from(cut).min(stream.len());
    let mut frames = SseFrames::default();
    let mut split = frames.push(&stream[..cut]);
    split.extend(frames.push(&stream[cut..]));
    assert_eq!(whole, split, "cut at {cut}");
    // Byte by byte, as a slow network would.
    let mut frames = SseFrames::default();
    let bytewise: Vec<SseEvent> = stream.iter().flat_map(|b| frames.push(&[*b])).collect();
    assert_eq!(whole, bytewise);
});
