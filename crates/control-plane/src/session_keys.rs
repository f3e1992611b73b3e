//! Exchange v3 in the control plane (wire.md §3 "v3"): the roots every
//! replica verifies with ([`V3Roots`], shared with the embedded token
//! server), and each session pod's key file `K_s`, derived for the pod's
//! generation under the current root. The runtime writes it where only the
//! containers that exchange tokens read it (a read-only 0444 mount of the
//! session's Secret on Kubernetes, a 0600 file in the session directory in
//! the process runtime) before the pod starts, and rewrites it after a root
//! rotation, while the previous root still verifies.
//!
//! The generation names one pod of a session: the control plane picks it
//! (random) when it creates the pod ([`crate::names::ANNOTATION_GENERATION`];
//! the process runtime's pod request time), and the same value is the
//! binding's generation and the session tokens' `gen`.

use ambient_protocol::Secret;
pub use ambient_token_server::V3Roots;

/// The key file (JSON) of `session_id`'s pod `generation` under the current
/// root; `None` without roots.
pub fn key_file(roots: &V3Roots, session_id: &str, generation: &str) -> Option<Secret> {
    Some(roots.get()?.key_file(session_id, generation).to_json())
}
