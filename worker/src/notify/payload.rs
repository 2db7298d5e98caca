//! Notification payloads in upstream's shapes (§3.5), webhook signing, email HTML, and the escaping
//! of values from the chain for each channel's markup ([`Markup`]): a token named `<!channel>` or
//! `[free](https://phish.example)` is text, not a mention or a link; the template's own markup
//! stays.

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

/// The markup a channel's text is read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Markup {
    /// Slack mrkdwn: `&`, `<`, `>` are escaped (no mention, no `<url|text>` link).
    Slack,
    /// Discord markdown: markdown characters are backslash-escaped and `@` mentions broken.
    Discord,
    /// Telegram MarkdownV2: every reserved character of a value is escaped.
    Telegram,
    /// Markdown rendered to HTML (email): punctuation is backslash-escaped, so no tag and no link.
    Markdown,
    /// Not markup (webhook JSON, scripts): values as they are.
    Plain,
}

impl Markup {
    pub fn of(spec: &chainwatch_crds::TriggerSpec) -> Markup {
        if spec.slack.is_some() {
            Markup::Slack
        } else if spec.discord.is_some() {
            Markup::Discord
        } else if spec.telegram.is_some() {
            Markup::Telegram
        } else if spec.email.is_some() {
            Markup::Markdown
        } else {
            Markup::Plain
        }
    }

    /// A value from the chain, made text in this markup.
    pub fn escape(self, value: &str) -> String {
        match self {
            Markup::Slack => value.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"),
            Markup::Discord => {
                let mut out = String::with_capacity(value.len() + 8);
                for c in value.chars() {
                    if "\\*_~`|>#[]()-".contains(c) {
                        out.push('\\');
                    }
                    out.push(c);
                    if c == '@' {
                        out.push('\u{200B}'); // no @everyone, @here or <@id>
                    }
                }
                out.replace('<', "\\<")
            }
            // placeholders the MarkdownV2 pass leaves alone; `telegram` turns them into escapes
            Markup::Telegram => {
                value.chars().map(|c| if SPECIAL.contains(c) { shield(c) } else { c }).collect()
            }
            Markup::Markdown => {
                let mut out = String::with_capacity(value.len() + 8);
                for c in value.chars() {
                    if c.is_ascii_punctuation() {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out
            }
            Markup::Plain => value.to_string(),
        }
    }
}

/// A reserved character of a value, as a private-use character (so the span-keeping escaping of
/// the whole text treats it as plain text).
fn shield(c: char) -> char {
    let i = SPECIAL.chars().position(|s| s == c).expect("a reserved character");
    char::from_u32(SHIELD_BASE + i as u32).expect("a private-use character")
}

const SHIELD_BASE: u32 = 0xF0000;

fn unshield(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match (c as u32).checked_sub(SHIELD_BASE).and_then(|i| SPECIAL.chars().nth(i as usize)) {
            Some(original) => {
                out.push('\\');
                out.push(original);
            }
            None => out.push(c),
        }
    }
    out
}

/// Telegram `sendMessage` with MarkdownV2. Values in `title` and `body` come escaped by
/// [`Markup::Telegram`].
pub fn telegram(chat_id: &str, title: &str, body: &str, disable_web_page_preview: bool) -> Value {
    json!({
        "chat_id": chat_id,
        "text": unshield(&escape_markdown_v2(&format!("*{title}* \n\n{body}"))),
        "parse_mode": "MarkdownV2",
        "disable_web_page_preview": disable_web_page_preview,
    })
}

/// Generic webhook in template mode.
pub fn webhook(title: &str, body: &str) -> Value {
    json!({"title": title, "body": body})
}

/// The header naming a webhook's kind of notification, when it is not a plain one.
pub const STATUS_HEADER: &str = "Chainwatch-Status";
/// The status of a retraction (webhook `status` field and header; script input `retracted`).
pub const RETRACTED: &str = "retracted";

/// A webhook payload (or a script's input) marked as a retraction: `status: "retracted"` beside
/// what the original carried.
pub fn retracted(payload: &mut Value) {
    if let Some(o) = payload.as_object_mut() {
        o.insert("status".into(), Value::String(RETRACTED.into()));
    }
}

/// The header naming a webhook's phase (`seen` or `final`) for a Monitor told at both.
pub const PHASE_HEADER: &str = "Chainwatch-Phase";

/// A webhook payload (or a script's input) of a Monitor told at `seen`: `phase: "seen"|"final"`
/// beside what it carries; nothing for every other Monitor's.
pub fn phased(payload: &mut Value, phase: Option<chainwatch_crds::NotifyPhase>) {
    if let (Some(o), Some(p)) = (payload.as_object_mut(), phase) {
        o.insert("phase".into(), Value::String(p.as_str().into()));
    }
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
    fn values_from_the_chain_are_text_in_every_markup() {
        use chainwatch_core::template::{Variables, render_with};
        let vars = Variables(
            [(
                "events.0.args.name".to_string(),
                "<!channel> [free](https://phish.example) <b>x</b> @everyone *bold*".to_string(),
            )]
            .into(),
        );
        let body = |m: Markup| render_with("*Token:* ${events.0.args.name} <!here>", &vars, &|v| m.escape(v));
        let slack = body(Markup::Slack);
        assert_eq!(
            slack,
            "*Token:* &lt;!channel&gt; [free](https://phish.example) &lt;b&gt;x&lt;/b&gt; @everyone *bold* <!here>"
        );
        let discord = discord("T", &body(Markup::Discord));
        let text = discord["content"].as_str().unwrap();
        assert!(
            text.contains("\\[free\\]\\(https://phish.example\\)")
                && !text.contains("@everyone")
                && text.contains("\\*bold\\*"),
            "{text}"
        );
        assert!(text.contains("<!here>"), "the template's own markup stays: {text}");
        let tg = telegram("1", "T", &body(Markup::Telegram), true);
        let text = tg["text"].as_str().unwrap();
        assert!(
            text.contains("\\[free\\]\\(https://phish\\.example\\)") && text.contains("\\*bold\\*"),
            "{text}"
        );
        assert!(text.starts_with("*T* \n\n*Token:* "), "the template's bold stays: {text}");
        let html = email_html(&body(Markup::Markdown));
        assert!(!html.contains("<b>") && html.contains("&lt;b&gt;") && !html.contains("href"), "{html}");
        assert!(html.contains("<em>Token:</em>"), "the template's emphasis stays: {html}");
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
