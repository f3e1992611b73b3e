//! Which session a connection comes from, on Kubernetes (wire.md §3): the
//! source address must be the claimed session's pod IP, as the pod
//! reflector knows it. A pod that has no IP yet, or that is not running,
//! cannot have called: the client retries.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::names;
use crate::runtime::{Caller, PodFacts};

/// Whether a connection from `peer` comes from session `session_id`'s pod
/// among `pods` (the managed pods).
pub fn pod_caller<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    session_id: &str,
    peer: IpAddr,
) -> Caller {
    let peer = peer.to_canonical();
    // A pod of the session that could not have called yet (no IP, not
    // running): a caller that matches nothing may be it, a moment early.
    let mut unready = false;
    for pod in pods {
        if pod
            .labels()
            .get(names::LABEL_SESSION_ID)
            .map(String::as_str)
            != Some(session_id)
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let Some(status) = &pod.status else {
            unready = true;
            continue;
        };
        let ips = status
            .pod_ips
            .iter()
            .flatten()
            .map(|ip| ip.ip.as_str())
            .chain(status.pod_ip.as_deref());
        let matches = ips
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .any(|ip| ip.to_canonical() == peer);
        let running = status.phase.as_deref() == Some("Running");
        if matches && running {
            return Caller::Member(PodFacts::of(pod, names::pod_generation(pod)));
        }
        unready |= !running || status.pod_ip.is_none();
    }
    if unready {
        Caller::NotYet
    } else {
        Caller::Stranger
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodIP, PodStatus};
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn pod(session: &str, uid: &str, ip: Option<&str>, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("session-{session}")),
                uid: Some(uid.into()),
                labels: Some(BTreeMap::from([(
                    names::LABEL_SESSION_ID.to_owned(),
                    session.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                pod_ip: ip.map(str::to_owned),
                pod_ips: ip.map(|ip| vec![PodIP { ip: ip.into() }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn only_the_sessions_own_running_pod_ip_is_a_member() {
        let member = |c: Caller| match c {
            Caller::Member(f) => Caller::Member(PodFacts {
                generation: f.generation,
                ..PodFacts::default()
            }),
            other => other,
        };
        let pods = [
            pod("aaaaaaaa", "uid-a", Some("10.0.0.1"), "Running"),
            pod("bbbbbbbb", "uid-b", Some("10.0.0.2"), "Running"),
        ];
        assert_eq!(
            member(pod_caller(&pods, "aaaaaaaa", ip("10.0.0.1"))),
            Caller::Member(PodFacts {
                generation: "uid-a".into(),
                ..PodFacts::default()
            })
        );
        // Another session's pod claiming a's ID.
        assert_eq!(
            pod_caller(&pods, "aaaaaaaa", ip("10.0.0.2")),
            Caller::Stranger
        );
        // An IPv4-mapped source compares as IPv4.
        assert_eq!(
            member(pod_caller(&pods, "aaaaaaaa", ip("::ffff:10.0.0.1"))),
            Caller::Member(PodFacts {
                generation: "uid-a".into(),
                ..PodFacts::default()
            })
        );
        // No pod at all for the claimed session.
        assert_eq!(
            pod_caller(&pods, "cccccccc", ip("10.0.0.1")),
            Caller::Stranger
        );
    }

    #[test]
    fn a_pod_without_ip_or_not_running_is_not_yet() {
        let pods = [pod("aaaaaaaa", "uid-a", None, "Pending")];
        assert_eq!(
            pod_caller(&pods, "aaaaaaaa", ip("10.0.0.1")),
            Caller::NotYet
        );
        let pods = [pod("aaaaaaaa", "uid-a", Some("10.0.0.1"), "Pending")];
        assert_eq!(
            pod_caller(&pods, "aaaaaaaa", ip("10.0.0.1")),
            Caller::NotYet
        );
    }

    #[test]
    fn a_terminating_pod_does_not_count() {
        let mut gone = pod("aaaaaaaa", "uid-a", Some("10.0.0.1"), "Running");
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(
            pod_caller([&gone], "aaaaaaaa", ip("10.0.0.1")),
            Caller::Stranger
        );
    }
}
