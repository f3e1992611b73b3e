//! DELETE as the API server and the garbage collector do it:
//!
//! - **finalizers**: an object with `metadata.finalizers` gets a
//!   `deletionTimestamp` and stays until a write empties them, then goes;
//! - **graceful pod termination**: a pod is Terminating for its grace
//!   period (`gracePeriodSeconds` of the DeleteOptions, else the fake's
//!   `pod_grace`; 0 deletes at once); a namespace is Terminating until its
//!   objects are gone (and refuses new ones meanwhile, see `refuse_in`);
//! - **propagationPolicy**: `Background` (the default) deletes the owner
//!   at once and leaves its dependents (ownerReferences to its uid) to the
//!   garbage collector, which runs **asynchronously**, a moment later;
//!   `Foreground` keeps the owner (Terminating, finalizer
//!   `foregroundDeletion`) until its dependents are gone; `Orphan` removes
//!   the owner's reference from its dependents and leaves them.
//!
//! Not modelled: `preconditions`, `dryRun`, blockOwnerDeletion,
//! the namespace controller's ordering.

use std::time::Duration;

use serde_json::{Value, json};

use super::{FakeKube, ObjKey};

/// How long the garbage collector takes to notice an owner is gone.
const GC_DELAY: Duration = Duration::from_millis(50);

/// What a DELETE asked for.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Option<String>,
    pub grace_seconds: Option<u64>,
}

impl DeleteOptions {
    /// From the request's body (DeleteOptions) and query.
    pub fn parse(body: &[u8], q: &std::collections::HashMap<String, String>) -> DeleteOptions {
        let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        DeleteOptions {
            propagation: doc["propagationPolicy"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| q.get("propagationPolicy").cloned()),
            grace_seconds: doc["gracePeriodSeconds"]
                .as_u64()
                .or_else(|| q.get("gracePeriodSeconds").and_then(|g| g.parse().ok())),
        }
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)))
}

impl FakeKube {
    /// A client's DELETE. `None` when absent; else the object as the
    /// answer shows it (Terminating, or as it was).
    pub(super) fn delete_by_client(&self, key: &ObjKey, opts: &DeleteOptions) -> Option<Value> {
        let current = self.get(&key.0, &key.1, &key.2)?;
        let uid = current["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let policy = opts.propagation.as_deref().unwrap_or("Background");
        if policy == "Orphan" {
            self.orphan_dependents(&uid);
        }
        let foreground = policy == "Foreground" && self.has_dependents(&uid);
        let graceful = match key.0.as_str() {
            "pods" => opts.grace_seconds != Some(0),
            "namespaces" => true,
            _ => false,
        };
        if !graceful && !foreground && finalizers(&current).is_empty() {
            return self.delete(key);
        }
        if current.pointer("/metadata/deletionTimestamp").is_some() {
            return Some(current);
        }
        self.update(key.clone(), |o| {
            o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            if foreground {
                let mut f = finalizers(o);
                f.push("foregroundDeletion".into());
                o["metadata"]["finalizers"] = json!(f);
            }
            if key.0 == "namespaces" {
                o["status"] = json!({"phase": "Terminating"});
            }
        });
        let (fake, doomed, opts) = (self.clone(), key.clone(), opts.clone());
        tokio::spawn(async move { fake.terminate(doomed, uid, foreground, opts).await });
        self.get(&key.0, &key.1, &key.2)
    }

    /// The rest of a deletion that had to wait: a namespace's objects, a
    /// foreground owner's dependents, a pod's grace period, finalizers.
    async fn terminate(&self, key: ObjKey, uid: String, foreground: bool, opts: DeleteOptions) {
        if key.0 == "namespaces" {
            let inside: Vec<ObjKey> = self
                .lock()
                .objects
                .keys()
                .filter(|(_, ns, _)| ns == &key.2)
                .cloned()
                .collect();
            for k in inside {
                self.delete(&k);
            }
        }
        if foreground {
            for d in self.dependents(&uid) {
                self.delete(&d);
            }
            while self.has_dependents(&uid) {
                tokio::time::sleep(GC_DELAY).await;
            }
            self.update(key.clone(), |o| {
                let f: Vec<String> = finalizers(o)
                    .into_iter()
                    .filter(|f| f != "foregroundDeletion")
                    .collect();
                o["metadata"]["finalizers"] = json!(f);
            });
        }
        if key.0 == "pods" || key.0 == "namespaces" {
            let grace = opts
                .grace_seconds
                .map_or(self.lock().pod_grace, Duration::from_secs);
            self.lock().in_grace.insert(key.clone());
            tokio::time::sleep(grace).await;
            self.lock().in_grace.remove(&key);
        }
        self.delete_when_finalized(&key);
    }

    /// Deletes a Terminating object whose finalizers are all gone (called
    /// after every write too).
    pub(super) fn delete_when_finalized(&self, key: &ObjKey) {
        let done = self.get(&key.0, &key.1, &key.2).is_some_and(|o| {
            o.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&o).is_empty()
        });
        let in_grace = self.lock().in_grace.contains(key);
        if done && !in_grace {
            self.delete(key);
        }
    }

    fn dependents(&self, uid: &str) -> Vec<ObjKey> {
        if uid.is_empty() {
            return Vec::new();
        }
        self.lock()
            .objects
            .iter()
            .filter(|(_, o)| owned_by(o, uid))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn has_dependents(&self, uid: &str) -> bool {
        !self.dependents(uid).is_empty()
    }

    fn orphan_dependents(&self, uid: &str) {
        for d in self.dependents(uid) {
            self.update(d, |o| {
                if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"] != json!(uid));
                }
            });
        }
    }

    /// Removes an object now (its finalizers done, or a test's direct
    /// delete); the garbage collector collects its dependents a moment
    /// later, asynchronously, as in a cluster.
    pub(super) fn delete(&self, key: &ObjKey) -> Option<Value> {
        let removed = {
            let mut s = self.lock();
            let mut obj = s.objects.remove(key)?;
            s.owners.remove(key);
            s.rv += 1;
            obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            obj
        };
        self.emit(&key.0, "DELETED", removed.clone());
        let uid = removed["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let (fake, ns) = (self.clone(), (key.0 == "namespaces").then(|| key.2.clone()));
        tokio::spawn(async move {
            tokio::time::sleep(GC_DELAY).await;
            let mut doomed = fake.dependents(&uid);
            if let Some(ns) = ns {
                doomed.extend(fake.lock().objects.keys().filter(|k| k.1 == ns).cloned());
            }
            for d in doomed {
                fake.delete(&d);
            }
        });
        Some(removed)
    }
}
