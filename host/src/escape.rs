//! Terminal safety: text launcher did not write itself (from a registry, a plugin manifest, a
//! service's error, a plugin's log) is made harmless before it reaches a terminal.
//!
//! Such text could carry escape sequences (colors, an OSC sequence retitling the window or
//! writing the clipboard), bidi overrides that make `evil` read as `live`, or invisible
//! characters that make two names look alike. Every printer passes it through [`printable`],
//! which shows each such character as a visible Rust-style escape (`\u{1b}`, `\u{202e}`)
//! rather than dropping it, so the user sees that something was there. JSON output is not
//! escaped this way: serde already escapes control characters, and scripts get the exact
//! text.

use std::borrow::Cow;

/// Returns `text` safe to print on a terminal: control characters (C0, DEL and C1, which
/// start every escape sequence), bidi controls and invisible formatting characters are shown
/// as `\u{..}` escapes; line breaks and tabs are kept. Borrows when nothing needs escaping,
/// which is almost always.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Returns whether `c` must not reach a terminal as itself.
fn needs_escape(c: char) -> bool {
    if c == '\n' || c == '\t' {
        return false;
    }
    // `is_control` is Unicode's Cc: C0, DEL and C1 (ESC, CSI and OSC among them).
    c.is_control() || is_bidi_control(c) || is_invisible_format(c)
}

/// The bidi controls: embeddings and overrides, isolates, and the directional marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that print as nothing (or as a blank) yet change what a name is. The zero-width
/// joiner and non-joiner are left alone: scripts such as Persian and Devanagari, and emoji,
/// need them, and they cannot make one name look like another on their own.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                       // soft hyphen
        | '\u{034F}'                     // combining grapheme joiner
        | '\u{115F}' | '\u{1160}'        // Hangul fillers, which render blank
        | '\u{180E}'                     // Mongolian vowel separator
        | '\u{200B}'                     // zero-width space
        | '\u{2028}' | '\u{2029}'        // line and paragraph separators
        | '\u{2060}'..='\u{2064}'        // word joiner, invisible operators
        | '\u{206A}'..='\u{206F}'        // deprecated formatting controls
        | '\u{3164}' | '\u{FFA0}'        // Hangul fillers
        | '\u{FEFF}'                     // zero-width no-break space (BOM)
        | '\u{FFF9}'..='\u{FFFB}'        // interlinear annotation
        | '\u{E0000}'..='\u{E007F}' // tag characters
    )
}

/// `println!` for text that quotes a plugin manifest, a registry or a service: the line is
/// made [`printable`] first. Listings use it for every line they print as text.
macro_rules! println_printable {
    ($($arg:tt)*) => {
        println!("{}", $crate::escape::printable(&format!($($arg)*)))
    };
}
pub(crate) use println_printable;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let text = "你好 — a red fox\n\twith tabs";
        assert!(matches!(printable(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        assert_eq!(
            printable("\u{1b}[31mred\u{1b}[0m"),
            "\\u{1b}[31mred\\u{1b}[0m"
        );
        // An OSC window title, ended by BEL, and by the C1 string terminator.
        assert_eq!(printable("\u{1b}]0;pwned\u{7}x"), "\\u{1b}]0;pwned\\u{7}x");
        assert_eq!(printable("\u{9d}0;t\u{9c}"), "\\u{9d}0;t\\u{9c}");
        assert_eq!(printable("a\rb\u{8}\u{7f}"), "a\\u{d}b\\u{8}\\u{7f}");
    }

    #[test]
    fn bidi_controls_are_shown() {
        assert_eq!(printable("safe\u{202E}txt.exe"), "safe\\u{202e}txt.exe");
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{2066}', '\u{2067}', '\u{2068}',
            '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            assert_eq!(printable(&c.to_string()), c.escape_unicode().to_string());
        }
    }

    #[test]
    fn invisible_characters_are_shown_but_joiners_kept() {
        assert_eq!(printable("es\u{200B}peak"), "es\\u{200b}peak");
        assert_eq!(printable("\u{FEFF}x\u{E0041}"), "\\u{feff}x\\u{e0041}");
        assert_eq!(printable("a\u{2028}b"), "a\\u{2028}b");
        let family = "👩\u{200D}👧";
        assert_eq!(printable(family), family);
    }
}
