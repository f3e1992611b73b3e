//! The credential entrypoint's provider mapping (wire.md §5) on arbitrary
//! credential JSON, for every provider: nothing may panic; files go only to
//! the kubeconfig path or inside the private directory; variable names are
//! the fixed upper-case names; and a delivery is never empty.
#![no_main]

use std::path::PathBuf;

use ambient_protocol::provider::Provider;
use credential_entrypoint::fetch::Credential;
use credential_entrypoint::mapping::{Paths, map};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(fields) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    let cred = Credential(fields);
    let paths = Paths {
        kubeconfig: PathBuf::from("/home/user/.kube/config"),
        private_dir: PathBuf::from("/run/credentials"),
    };
    for provider in Provider::ALL {
        let Ok(delivery) = map(provider, &cred, &paths) else {
            continue;
        };
        for path in delivery.files.keys() {
            assert!(
                *path == paths.kubeconfig
                    || (path.starts_with(&paths.private_dir)
                        && path.parent() == Some(paths.private_dir.as_path())),
                "{path:?}"
            );
        }
        for name in delivery.env.keys().chain(delivery.defaults.keys()) {
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{name:?}"
            );
        }
        assert!(
            !delivery.env.is_empty() || !delivery.files.is_empty(),
            "{provider:?} delivered nothing"
        );
    }
});
