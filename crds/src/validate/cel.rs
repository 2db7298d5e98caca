//! The CEL rules of the chainwatch CRDs, evaluated in Rust for offline checks. Keyed by the exact
//! rule text in the generated CRD; `every_rule_in_the_crds_is_implemented` fails when a rule is
//! added to a type without an implementation here.

use serde_json::Value;

/// `has(self.<field>)`: present and not null.
fn has(v: &Value, field: &str) -> bool {
    v.get(field).is_some_and(|x| !x.is_null())
}

fn str_at<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

/// CEL `size()` of a string: code points.
fn size(v: &Value, path: &[&str]) -> usize {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_str().map_or(0, |s| s.chars().count())
}

fn url_scheme_ok(v: &Value, schemes: &[&str]) -> bool {
    str_at(v, "url").is_none_or(|u| schemes.iter().any(|s| u.starts_with(s)))
}

type Rule = fn(&Value) -> bool;

const RULES: &[(&str, Rule)] = &[
    ("has(self.source) != has(self.sourceFrom)", |v| has(v, "source") != has(v, "sourceFrom")),
    ("!(has(self.contractSpec) && has(self.contractSpecFrom))", |v| {
        !(has(v, "contractSpec") && has(v, "contractSpecFrom"))
    }),
    ("!(has(self.pollInterval) && has(self.cronSchedule))", |v| {
        !(has(v, "pollInterval") && has(v, "cronSchedule"))
    }),
    ("self.rpc.exists(e, !has(e.weight) || e.weight > 0)", |v| {
        v["rpc"].as_array().is_some_and(|a| {
            a.iter().any(|e| !has(e, "weight") || e["weight"].as_i64().is_some_and(|w| w > 0))
        })
    }),
    ("self.type != 'stellar' || has(self.networkPassphrase)", |v| {
        str_at(v, "type") != Some("stellar") || has(v, "networkPassphrase")
    }),
    ("!has(self.startBlock) || !has(self.backfill)", |v| !has(v, "startBlock") || !has(v, "backfill")),
    ("type(self) == int ? self > 0 : self == 'unlimited'", |v| match v {
        Value::Number(n) => n.as_i64().is_some_and(|x| x > 0) || n.as_u64().is_some_and(|x| x > 0),
        Value::String(s) => s == "unlimited",
        _ => false,
    }),
    ("has(self.url) != has(self.urlSecretRef)", |v| has(v, "url") != has(v, "urlSecretRef")),
    (
        "!has(self.url) || self.url.startsWith('http://') || self.url.startsWith('https://') || self.url.startsWith('ws://') || self.url.startsWith('wss://')",
        |v| url_scheme_ok(v, &["http://", "https://", "ws://", "wss://"]),
    ),
    ("!has(self.url) || self.url.startsWith('http://') || self.url.startsWith('https://')", |v| {
        url_scheme_ok(v, &["http://", "https://"])
    }),
    ("!has(self.to) || self.from <= self.to", |v| !has(v, "to") || v["from"].as_u64() <= v["to"].as_u64()),
    ("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas", |v| {
        !has(v, "minReplicas")
            || !has(v, "maxReplicas")
            || v["minReplicas"].as_i64() <= v["maxReplicas"].as_i64()
    }),
    (
        "(has(self.slack) ? 1 : 0) + (has(self.discord) ? 1 : 0) + (has(self.telegram) ? 1 : 0) + (has(self.email) ? 1 : 0) + (has(self.webhook) ? 1 : 0) + (has(self.script) ? 1 : 0) == 1",
        |v| {
            ["slack", "discord", "telegram", "email", "webhook", "script"]
                .iter()
                .filter(|k| has(v, k))
                .count()
                == 1
        },
    ),
    (
        "has(self.message) || has(self.script) || (has(self.webhook) && has(self.webhook.payloadMode) && self.webhook.payloadMode == 'Raw')",
        |v| {
            has(v, "message")
                || has(v, "script")
                || (has(v, "webhook") && str_at(&v["webhook"], "payloadMode") == Some("Raw"))
        },
    ),
    ("!has(self.discord) || !has(self.message) || size(self.message.body) <= 2000", |v| {
        !has(v, "discord") || !has(v, "message") || size(v, &["message", "body"]) <= 2000
    }),
    ("!has(self.telegram) || !has(self.message) || size(self.message.body) <= 4096", |v| {
        !has(v, "telegram") || !has(v, "message") || size(v, &["message", "body"]) <= 4096
    }),
    ("!has(self.email) || !has(self.message) || size(self.message.title) <= 998", |v| {
        !has(v, "email") || !has(v, "message") || size(v, &["message", "title"]) <= 998
    }),
];

/// Evaluates a rule on `self`; `None` if the rule is not implemented.
pub fn eval(rule: &str, value: &Value) -> Option<bool> {
    RULES.iter().find(|(text, _)| *text == rule).map(|(_, f)| f(value))
}

/// Whether a rule has an implementation.
pub fn implemented(rule: &str) -> bool {
    RULES.iter().any(|(text, _)| *text == rule)
}
