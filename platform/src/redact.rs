//! Secrets never leave their Secret: what chainwatch writes down — status, events, logs, metrics,
//! dead letters — names an endpoint as `scheme://host[:port]` only (API keys ride in paths,
//! queries and userinfo: `…/v2/<key>`, `/bot<token>/`, `?apikey=`), and a message is scrubbed of
//! every secret value it might quote before it is stored or logged.

use std::sync::OnceLock;

use regex::Regex;

/// `scheme://host[:port]` of a URL (userinfo, path, query and fragment dropped); `"invalid URL"`
/// when it is none.
pub fn endpoint(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) =>
        {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}")
        }
        _ => "invalid URL".into(),
    }
}

fn url_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r#"[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>()\[\]{}]+"#).expect("a valid pattern"))
}

/// `text` with every URL cut to its endpoint and every one of `secrets` (values of four
/// characters or more) replaced by `[redacted]`.
pub fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = url_pattern().replace_all(text, |c: &regex::Captures<'_>| endpoint(&c[0])).into_owned();
    for s in secrets {
        let s = s.trim();
        if s.len() >= 4 {
            out = out.replace(s, "[redacted]");
            // and the part of a URL after its endpoint, should it be quoted alone
            if let Some((_, rest)) = s.split_once("://")
                && let Some(i) = rest.find(['/', '?'])
                && rest.len() - i > 4
            {
                out = out.replace(&rest[i..], "/[redacted]");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_only_scheme_host_and_port() {
        assert_eq!(
            endpoint("https://eth-mainnet.g.alchemy.com/v2/KEY123"),
            "https://eth-mainnet.g.alchemy.com"
        );
        assert_eq!(endpoint("https://user:pass@rpc.example:8545/x?apikey=1"), "https://rpc.example:8545");
        assert_eq!(endpoint("https://api.telegram.org/bot123:AAA/sendMessage"), "https://api.telegram.org");
        assert_eq!(endpoint("not a url"), "invalid URL");
    }

    #[test]
    fn messages_lose_paths_and_secret_values() {
        let msg = "error sending request for url (https://hooks.slack.com/services/T00/B00/XXXXSECRET): connection refused";
        let s = scrub(msg, []);
        assert_eq!(s, "error sending request for url (https://hooks.slack.com): connection refused");
        let quoted = scrub(
            "the receiver said: token 123456:ABCDEF is invalid, path /services/T00/B00/XXXXSECRET",
            ["123456:ABCDEF", "https://hooks.slack.com/services/T00/B00/XXXXSECRET"],
        );
        assert!(!quoted.contains("ABCDEF") && !quoted.contains("XXXXSECRET"), "{quoted}");
    }
}
