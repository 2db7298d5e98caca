//! The Tenant controller against kube-testenv: namespaces, RoleBindings for its users and groups
//! (and their removal when a namespace leaves the tenant), conflicts, status.

use std::time::Duration;

use chainwatch_crds::Tenant;
use chainwatch_devkit::testbed::unique;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::Api;
use serde_json::json;

use crate::harness::{self, Operator, condition, eventually, get};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_get_namespaces_and_editor_bindings() {
    let client = harness::clean_slate().await;
    let op_ns = harness::new_namespace(&client, "cw-op").await;
    let op = Operator::start(&op_ns, "op-a", &["--no-kafka"]).await;
    let name = unique("acme");
    let (a, b) = (format!("{name}-a"), format!("{name}-b"));
    let tenant = |namespaces: &[&str]| {
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {"namespaces": namespaces, "users": ["alice@acme.example"], "groups": ["acme-oncall"]}})
    };
    harness::apply_value(&client, &tenant(&[&a, &b])).await.unwrap();

    let rb_name = "chainwatch-tenant-editors";
    for ns in [&a, &b] {
        let created: Namespace = eventually("the namespace created", T, || async {
            Api::<Namespace>::all(client.clone()).get_opt(ns).await.unwrap()
        })
        .await;
        assert_eq!(created.metadata.labels.unwrap()["chainwatch.io/tenant"], name);
        let rb: RoleBinding = eventually("the RoleBinding", T, || async {
            Api::<RoleBinding>::namespaced(client.clone(), ns).get_opt(rb_name).await.unwrap()
        })
        .await;
        assert_eq!(
            (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
            ("ClusterRole", "chainwatch-tenant-editor")
        );
        let subjects: Vec<(String, String)> =
            rb.subjects.unwrap().into_iter().map(|s| (s.kind, s.name)).collect();
        assert_eq!(
            subjects,
            vec![
                ("User".to_string(), "alice@acme.example".to_string()),
                ("Group".to_string(), "acme-oncall".to_string())
            ]
        );
        assert_eq!(rb.metadata.owner_references.unwrap()[0].kind, "Tenant");
        // the platform reads the namespace's Secrets and ConfigMaps through one binding
        let readers: RoleBinding = eventually("the platform readers' RoleBinding", T, || async {
            Api::<RoleBinding>::namespaced(client.clone(), ns)
                .get_opt("chainwatch-platform-readers")
                .await
                .unwrap()
        })
        .await;
        assert_eq!(readers.role_ref.name, "chainwatch-platform-reader");
        let subjects: Vec<(String, Option<String>, String)> =
            readers.subjects.unwrap().into_iter().map(|s| (s.kind, s.namespace, s.name)).collect();
        assert_eq!(
            subjects,
            vec![
                ("ServiceAccount".to_string(), Some(op_ns.clone()), "chainwatch-operator".to_string()),
                ("ServiceAccount".to_string(), Some(op_ns.clone()), "chainwatch-worker".to_string())
            ]
        );
    }
    let tenants: Api<Tenant> = Api::all(client.clone());
    let t = eventually("Ready", T, || async {
        Some(get(&tenants, &name).await).filter(|t| condition(t, "Ready").is_some_and(|c| c.0 == "True"))
    })
    .await;
    assert_eq!(t.status.unwrap().monitors, Some(0));

    // a namespace leaves the tenant: its binding goes (the namespace and its data stay)
    harness::apply_value(&client, &tenant(&[&a])).await.unwrap();
    eventually("the binding in the removed namespace deleted", T, || async {
        Api::<RoleBinding>::namespaced(client.clone(), &b)
            .get_opt(rb_name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(Api::<RoleBinding>::namespaced(client.clone(), &a).get_opt(rb_name).await.unwrap().is_some());
    assert!(Api::<Namespace>::all(client.clone()).get_opt(&b).await.unwrap().is_some());

    // a second tenant claiming the namespace is told who owns it
    let other = unique("rival");
    harness::apply_value(&client, &json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": other}, "spec": {"namespaces": [a]}})).await.unwrap();
    let (status, reason, message) = eventually("NamespaceConflict", T, || async {
        condition(&get(&tenants, &other).await, "Ready").filter(|c| c.1 == "NamespaceConflict")
    })
    .await;
    assert_eq!(status, "False");
    assert!(
        message.contains(&format!("namespace {a} already belongs to tenant {name}")),
        "{reason}: {message}"
    );
    op.stop().await;
    harness::reset(&client).await;
}
