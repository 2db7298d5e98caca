//! Decoding guarded per object: a list or watch response is split into objects without decoding
//! them ([`serde_json::value::RawValue`] skips a value iteratively, so no nesting depth makes it
//! fail), then each object is decoded on its own. One that does not decode — nested deeper than
//! the decoder allows, a type the schema lets through, a number out of range — becomes
//! [`Guarded::Bad`] with its metadata and the error, and everything else still decodes.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// An object of kind `K`, or the metadata of one that did not decode.
#[derive(Clone, Debug)]
pub enum Guarded<K> {
    Ok(K),
    Bad { meta: ObjectMeta, error: String },
}

#[derive(Deserialize)]
struct MetaOnly {
    #[serde(default)]
    metadata: ObjectMeta,
}

impl<K: DeserializeOwned> Guarded<K> {
    /// Decodes one object's JSON.
    pub fn decode(json: &str) -> Self {
        match serde_json::from_str::<K>(json) {
            Ok(k) => Guarded::Ok(k),
            Err(e) => Guarded::Bad {
                // the metadata is shallow: it decodes even when the spec does not
                meta: serde_json::from_str::<MetaOnly>(json).map(|m| m.metadata).unwrap_or_default(),
                error: e.to_string(),
            },
        }
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Guarded<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        Ok(Guarded::decode(raw.get()))
    }
}

impl<K> Resource for Guarded<K>
where
    K: Resource<DynamicType = ()>,
{
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Guarded::Ok(k) => k.meta(),
            Guarded::Bad { meta, .. } => meta,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Guarded::Ok(k) => k.meta_mut(),
            Guarded::Bad { meta, .. } => meta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::ObjectList;

    /// An object with a free-form field, like a Monitor's contract spec.
    #[derive(Deserialize, Clone, Debug)]
    struct Free {
        metadata: ObjectMeta,
        #[allow(dead_code)]
        data: serde_json::Value,
    }

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn one_object_nested_too_deep_fails_alone() {
        let good = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"good"},"data":{"k":"v"}}"#;
        let deep = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep","namespace":"t"}},"data":{{"k":{}}}}}"#,
            nested(300)
        );
        let list = format!(
            r#"{{"apiVersion":"v1","kind":"List","metadata":{{"resourceVersion":"7"}},"items":[{good},{deep}]}}"#
        );
        assert!(serde_json::from_str::<ObjectList<Free>>(&list).is_err(), "unguarded, the whole list fails");
        let guarded: ObjectList<Guarded<Free>> = serde_json::from_str(&list).unwrap();
        assert!(matches!(&guarded.items[0], Guarded::Ok(c) if c.metadata.name.as_deref() == Some("good")));
        match &guarded.items[1] {
            Guarded::Bad { meta, error } => {
                assert_eq!((meta.name.as_deref(), meta.namespace.as_deref()), (Some("deep"), Some("t")));
                assert!(error.contains("recursion limit"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        let event = format!(r#"{{"type":"MODIFIED","object":{deep}}}"#);
        let e: kube::core::WatchEvent<Guarded<Free>> = serde_json::from_str(&event).unwrap();
        assert!(matches!(e, kube::core::WatchEvent::Modified(Guarded::Bad { .. })));
    }
}
