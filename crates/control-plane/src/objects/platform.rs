//! Objects of a session's namespace that the platform around it needs
//! (wire.md §4): the MPP `TenantNamespace`, the runner image-puller grant
//! and the copy of the Vertex key Secret.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

use super::{PodConfig, SecretCopy};
use crate::names;

/// The `tenant.paas.redhat.com/v1alpha1` `TenantNamespace` resource.
pub fn tenant_namespace_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            names::TENANT_NAMESPACE_GROUP,
            names::TENANT_NAMESPACE_VERSION,
            names::TENANT_NAMESPACE_KIND,
        ),
        names::TENANT_NAMESPACE_PLURAL,
    )
}

/// MPP mode: the `TenantNamespace` `lower(project_id)` in
/// `MPP_CONFIG_NAMESPACE`, asking for the runtime namespace
/// `ambient-code--<lower(project_id)>`. Besides the platform's labels it
/// carries ours, so the orphan sweep finds it.
pub fn tenant_namespace(cfg: &PodConfig, project_id: &str) -> DynamicObject {
    tenant_namespace_for(
        &cfg.installation,
        cfg.mpp_config_namespace.as_deref(),
        project_id,
    )
}

/// [`tenant_namespace`] of installation `installation`, in `config_namespace`.
pub fn tenant_namespace_for(
    installation: &str,
    config_namespace: Option<&str>,
    project_id: &str,
) -> DynamicObject {
    let mut labels = names::namespace_labels(project_id, installation);
    labels.insert(
        "tenant.paas.redhat.com/namespace-type".into(),
        "runtime".into(),
    );
    labels.insert(
        "tenant.paas.redhat.com/tenant".into(),
        "ambient-code".into(),
    );
    let mut obj = DynamicObject::new(
        &names::tenant_namespace_name(project_id),
        &tenant_namespace_resource(),
    )
    .data(serde_json::json!({
        "spec": {"network": {"security-zone": "internal"}, "type": "runtime"}
    }));
    obj.metadata.namespace = config_namespace.map(str::to_owned);
    obj.metadata.labels = Some(labels);
    obj
}

/// `RUNNER_IMAGE_NAMESPACE`: a RoleBinding there granting
/// `system:image-puller` to every service account of namespace `ns`. One
/// per session namespace (the reference names them all alike, so only the
/// first namespace ever got one).
pub fn image_puller(cfg: &PodConfig, ns: &str, project_id: &str) -> Option<RoleBinding> {
    let image_ns = cfg.runner_image_namespace.as_ref()?;
    let mut labels = names::namespace_labels(project_id, &cfg.installation);
    labels.insert(names::LABEL_IMAGE_PULLER.into(), "true".into());
    Some(RoleBinding {
        metadata: ObjectMeta {
            name: Some(names::image_puller_name(ns)),
            namespace: Some(image_ns.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "system:image-puller".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Group".into(),
            name: format!("system:serviceaccounts:{ns}"),
            namespace: None,
        }]),
    })
}

/// Vertex on: the key Secret's copy in namespace `ns` (data filled in from
/// the source when applied).
pub fn vertex_secret(cfg: &PodConfig, ns: &str, project_id: &str) -> Option<SecretCopy> {
    let v = cfg.vertex.as_ref()?;
    Some(SecretCopy {
        from_namespace: v.secret_namespace.clone(),
        from_name: v.secret_name.clone(),
        secret: KubeSecret {
            metadata: ObjectMeta {
                name: Some(v.secret_name.clone()),
                namespace: Some(ns.into()),
                labels: Some(names::namespace_labels(project_id, &cfg.installation)),
                annotations: Some(BTreeMap::from([(
                    names::ANNOTATION_COPIED_FROM.to_owned(),
                    format!("{}/{}", v.secret_namespace, v.secret_name),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            ..KubeSecret::default()
        },
    })
}
