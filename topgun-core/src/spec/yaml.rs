//! Reading a spec from YAML: size and shape limits checked on the text
//! before the parser sees it, and the parser's messages with their line.

/// The YAML parser's message. serde_norway puts "at line L column C" in it;
/// make sure it is there even when an error has only a location.
/// The largest config file topgun reads.
pub(crate) const MAX_CONFIG_BYTES: u64 = topgun_tls::read::MAX_CONFIG;
/// The deepest nesting a config file may have.
pub(crate) const MAX_YAML_DEPTH: usize = 32;

/// Refuses YAML that nests deeper than [`MAX_YAML_DEPTH`] (flow brackets or
/// indentation) or uses aliases (`*name`, which can expand exponentially):
/// checked on the text, before the parser sees it.
pub(crate) fn check_yaml_shape(text: &str) -> std::result::Result<(), String> {
    let mut depth: usize = 0;
    let mut quote: Option<char> = None;
    for (n, line) in text.lines().enumerate() {
        let content = line.trim_start();
        if quote.is_none() && (content.starts_with('#') || content.is_empty()) {
            continue;
        }
        let indent = (line.len() - content.len()) / 2;
        if indent > MAX_YAML_DEPTH {
            return Err(format!(
                "line {}: nested deeper than {MAX_YAML_DEPTH} levels",
                n + 1
            ));
        }
        let mut prev = ' ';
        for c in content.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') if prev == ' ' => break,
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > MAX_YAML_DEPTH {
                        return Err(format!(
                            "line {}: nested deeper than {MAX_YAML_DEPTH} levels",
                            n + 1
                        ));
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                (None, '*') if prev == ' ' || prev == '[' => {
                    return Err(format!(
                        "line {}: YAML aliases (`*name`) are not accepted in a config file; write \
                         the value out",
                        n + 1
                    ));
                }
                _ => {}
            }
            prev = c;
        }
        // Plain scalars do not continue quotes across lines in config files
        // topgun reads; a stray quote ends with its line.
        if quote == Some('\'') {
            quote = None;
        }
    }
    Ok(())
}

pub(super) fn yaml_message(e: &serde_norway::Error) -> String {
    // The parser quotes the value it choked on: never a key, at most a
    // short excerpt.
    let message = topgun_tls::redact::parser_message(&e.to_string());
    match e.location() {
        Some(loc) if !message.contains("line") => {
            format!("line {} column {}: {message}", loc.line(), loc.column())
        }
        _ => message,
    }
}
