//! Secrets never leave their Secret: what chainwatch writes down — status, events, logs, metrics,
//! dead letters — names an endpoint as `scheme://host[:port]` only (API keys ride in paths,
//! queries and userinfo: `…/v2/<key>`, `/bot<token>/`, `?apikey=`), and a message is scrubbed of
//! every secret value it might quote before it is stored or logged.

use std::sync::OnceLock;

use regex::Regex;

/// The scheme and `host[:port]` of a URL (userinfo, path, query and fragment dropped).
fn authority(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    Some((scheme, authority.rsplit_once('@').map_or(authority, |(_, h)| h)))
}

/// `scheme://host[:port]` of a URL (userinfo, path, query and fragment dropped); `"invalid URL"`
/// when it is none.
pub fn endpoint(url: &str) -> String {
    match authority(url) {
        Some((scheme, host)) => format!("{scheme}://{host}"),
        None => "invalid URL".into(),
    }
}

/// The TCP port a URL connects to: its explicit port, or its scheme's (http/ws 80, https/wss 443).
pub fn port(url: &str) -> Option<u16> {
    let (scheme, host) = authority(url)?;
    // after an IPv6 literal's `]`, or after the last `:` of a name or IPv4 address
    let tail = host.rsplit_once(']').map_or(host, |(_, t)| t);
    match tail.rsplit_once(':') {
        Some((_, p)) if !p.is_empty() => p.parse().ok(),
        _ => match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        },
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
    fn ports_are_explicit_or_the_schemes() {
        assert_eq!(port("https://eth.example/v2/KEY"), Some(443));
        assert_eq!(port("http://user:pw@10.0.0.7:8545/"), Some(8545));
        assert_eq!(port("wss://[2001:db8::1]:8546"), Some(8546));
        assert_eq!(port("http://[2001:db8::1]/rpc"), Some(80));
        assert_eq!(port("ws://node"), Some(80));
        assert_eq!(port("https://node:99999"), None, "not a port");
        assert_eq!(port("ftp://node"), None);
        assert_eq!(port("node:8545"), None, "not a URL");
    }

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
