//! Keeping file contents out of messages: parser errors (YAML, JSON) quote
//! the value they choke on, which may be a private key or a token. Every
//! message built from a parser error goes through [`parser_message`].
//!
//! Parsers of values that are never PEM (SANs, endpoints, node filters,
//! ports, ...) echo their input in errors; they refuse input that
//! [`looks_like_pem`] up front with a message that does not show it
//! ([`describe_pem`]). Messages that quote names taken from a file go
//! through [`scrub_pem`]. PEM parse errors go through [`pem_error`], which
//! never repeats the offending line.

use std::borrow::Cow;

/// The longest quoted value a message keeps whole.
const MAX_EXCERPT: usize = 16;

/// Whether `text` may hold a PEM block or a private key (`-----BEGIN` or
/// `PRIVATE KEY`, in any case): such text is never repeated in a message.
pub fn looks_like_pem(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    upper.contains("-----BEGIN") || upper.contains("PRIVATE KEY")
}

/// What a message says instead of PEM text: its size, never its contents.
pub fn describe_pem(text: &str) -> String {
    format!("<PEM text, {} characters, not shown>", text.chars().count())
}

/// `text` as a message may show it: itself, or [`describe_pem`] when it
/// [`looks_like_pem`].
pub fn shown(text: &str) -> Cow<'_, str> {
    if looks_like_pem(text) {
        Cow::Owned(describe_pem(text))
    } else {
        Cow::Borrowed(text)
    }
}

/// `message` with every quoted value (`"..."`) that is long, or looks like
/// PEM or a key, replaced by a short description: a PEM private key is never
/// shown, even in part, and other values by at most their first characters.
/// Quoted values may contain escaped quotes (`\"`), as `{:?}` writes them.
/// Values in backticks (serde's `unknown variant \`...\``) and unquoted PEM
/// blocks are described when they look like PEM, and kept otherwise.
pub fn parser_message(message: &str) -> String {
    rewrite_quoted(message, excerpt)
}

/// `message` with every quoted value that looks like PEM (and every
/// unquoted PEM block) replaced by [`describe_pem`]; other values stay
/// whole. For messages that quote names read from a file.
pub fn scrub_pem(message: &str) -> String {
    if !looks_like_pem(message) {
        return message.to_owned();
    }
    rewrite_quoted(message, |value| {
        if looks_like_pem(value) {
            describe_pem(value)
        } else {
            format!("\"{value}\"")
        }
    })
}

/// Rewrites `message`: each `"..."` value through `quoted` (without its
/// quotes), each `` `...` `` value that looks like PEM described, and PEM
/// blocks in the text between described.
fn rewrite_quoted(message: &str, quoted: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        out.push_str(&scrub_unquoted(&rest[..start]));
        let quote = &rest[start..start + 1];
        let after = &rest[start + 1..];
        let end = if quote == "\"" {
            closing_quote(after)
        } else {
            after.find('`')
        };
        let Some(end) = end else {
            // An unterminated quote: what follows is one value.
            if quote == "\"" {
                out.push_str(&quoted(after));
            } else {
                out.push('`');
                out.push_str(&shown(after));
            }
            return out;
        };
        let value = &after[..end];
        if quote == "\"" {
            out.push_str(&quoted(value));
        } else if looks_like_pem(value) {
            out.push_str(&describe_pem(value));
        } else {
            out.push('`');
            out.push_str(value);
            out.push('`');
        }
        rest = &after[end + 1..];
    }
    out.push_str(&scrub_unquoted(rest));
    out
}

/// A PEM parse error in words, without the line it choked on (which may be
/// part of a key: a `-----BEGIN` line joined with the key's first line).
pub fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { end_marker } => {
            let label = String::from_utf8_lossy(end_marker);
            if label.len() <= 40 && !label.contains('-') {
                format!("the {label} block has no -----END line")
            } else {
                "a PEM block has no -----END line (are its lines joined?)".to_owned()
            }
        }
        E::IllegalSectionStart { .. } => {
            "a -----BEGIN line is malformed (it must end with five dashes, on a line of its own)"
                .to_owned()
        }
        E::Base64Decode(_) => "a PEM block is not valid base64".to_owned(),
        other => format!("malformed PEM ({})", pem_error_kind(other)),
    }
}

fn pem_error_kind(e: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::Io(_) => "read error",
        E::NoItemsFound => "no PEM blocks",
        _ => "unreadable",
    }
}

/// The end of a quoted value that starts right after a `"`: the next `"`
/// not escaped by a backslash.
fn closing_quote(after: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in after.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// `text` (outside quotes) with each PEM block, from `-----BEGIN` to the end
/// of its `-----END ...-----` marker or of the text, described instead.
fn scrub_unquoted(text: &str) -> Cow<'_, str> {
    let upper = text.to_ascii_uppercase();
    let Some(begin) = upper.find("-----BEGIN") else {
        return Cow::Borrowed(text);
    };
    let end = upper[begin..]
        .find("-----END")
        .map(|e| begin + e + "-----END".len())
        .and_then(|e| upper[e..].find("-----").map(|d| e + d + "-----".len()))
        .unwrap_or(text.len());
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..begin]);
    out.push_str(&describe_pem(&text[begin..end]));
    out.push_str(&scrub_unquoted(&text[end..]));
    Cow::Owned(out)
}

/// A quoted value, shortened or described.
fn excerpt(value: &str) -> String {
    let chars = value.chars().count();
    if looks_like_pem(value) {
        return describe_pem(value);
    }
    if chars <= MAX_EXCERPT {
        return format!("\"{value}\"");
    }
    let head: String = value.chars().take(8).collect();
    format!("\"{head}…\" ({chars} characters)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_never_shown_and_long_values_are_cut() {
        let pem =
            "invalid type: string \"-----BEGIN PRIVATE KEY----- MIGHAgEAMBMG\", expected struct X";
        let m = parser_message(pem);
        assert!(!m.contains("MIGH"), "{m}");
        assert!(
            m.contains("not shown") && m.contains("expected struct X"),
            "{m}"
        );
        let m = parser_message("invalid value: string \"0123456789abcdefghijkl\", expected a port");
        assert!(m.contains("\"01234567…\" (22 characters)"), "{m}");
        assert!(!m.contains("89abcdef"), "{m}");
        assert_eq!(
            parser_message("unknown field `x`, expected \"a\""),
            "unknown field `x`, expected \"a\""
        );
        assert!(!parser_message("bad \"-----BEGIN RSA PRIVATE KEY-----\nAAAA").contains("AAAA"));
    }

    /// A quoted value with an escaped quote (`{:?}` of `x"-----BEGIN ...`)
    /// ended at the escape, and the key after it was copied out whole.
    #[test]
    fn escaped_quotes_do_not_end_a_quoted_key() {
        let m = parser_message(
            "invalid type: string \"x\\\"-----BEGIN PRIVATE KEY-----\\nMIGHAgEAMBMG\", expected X",
        );
        assert!(!m.contains("MIGH"), "{m}");
        assert!(
            m.contains("not shown") && m.ends_with(", expected X"),
            "{m}"
        );
    }

    #[test]
    fn scrub_pem_describes_only_pem() {
        assert_eq!(
            scrub_pem("context \"a-long-context-name-here\" is not defined"),
            "context \"a-long-context-name-here\" is not defined"
        );
        let m = scrub_pem("context \"-----BEGIN PRIVATE KEY-----\\nMIGHAgEA\" and user \"u\" ");
        assert!(!m.contains("MIGH") && m.contains("user \"u\""), "{m}");
        let m = scrub_pem(
            "raw -----BEGIN EC PRIVATE KEY----- MIGHAgEA -----END EC PRIVATE KEY----- after",
        );
        assert!(!m.contains("MIGH") && m.ends_with(" after"), "{m}");
        let m = scrub_pem("cut -----BEGIN PRIVATE KEY----- MIGHAgEA");
        assert!(!m.contains("MIGH"), "{m}");
        assert_eq!(scrub_pem("found PRIVATE KEY"), "found PRIVATE KEY");
    }

    #[test]
    fn pem_errors_never_repeat_the_line() {
        let key = "-----BEGIN PRIVATE KEY-----MIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n";
        use rustls_pki_types::pem::PemObject;
        let e = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap_err();
        assert!(
            format!("{e}").contains("77, 73, 71, 72"),
            "rustls shows the line: {e}"
        );
        let m = pem_error(&e);
        assert!(!m.contains("77, 73, 71, 72") && !m.contains("MIGH"), "{m}");
        assert!(m.contains("-----BEGIN line is malformed"), "{m}");
    }

    /// Found by topgun-core's `tests/fuzz.rs` (core::ClusterSpec::from_yaml
    /// (keys)): serde quotes an unknown variant in backticks, which were
    /// passed through whole, key and all.
    #[test]
    fn fuzz_regression_backticked_keys_are_described() {
        let m = parser_message(
            "datastore: unknown variant `\"\"-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n\"`, expected one of `embedded`, `etcd`",
        );
        assert!(!m.contains("AAAAAAAA"), "{m}");
        assert!(
            m.contains("not shown") && m.ends_with("expected one of `embedded`, `etcd`"),
            "{m}"
        );
        // A backtick inside the value: the PEM between is still described.
        let m = parser_message(
            "unknown variant `a`-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAA`, expected x",
        );
        assert!(!m.contains("AAAAAAAA"), "{m}");
    }
}
