//! Notification templates: the variables of a match and `${...}` substitution (upstream §3.5).
//!
//! Variables as upstream: `monitor.name`, `transaction.hash` (and for EVM `transaction.from`,
//! `transaction.to`, `transaction.value`), `functions.<i>.signature`, `functions.<i>.args.<name>`,
//! `events.<i>.signature`, `events.<i>.args.<name>`, and the `${functions}` / `${events}` Markdown
//! blocks. Added by chainwatch: `monitor.namespace`, `network.name`, `block.number`, `block.hash`,
//! `block.timestamp` (Unix seconds), `transaction.index`, `transaction.status`, `log.index` (first
//! matched event) and `events.<i>.log_index`.
//!
//! Unknown placeholders are left as written. Substitution is one pass: a value that itself contains
//! `${...}` is not expanded again (upstream replaced key by key, so that could happen).

use std::collections::BTreeMap;

use crate::matches::{MatchedTransaction, MonitorMatch};

/// The variables of a match, by dotted name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variables(pub BTreeMap<String, String>);

impl Variables {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }
}

/// The variables of a match.
pub fn variables(m: &MonitorMatch) -> Variables {
    let mut v = Variables::default();
    v.set("monitor.name", &m.monitor.display_name);
    v.set("monitor.namespace", &m.monitor.key.namespace);
    v.set("network.name", &m.network);
    v.set("block.number", m.block.number.to_string());
    v.set("block.hash", &m.block.hash);
    v.set("block.timestamp", m.block.timestamp.to_string());
    v.set("transaction.hash", m.transaction_hash());
    if let Some(phase) = m.phase {
        v.set("phase", phase.as_str());
    }
    match &m.transaction {
        MatchedTransaction::Evm(tx) => {
            v.set("transaction.from", format!("{:#x}", tx.from));
            if let Some(to) = tx.to {
                v.set("transaction.to", format!("{to:#x}"));
            }
            v.set("transaction.value", tx.value.to_string());
            v.set("transaction.index", tx.index.to_string());
            if let Some(ok) = tx.succeeded() {
                v.set("transaction.status", if ok { "success" } else { "failure" });
            }
        }
        MatchedTransaction::Stellar(tx) => {
            v.set("transaction.status", tx.status.to_lowercase());
        }
    }
    for (i, f) in m.matched_on_args.functions.iter().enumerate() {
        v.set(format!("functions.{i}.signature"), &f.signature);
        for a in f.args.iter() {
            v.set(format!("functions.{i}.args.{}", a.name), &a.value);
        }
    }
    for (i, e) in m.matched_on_args.events.iter().enumerate() {
        v.set(format!("events.{i}.signature"), &e.signature);
        if let Some(li) = e.log_index {
            v.set(format!("events.{i}.log_index"), li.to_string());
        }
        for a in e.args.iter() {
            v.set(format!("events.{i}.args.{}", a.name), &a.value);
        }
    }
    if let Some(li) = m.first_log_index() {
        v.set("log.index", li.to_string());
    }
    v
}

/// Replaces `${name}` placeholders. `${events}` and `${functions}` become upstream's Markdown
/// summary blocks (empty when nothing of that kind matched); unknown names stay as written.
pub fn render(template: &str, vars: &Variables) -> String {
    render_with(template, vars, &|v| v.to_string())
}

/// [`render`], with every value from the match passed through `escape` (for the markup of the
/// channel it goes to: text from the chain must not become a mention, a link or HTML), while the
/// template's own markup stays.
pub fn render_with(template: &str, vars: &Variables, escape: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = &after[..end];
        match key {
            "events" | "functions" => out.push_str(&summary_block(vars, key, escape)),
            _ => match vars.get(key) {
                Some(value) => out.push_str(&escape(value)),
                None => {
                    out.push_str("${");
                    out.push_str(key);
                    out.push('}');
                }
            },
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Upstream's "Matched Events" / "Matched Functions" block, byte for byte.
fn summary_block(vars: &Variables, prefix: &str, escape: &dyn Fn(&str) -> String) -> String {
    let mut indexes: Vec<usize> = vars
        .0
        .keys()
        .filter_map(|k| k.strip_prefix(prefix)?.strip_prefix('.')?.strip_suffix(".signature")?.parse().ok())
        .collect();
    if indexes.is_empty() {
        return String::new();
    }
    indexes.sort_unstable();
    let title = format!("{}{}", prefix[..1].to_uppercase(), &prefix[1..]);
    let mut out = format!("\n\n*Matched {title}:*\n");
    let last = *indexes.last().expect("not empty");
    for (n, index) in indexes.iter().enumerate() {
        let Some(signature) = vars.get(&format!("{prefix}.{index}.signature")) else { continue };
        out.push_str(&format!("\n*Reason {}*\n", n + 1));
        out.push_str(&format!("\n*Signature:* `{}`\n", escape(signature)));
        out.push_str("\n*Params:*\n");
        let args_prefix = format!("{prefix}.{index}.args.");
        // BTreeMap iteration is already sorted by full key, hence by parameter name
        for (key, value) in vars.0.range(args_prefix.clone()..) {
            let Some(name) = key.strip_prefix(&args_prefix) else { break };
            out.push_str(&format!("\n{}: `{}`", escape(name), escape(value)));
        }
        if *index != last {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        Variables(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    // Expected strings are upstream's, from its template formatter tests.
    #[test]
    fn events_block_is_upstreams() {
        let v = vars(&[
            ("transaction.hash", "0x1234567890abcdef"),
            ("events.0.signature", "Transfer(address,address,uint256)"),
            ("events.0.args.from", "0x1234"),
            ("events.0.args.to", "0x5678"),
            ("events.0.args.value", "1000000"),
        ]);
        assert_eq!(
            render("Transaction detected: ${transaction.hash}\n\n${events}", &v),
            "Transaction detected: 0x1234567890abcdef\n\n\n\n*Matched Events:*\n\n*Reason 1*\n\n*Signature:* `Transfer(address,address,uint256)`\n\n*Params:*\n\nfrom: `0x1234`\nto: `0x5678`\nvalue: `1000000`"
        );
    }

    #[test]
    fn functions_and_events_blocks_with_several_reasons() {
        let v = vars(&[
            ("transaction.hash", "0x1234567890abcdef"),
            ("events.0.signature", "Transfer(address,address,uint256)"),
            ("events.0.args.from", "0x1234"),
            ("events.0.args.to", "0x5678"),
            ("functions.0.signature", "transfer(address,uint256)"),
            ("functions.0.args.to", "0x9abc"),
            ("functions.0.args.amount", "750000"),
        ]);
        assert_eq!(
            render("Transaction detected: ${transaction.hash}\n\n${functions}\n\n${events}", &v),
            "Transaction detected: 0x1234567890abcdef\n\n\n\n*Matched Functions:*\n\n*Reason 1*\n\n*Signature:* `transfer(address,uint256)`\n\n*Params:*\n\namount: `750000`\nto: `0x9abc`\n\n\n\n*Matched Events:*\n\n*Reason 1*\n\n*Signature:* `Transfer(address,address,uint256)`\n\n*Params:*\n\nfrom: `0x1234`\nto: `0x5678`"
        );
        let two = vars(&[
            ("events.2.signature", "ValueChanged(uint256)"),
            ("events.2.args.value", "1000000"),
            ("events.0.signature", "Transfer(address,address,uint256)"),
            ("events.0.args.from", "0x1234"),
            ("events.0.args.to", "0x5678"),
        ]);
        assert_eq!(
            render("${events}", &two),
            "\n\n*Matched Events:*\n\n*Reason 1*\n\n*Signature:* `Transfer(address,address,uint256)`\n\n*Params:*\n\nfrom: `0x1234`\nto: `0x5678`\n\n*Reason 2*\n\n*Signature:* `ValueChanged(uint256)`\n\n*Params:*\n\nvalue: `1000000`"
        );
    }

    #[test]
    fn empty_blocks_and_unknown_placeholders() {
        let v = vars(&[("transaction.hash", "0x1")]);
        assert_eq!(render("Tx: ${transaction.hash}\n\n${events}", &v), "Tx: 0x1\n\n");
        assert_eq!(render("${functions}", &v), "");
        assert_eq!(render("a ${nope.x} b ${transaction.hash} ${", &v), "a ${nope.x} b 0x1 ${");
    }

    #[test]
    fn values_are_not_expanded_twice() {
        let v = vars(&[("events.0.args.note", "${transaction.hash}"), ("transaction.hash", "0x1")]);
        assert_eq!(render("${events.0.args.note}", &v), "${transaction.hash}");
    }
}
