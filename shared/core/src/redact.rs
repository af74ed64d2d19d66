//! Credential redaction for anything that may carry a URL: log lines, error messages,
//! status bodies. `user:pass@host` becomes `user:***@host`, `token@host` becomes `***@host`.

/// Characters that end a URL's authority, in a URL or in the text around it. Not `,`, `)` or
/// `'`: a password may hold them literally (RFC 3986 sub-delims), and a URL list such as
/// `failover(kafka://a:9092/t, …)` is covered because the scan never passes the userinfo.
const AUTHORITY_ENDS: [char; 10] = ['/', '?', '#', ' ', '"', '\n', '\r', '\t', '<', '>'];

/// Redacts the userinfo of every URL (`scheme://userinfo@host…`) found in `text`.
///
/// Works on free text, so a URL inside an error message or a `failover(…)` list is covered too.
/// After a URL's `://` the scan goes on from its `@` (or, without one, right there), so a URL
/// that follows another in a list (`kafka://a:9092,kafka://u:p@b:9092`) is found too.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority = &after[..after.find(AUTHORITY_ENDS).unwrap_or(after.len())];
        rest = match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str(&hidden(&authority[..userinfo_end]));
                &after[userinfo_end..]
            }
            None => after,
        };
    }
    out.push_str(rest);
    out
}

/// Like [`redact`], for a value that may start with an authority and no scheme, where a caller
/// gave one although no URL is expected: an image reference (`user:pass@host/path:tag`) or a
/// registry (`user:pass@host:port`).
pub fn redact_reference(text: &str) -> String {
    if text.contains("://") {
        return redact(text);
    }
    let authority = &text[..text.find(AUTHORITY_ENDS).unwrap_or(text.len())];
    match authority.rfind('@') {
        Some(userinfo_end) => hidden(&authority[..userinfo_end]) + &text[userinfo_end..],
        None => text.to_owned(),
    }
}

/// A userinfo as shown: `user:***`, or `***` for a lone token. A user with an `@` is a token
/// followed by more text: it is hidden whole.
fn hidden(userinfo: &str) -> String {
    match userinfo.split_once(':') {
        Some((user, _password)) if !user.contains('@') => format!("{user}:***"),
        _ => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, redact_reference};

    #[test]
    fn a_reference_without_a_scheme_is_redacted_too() {
        for (input, expected) in [
            ("u:p4ss@h/x:1", "u:***@h/x:1"),
            ("bot:pw@registry.example:5000", "bot:***@registry.example:5000"),
            ("token@registry.example/org/app:1", "***@registry.example/org/app:1"),
            ("registry.example/org/app:1", "registry.example/org/app:1"),
            ("docker://u:p@h/x:1", "docker://u:***@h/x:1"),
        ] {
            assert_eq!(redact_reference(input), expected, "{input}");
        }
    }

    #[test]
    fn user_and_password_keep_the_user() {
        assert_eq!(redact("https://user:pass@example.com/logs"), "https://user:***@example.com/logs");
    }

    #[test]
    fn a_lone_token_is_hidden_whole() {
        assert_eq!(redact("https://token@example.com/hooks/status"), "https://***@example.com/hooks/status");
    }

    #[test]
    fn every_url_kind_is_redacted() {
        for (input, expected) in [
            ("http://u:p@h:8080", "http://u:***@h:8080"),
            ("docker://user:s3cret@registry.example.com/org/repo:tag", "docker://user:***@registry.example.com/org/repo:tag"),
            ("kafka://svc:pw@10.0.0.1:9092/buildlogs", "kafka://svc:***@10.0.0.1:9092/buildlogs"),
            ("failover(kafka://a:x@b1:9092/t, kafka://c:y@b2:9092/t)", "failover(kafka://a:***@b1:9092/t, kafka://c:***@b2:9092/t)"),
            ("https://h.example/path?q=1", "https://h.example/path?q=1"),
        ] {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn urls_inside_free_text_are_redacted() {
        let message = "GET https://bot:hunter2@src.example/a.tgz failed; retrying docker://x@r.example/i:1";
        let redacted = redact(message);
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert_eq!(redacted, "GET https://bot:***@src.example/a.tgz failed; retrying docker://***@r.example/i:1");
    }

    #[test]
    fn a_password_with_an_at_sign_is_still_hidden() {
        assert_eq!(redact("https://u:p@ss@h.example/x"), "https://u:***@h.example/x");
    }

    #[test]
    fn a_password_with_sub_delims_is_still_hidden() {
        // Found by the fuzz suite: `'`, `,` and `)` are allowed in a URL's userinfo as they are.
        for (input, expected) in [
            ("https://u:pa'ss@h.example/x", "https://u:***@h.example/x"),
            ("https://u:pa,ss@h.example/x", "https://u:***@h.example/x"),
            ("failover(kafka://u:p)w@b1:9092/t", "failover(kafka://u:***@b1:9092/t"),
            ("'https://x:it's@h.example'", "'https://x:***@h.example'"),
        ] {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn a_url_after_another_in_a_list_is_redacted() {
        // Found by the fuzz suite: the scan used to swallow the next URL's scheme.
        assert_eq!(redact("kafka://b1:9092,kafka://u:pw@b2:9092/t"), "kafka://b1:9092,kafka://u:***@b2:9092/t");
        assert_eq!(redact("x://https://u:pw@h.example"), "x://https://u:***@h.example");
        assert_eq!(redact("see https://h.example, and kafka://u:pw@b:9092/t"), "see https://h.example, and kafka://u:***@b:9092/t");
    }

    #[test]
    fn a_token_followed_by_an_at_sign_is_still_hidden() {
        // Found by the fuzz suite: the last `@` ends the userinfo, and its first `:` ended the
        // "user", who was shown: the token itself.
        assert_eq!(redact("https://t0ken@h.example:1@x"), "https://***@x");
    }

    #[test]
    fn text_without_urls_is_unchanged() {
        assert_eq!(redact("Build #3 sha #abcdef"), "Build #3 sha #abcdef");
    }
}
