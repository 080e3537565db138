//! Keeping file contents out of messages: parser errors (YAML, JSON) quote
//! the value they choke on, which may be a private key or a token. Every
//! message built from a parser error goes through [`parser_message`].

/// The longest quoted value a message keeps whole.
const MAX_EXCERPT: usize = 16;

/// `message` with every quoted value (`"..."`) that is long, or looks like
/// PEM or a key, replaced by a short description: a PEM private key is never
/// shown, even in part, and other values by at most their first characters.
pub fn parser_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else {
            // An unterminated quote: drop what follows it.
            out.push_str(&excerpt(after));
            return out;
        };
        out.push_str(&excerpt(&after[..end]));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A quoted value, shortened or described.
fn excerpt(value: &str) -> String {
    let chars = value.chars().count();
    let upper = value.to_ascii_uppercase();
    if upper.contains("-----BEGIN") || upper.contains("PRIVATE KEY") {
        return format!("<PEM text, {chars} characters, not shown>");
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
}
