//! Notification payloads in upstream's shapes (§3.5), webhook signing, Telegram escaping, email HTML.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Slack incoming webhook: one mrkdwn section, `*<title>*\n\n<body>`.
pub fn slack(title: &str, body: &str) -> Value {
    json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": format!("*{title}*\n\n{body}")}}]})
}

/// Discord webhook: `{"content": "*<title>*\n\n<body>"}`.
pub fn discord(title: &str, body: &str) -> Value {
    json!({"content": format!("*{title}*\n\n{body}")})
}

/// Telegram `sendMessage` with MarkdownV2.
pub fn telegram(chat_id: &str, title: &str, body: &str, disable_web_page_preview: bool) -> Value {
    json!({
        "chat_id": chat_id,
        "text": escape_markdown_v2(&format!("*{title}* \n\n{body}")),
        "parse_mode": "MarkdownV2",
        "disable_web_page_preview": disable_web_page_preview,
    })
}

/// Generic webhook in template mode.
pub fn webhook(title: &str, body: &str) -> Value {
    json!({"title": title, "body": body})
}

/// Upstream's webhook signature: hex(HMAC-SHA256(secret, JSON(payload) + timestamp_ms)).
pub fn signature(secret: &str, payload: &Value, timestamp_ms: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(serde_json::to_string(payload).expect("JSON serializes").as_bytes());
    mac.update(timestamp_ms.to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Email body: the Markdown rendered to HTML.
pub fn email_html(markdown: &str) -> String {
    let parser = pulldown_cmark::Parser::new(markdown);
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, parser);
    html
}

const SPECIAL: &str = "_*[]()~`>#+-=|{}.!\\";

fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        if SPECIAL.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Escapes text for Telegram's MarkdownV2 while keeping `*bold*`, `_italic_`, `` `code` `` and
/// `[text](url)` spans as formatting; everything else that MarkdownV2 reserves is escaped.
pub fn escape_markdown_v2(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 16);
    let mut i = 0;
    let find = |from: usize, c: char| chars[from..].iter().position(|x| *x == c).map(|p| p + from);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '`' => {
                if let Some(end) = find(i + 1, '`') {
                    out.push('`');
                    for &x in &chars[i + 1..end] {
                        if x == '\\' || x == '`' {
                            out.push('\\');
                        }
                        out.push(x);
                    }
                    out.push('`');
                    i = end + 1;
                    continue;
                }
            }
            '*' | '_' => {
                if let Some(end) = find(i + 1, c).filter(|e| *e > i + 1 && !chars[i + 1..*e].contains(&'\n'))
                {
                    out.push(c);
                    escape_text(&chars[i + 1..end].iter().collect::<String>(), &mut out);
                    out.push(c);
                    i = end + 1;
                    continue;
                }
            }
            '[' => {
                if let Some(close) = find(i + 1, ']')
                    && chars.get(close + 1) == Some(&'(')
                    && let Some(paren) = find(close + 2, ')')
                {
                    out.push('[');
                    escape_text(&chars[i + 1..close].iter().collect::<String>(), &mut out);
                    out.push_str("](");
                    for &x in &chars[close + 2..paren] {
                        if x == ')' || x == '\\' {
                            out.push('\\');
                        }
                        out.push(x);
                    }
                    out.push(')');
                    i = paren + 1;
                    continue;
                }
            }
            _ => {}
        }
        if SPECIAL.contains(c) {
            out.push('\\');
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_payload_shapes() {
        assert_eq!(slack("T", "B")["blocks"][0]["text"]["text"], "*T*\n\nB");
        assert_eq!(discord("T", "B"), json!({"content": "*T*\n\nB"}));
        let t = telegram("42", "Large transfer", "Value: 1.5 ETH", true);
        assert_eq!(t["text"], "*Large transfer* \n\nValue: 1\\.5 ETH");
        assert_eq!(t["parse_mode"], "MarkdownV2");
        assert_eq!(webhook("T", "B"), json!({"title": "T", "body": "B"}));
    }

    #[test]
    fn markdown_v2_keeps_spans_and_escapes_the_rest() {
        assert_eq!(escape_markdown_v2("*bold.* and _it-alic_"), "*bold\\.* and _it\\-alic_");
        assert_eq!(escape_markdown_v2("`a_b*c` x_y"), "`a_b*c` x\\_y");
        assert_eq!(
            escape_markdown_v2("see [etherscan](https://etherscan.io/tx/0x1#eventlog)!"),
            "see [etherscan](https://etherscan.io/tx/0x1#eventlog)\\!"
        );
        assert_eq!(escape_markdown_v2("(not a [link) here"), "\\(not a \\[link\\) here");
        assert_eq!(escape_markdown_v2("a * b = c + d #1"), "a \\* b \\= c \\+ d \\#1");
    }

    #[test]
    fn signatures_are_hmac_sha256_of_payload_and_timestamp() {
        // independently computed: echo -n '{"body":"B","title":"T"}1700000000000' | openssl dgst -sha256 -hmac secret
        let sig = signature("secret", &json!({"title": "T", "body": "B"}), 1_700_000_000_000);
        assert_eq!(sig, "6c6f8be2b182d1b170bb88d2d91a3dd7e4ee3f127ef7f44df967f89ae395a672");
    }

    #[test]
    fn email_bodies_are_html() {
        let html = email_html("**Large** transfer\n\n*Params:*\n\nvalue: `1`");
        assert!(html.contains("<strong>Large</strong>") && html.contains("<code>1</code>"), "{html}");
    }
}
