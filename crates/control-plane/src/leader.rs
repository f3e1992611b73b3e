//! Leader election on a Lease (`kube-lease-manager`): every replica serves
//! tokens; only the holder of the Lease runs the reconcile workers.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// Seconds a Lease stays valid without renewal.
pub const LEASE_SECONDS: u64 = 15;

/// The election task; it releases the Lease once every receiver is dropped.
pub type Election =
    tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>;

/// Starts competing for the Lease `name` in `namespace` as `identity`.
/// The receiver says whether this replica leads now; drop it, then await
/// the [`Election`], to release the Lease: a follower then takes it when the
/// term it last saw ends (kube-lease-manager sleeps until then), without
/// having to force it.
pub async fn elect(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
) -> Result<(watch::Receiver<bool>, Election), kube_lease_manager::LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(5)
        .with_field_manager(format!("ambient-control-plane-{identity}"))
        .build()
        .await?;
    Ok(manager.watch().await)
}

/// A leader channel that always says "leader" (leader election off).
pub fn always() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(true)
}

/// A random identity when neither POD_NAME nor HOSTNAME is set.
pub fn default_identity() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            let mut b = [0u8; 6];
            let _ = aws_lc_rs::rand::fill(&mut b);
            format!(
                "cp-{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            )
        })
}
