//! Objects the caches left out because they do not decode: each chainwatch object gets
//! `Ready=False`, reason `Undecodable`, with the decoder's message, and a Warning event — on that
//! object only; everything else carries on.

use chainwatch_platform::cache::Undecodable;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::conditions;
use crate::events::{Events, Level};
use crate::labels::MANAGER;

/// The reason written on an object that does not decode.
pub const UNDECODABLE: &str = "Undecodable";

fn resource(kind: &str) -> Option<ApiResource> {
    let plural = match kind {
        "Monitor" => "monitors",
        "Trigger" => "triggers",
        "Network" => "networks",
        "Tenant" => "tenants",
        _ => return None,
    };
    Some(ApiResource {
        group: chainwatch_crds::GROUP.into(),
        version: chainwatch_crds::VERSION.into(),
        api_version: format!("{}/{}", chainwatch_crds::GROUP, chainwatch_crds::VERSION),
        kind: kind.into(),
        plural: plural.into(),
    })
}

/// The message of the condition.
pub fn message(u: &Undecodable) -> String {
    format!(
        "chainwatch cannot read this object, so it is not used: {}. Fix the field the error points at (the API server's schema lets it through; chainwatch's types do not)",
        u.error
    )
}

/// Reports undecodable objects until `stop`.
pub async fn report(
    client: kube::Client,
    events: Events,
    mut rx: mpsc::UnboundedReceiver<Undecodable>,
    stop: CancellationToken,
) {
    loop {
        let u = tokio::select! {
            _ = stop.cancelled() => return,
            u = rx.recv() => match u { Some(u) => u, None => return },
        };
        let Some(ar) = resource(&u.kind) else { continue };
        let api: Api<DynamicObject> = match &u.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        // Ready (and kstatus's Stalled: it needs someone to fix the object)
        let ready = conditions::Check::new("Ready", false, UNDECODABLE, message(&u));
        let written = conditions::update(&[], std::slice::from_ref(&ready), u.generation).conditions;
        let status = json!({"apiVersion": ar.api_version, "kind": u.kind, "status": {
            "observedGeneration": u.generation,
            "conditions": written,
        }});
        if let Err(e) =
            api.patch_status(&u.name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&status)).await
        {
            tracing::warn!(kind = %u.kind, name = %u.name, error = %e, "writing the Undecodable condition failed");
        }
        let reference = ObjectReference {
            api_version: Some(ar.api_version.clone()),
            kind: Some(u.kind.clone()),
            name: Some(u.name.clone()),
            namespace: u.namespace.clone(),
            ..Default::default()
        };
        events.publish_about(reference, Level::Warning, UNDECODABLE, &message(&u)).await;
    }
}
