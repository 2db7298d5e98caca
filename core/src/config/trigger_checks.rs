//! Format checks of a Trigger, from its spec and the values of the Secrets it names: URLs, tokens
//! and addresses are well-formed (part of [`admit_trigger`](super::admit_trigger)).

use chainwatch_crds::{SecretKeyRef, TriggerSpec};

/// One problem: a reason (condition reason) and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

fn problem(reason: &'static str, message: impl Into<String>) -> Problem {
    Problem { reason, message: message.into() }
}

/// A Telegram bot token: 8–10 digits, a colon, 35 characters of `[A-Za-z0-9_-]`.
pub fn telegram_token_ok(token: &str) -> bool {
    let Some((bot, secret)) = token.trim().split_once(':') else { return false };
    (8..=10).contains(&bot.len())
        && bot.bytes().all(|c| c.is_ascii_digit())
        && secret.len() == 35
        && secret.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// An http(s) URL with a host.
pub fn http_url_ok(url: &str) -> bool {
    let Some(rest) = url.trim().strip_prefix("https://").or_else(|| url.trim().strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !host.contains(' ')
}

/// An email address, bare or as `Name <address>`.
pub fn email_ok(address: &str) -> bool {
    let a = address.trim();
    let inner = a.rsplit_once('<').map_or(a, |(_, r)| r.trim_end_matches('>'));
    matches!(inner.split_once('@'), Some((user, domain)) if !user.is_empty() && domain.contains('.') && !domain.starts_with('.'))
}

/// Checks what can be checked with the Secret values at hand: `secret` returns the value of a
/// reference, or `None` when it is not known (missing Secrets are the caller's to report).
pub fn check(spec: &TriggerSpec, secret: &dyn Fn(&SecretKeyRef) -> Option<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (field, r) in [
        ("spec.slack.webhookUrlSecretRef", spec.slack.as_ref().map(|s| &s.webhook_url_secret_ref)),
        ("spec.discord.webhookUrlSecretRef", spec.discord.as_ref().map(|s| &s.webhook_url_secret_ref)),
        ("spec.webhook.urlSecretRef", spec.webhook.as_ref().and_then(|w| w.url_secret_ref.as_ref())),
    ] {
        if let Some(url) = r.and_then(secret)
            && !http_url_ok(&url)
        {
            problems.push(problem("InvalidURL", format!("{field}: the Secret does not hold an http(s) URL")));
        }
    }
    if let Some(secret_value) = spec.webhook.as_ref().and_then(|w| w.secret_ref.as_ref()).and_then(secret)
        && secret_value.is_empty()
    {
        problems.push(problem("EmptySigningSecret", "spec.webhook.secretRef: the signing secret is empty"));
    }
    if let Some(token) = spec.telegram.as_ref().and_then(|tg| secret(&tg.token_secret_ref))
        && !telegram_token_ok(&token)
    {
        problems.push(problem(
                "InvalidTelegramToken",
                "spec.telegram.tokenSecretRef: a bot token looks like 123456789:AA… (digits, a colon, 35 characters)",
            ));
    }
    if let Some(e) = &spec.email {
        if !email_ok(&e.sender) {
            problems.push(problem(
                "InvalidEmailAddress",
                format!("spec.email.sender: `{}` is not an email address", e.sender),
            ));
        }
        for (i, r) in e.recipients.iter().enumerate() {
            if !email_ok(r) {
                problems.push(problem(
                    "InvalidEmailAddress",
                    format!("spec.email.recipients[{i}]: `{r}` is not an email address"),
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_checks() {
        assert!(telegram_token_ok("123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        assert!(!telegram_token_ok("123:abc"));
        assert!(http_url_ok("https://hooks.slack.com/services/A/B/C"));
        assert!(!http_url_ok("ftp://x") && !http_url_ok("https://"));
        assert!(email_ok("alerts@acme.example") && email_ok("Alerts <alerts@acme.example>"));
        assert!(!email_ok("alerts") && !email_ok("a@b"));
    }
}
