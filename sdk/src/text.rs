//! Splitting long text into pieces a speech service accepts in one request.
//!
//! Cloud voices limit one request (Azure: ten minutes of audio and 64 KB of SSML), so long
//! text is sent in pieces and the audio joined (see [`crate::media`]). Where a piece ends is
//! audible: a cut inside a sentence changes its intonation. [`split_text`] therefore cuts at
//! the last boundary that fits, preferring, in order:
//!
//! 1. a sentence end: `.` `!` `?` `…` followed by whitespace or by a CJK character (mixed
//!    text such as `OK.好的。` puts no space between sentences; `3.14` is still not one), any of
//!    `。！？；…．｡` and their small and doubled forms (`﹒﹗﹖﹔‼⁇⁈⁉`), or a line break;
//!    closing quotes and brackets stay with their sentence;
//! 2. a clause mark: `,` `;` `:` followed by whitespace or a CJK character, or `，、：﹐﹑﹕`;
//! 3. whitespace;
//! 4. a character boundary that does not separate a combining mark, variation selector or
//!    joined emoji from the character it belongs to.
//!
//! Pieces are slices of the input with the whitespace at the cuts trimmed, and never empty.
//!
//! # Example
//!
//! ```
//! use launcher_sdk::text::{split_text, Limit};
//!
//! let pieces = split_text("第一句。第二句！Third one. Fourth.", Limit::bytes(24));
//! assert_eq!(pieces, ["第一句。第二句！", "Third one. Fourth."]);
//! ```

/// How large one piece may be; a piece stays within every limit set.
///
/// UTF-8 bytes approximate speaking time well: a CJK character takes three bytes and about
/// three times as long to speak as a Latin letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    max_bytes: usize,
    max_chars: usize,
}

impl Limit {
    /// Returns a limit of `max` UTF-8 bytes per piece.
    pub fn bytes(max: usize) -> Self {
        Limit {
            max_bytes: max,
            max_chars: usize::MAX,
        }
    }

    /// Returns a limit of `max` characters (Unicode scalar values) per piece.
    pub fn chars(max: usize) -> Self {
        Limit {
            max_bytes: usize::MAX,
            max_chars: max,
        }
    }

    /// Returns this limit with a maximum of `max` bytes added.
    pub fn and_bytes(self, max: usize) -> Self {
        Limit {
            max_bytes: max,
            ..self
        }
    }

    /// Returns this limit with a maximum of `max` characters added.
    pub fn and_chars(self, max: usize) -> Self {
        Limit {
            max_chars: max,
            ..self
        }
    }

    fn fits(&self, text: &str) -> bool {
        text.len() <= self.max_bytes && text.chars().count() <= self.max_chars
    }
}

/// Splits `text` into pieces within `limit`, cutting at the best boundary that fits (see the
/// module documentation).
///
/// Leading and trailing whitespace is dropped, and so is the whitespace at each cut; nothing
/// else is. A limit smaller than a single character still makes progress: that character (with
/// its combining marks, if they fit) becomes a piece of its own.
pub fn split_text(text: &str, limit: Limit) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if limit.fits(rest) {
            pieces.push(rest);
            break;
        }
        let cut = cut_point(rest, limit);
        let piece = rest[..cut].trim_end();
        // `rest` starts with a non-space character and `cut` is past it, so this holds.
        debug_assert!(!piece.is_empty());
        pieces.push(piece);
        rest = rest[cut..].trim_start();
    }
    pieces
}

/// Returns where the first piece of `text`, which does not fit `limit`, ends: always after at
/// least one character, and at the best boundary within the limit.
fn cut_point(text: &str, limit: Limit) -> usize {
    // The longest prefix within the limit.
    let mut fit = 0;
    for (count, (i, c)) in text.char_indices().enumerate() {
        let end = i + c.len_utf8();
        if end > limit.max_bytes || count + 1 > limit.max_chars {
            break;
        }
        fit = end;
    }
    let window = &text[..fit];
    let mut sentence = None;
    let mut clause = None;
    let mut space = None;
    let mut chars = window.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            if i > 0 {
                space = Some(i);
            }
            if c == '\n' || c == '\r' {
                sentence = Some(i + c.len_utf8());
            }
            continue;
        }
        let spaced_end = matches!(c, '.' | '!' | '?' | '…');
        let cjk_end = is_wide_end(c);
        let spaced_clause = matches!(c, ',' | ';' | ':');
        let cjk_clause = matches!(c, '，' | '、' | '：' | '﹐' | '﹑' | '﹕');
        if !(spaced_end || cjk_end || spaced_clause || cjk_clause) {
            continue;
        }
        // Repeated marks and closing quotes belong to the boundary: `?!`, `……`, `。」`.
        let mut end = i + c.len_utf8();
        while let Some(&(j, next)) = chars.peek() {
            let same_kind = (spaced_end || cjk_end) && is_terminal(next);
            if !(same_kind || is_closer(next)) {
                break;
            }
            end = j + next.len_utf8();
            chars.next();
        }
        // Chinese and Japanese put no space after a sentence, even after Latin punctuation.
        let followed_by_space = text[end..]
            .chars()
            .next()
            .is_none_or(|next| next.is_whitespace() || is_cjk(next));
        if cjk_end || (spaced_end && followed_by_space) {
            sentence = Some(end);
        } else if cjk_clause || (spaced_clause && followed_by_space) {
            clause = Some(end);
        }
    }
    sentence
        .or(clause)
        .or(space)
        .unwrap_or_else(|| cluster_boundary(text, fit))
}

/// Sentence-ending marks that may repeat or combine (`?!`, `……`, `！？`).
fn is_terminal(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…') || (is_wide_end(c) && !matches!(c, '；' | '﹔'))
}

/// Full-width, small and doubled sentence ends, which need no space after them.
fn is_wide_end(c: char) -> bool {
    matches!(
        c,
        '。' | '！'
            | '？'
            | '；'
            | '…'
            | '．'
            | '｡'
            | '﹒'
            | '﹔'
            | '﹖'
            | '﹗'
            | '‼'
            | '⁇'
            | '⁈'
            | '⁉'
    )
}

/// Returns whether `c` is written without spaces around it: Han, kana, Hangul syllables,
/// and full-width forms.
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}'      // hiragana, katakana
        | '\u{3400}'..='\u{4DBF}'    // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'    // CJK unified ideographs
        | '\u{AC00}'..='\u{D7AF}'    // Hangul syllables
        | '\u{F900}'..='\u{FAFF}'    // CJK compatibility ideographs
        | '\u{FF01}'..='\u{FF60}'    // full-width forms
        | '\u{20000}'..='\u{2FA1F}') // supplementary ideographs
}

/// Closing quotes and brackets that belong to the sentence or clause they follow.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\''
            | ')'
            | ']'
            | '}'
            | '”'
            | '’'
            | '」'
            | '』'
            | '》'
            | '〉'
            | '）'
            | '】'
            | '〕'
            | '］'
            | '｝'
    )
}

/// Returns whether `c` extends the character before it rather than starting a new one.
fn is_extending(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'       // combining diacritical marks
        | '\u{1160}'..='\u{11FF}'     // Hangul medial and final jamo
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{200C}'..='\u{200D}'     // zero-width (non-)joiner
        | '\u{20D0}'..='\u{20FF}'
        | '\u{3099}'..='\u{309A}'     // kana voiced sound marks
        | '\u{FE00}'..='\u{FE0F}'     // variation selectors
        | '\u{FE20}'..='\u{FE2F}'
        | '\u{1F3FB}'..='\u{1F3FF}'   // emoji skin tones
        | '\u{E0020}'..='\u{E007F}'   // emoji tag sequences
        | '\u{E0100}'..='\u{E01EF}')
}

/// Returns the last cut at or before `fit` that does not separate a character from the marks
/// that extend it (or the character after a zero-width joiner from the joiner); if the first
/// cluster alone is longer than `fit`, returns the end of its first character.
fn cluster_boundary(text: &str, fit: usize) -> usize {
    let mut cut = fit;
    while cut > 0 {
        let next = text[cut..].chars().next();
        let prev = text[..cut].chars().next_back();
        let joined = next.is_some_and(is_extending) || prev == Some('\u{200D}');
        if !joined {
            return cut;
        }
        cut -= prev.map_or(1, char::len_utf8);
    }
    // One cluster is longer than the limit: cut after the whole cluster if that is all it
    // takes, else after its first character, so the caller always makes progress.
    let first = text.chars().next().map_or(0, char::len_utf8);
    first.max(fit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the promises every split keeps, and returns the pieces.
    fn split(text: &str, limit: Limit) -> Vec<&str> {
        let pieces = split_text(text, limit);
        let mut at = 0;
        for piece in &pieces {
            assert!(!piece.is_empty(), "an empty piece in {pieces:?}");
            assert!(
                limit.fits(piece) || piece.chars().count() == 1,
                "{piece:?} is over {limit:?}"
            );
            // Every piece is a slice of the input, in order, with only whitespace between.
            let start = piece.as_ptr() as usize - text.as_ptr() as usize;
            assert!(
                text[at..start].trim().is_empty(),
                "text lost before {piece:?}"
            );
            at = start + piece.len();
        }
        assert!(text[at..].trim().is_empty(), "text lost at the end");
        pieces
    }

    #[test]
    fn short_text_is_one_trimmed_piece() {
        assert_eq!(split("  Hello.  ", Limit::bytes(100)), ["Hello."]);
        assert!(split(" \n\t ", Limit::bytes(100)).is_empty());
        assert!(split("", Limit::chars(10)).is_empty());
    }

    #[test]
    fn english_splits_at_the_last_sentence_that_fits() {
        let text = "One two. Three four! Five six? Seven.";
        assert_eq!(
            split(text, Limit::bytes(22)),
            ["One two. Three four!", "Five six? Seven."]
        );
        // A dot inside a number or a name is not a sentence end.
        assert_eq!(
            split("Pi is 3.14 and e is 2.71, roughly.", Limit::bytes(20)),
            ["Pi is 3.14 and e is", "2.71, roughly."]
        );
    }

    #[test]
    fn closing_quotes_and_repeated_marks_stay_with_the_sentence() {
        assert_eq!(
            split("He said \"stop!\" Then left.", Limit::bytes(18)),
            ["He said \"stop!\"", "Then left."]
        );
        assert_eq!(
            split("Really?! Yes.", Limit::bytes(10)),
            ["Really?!", "Yes."]
        );
        assert_eq!(
            split("「你好。」他说。", Limit::bytes(16)),
            ["「你好。」", "他说。"]
        );
    }

    #[test]
    fn chinese_and_japanese_split_without_spaces() {
        let text = "今天天气很好。我们去公园吧！好吗？";
        assert_eq!(
            split(text, Limit::chars(10)),
            ["今天天气很好。", "我们去公园吧！好吗？"]
        );
        assert_eq!(
            split("これはペンです。あれは本です。", Limit::bytes(30)),
            ["これはペンです。", "あれは本です。"]
        );
        assert_eq!(
            split("等一下……好的。", Limit::chars(6)),
            ["等一下……", "好的。"]
        );
    }

    #[test]
    fn mixed_chinese_and_english_split_without_spaces_between_sentences() {
        assert_eq!(
            split(
                "It works.好的，我们继续。Next step!下一步？",
                Limit::chars(12)
            ),
            ["It works.", "好的，我们继续。", "Next step!", "下一步？"]
        );
        // A number's dot before a Chinese character is still no sentence end.
        assert_eq!(
            split("版本3.14很好用，真的。", Limit::chars(10)),
            ["版本3.14很好用，", "真的。"]
        );
        assert_eq!(
            split("太好了‼真的吗⁉是的﹗", Limit::chars(6)),
            ["太好了‼", "真的吗⁉", "是的﹗"]
        );
        assert_eq!(
            split("第一，second, 第三﹐fourth", Limit::chars(12)),
            ["第一，second,", "第三﹐fourth"]
        );
    }

    #[test]
    fn line_breaks_are_boundaries() {
        assert_eq!(
            split("a heading\nthe body goes on", Limit::bytes(20)),
            ["a heading", "the body goes on"]
        );
    }

    #[test]
    fn long_sentences_fall_back_to_clauses_then_spaces() {
        assert_eq!(
            split("first part, second part, third part", Limit::bytes(26)),
            ["first part, second part,", "third part"]
        );
        assert_eq!(
            split("我们先去北京，然后去上海、广州", Limit::chars(9)),
            ["我们先去北京，", "然后去上海、广州"]
        );
        // 1,000 is not a clause.
        assert_eq!(
            split("about 1,000 words here", Limit::bytes(12)),
            ["about 1,000", "words here"]
        );
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut_at_a_char_boundary() {
        assert_eq!(split("abcdefgh", Limit::bytes(3)), ["abc", "def", "gh"]);
        // Three-byte characters are never split, whatever the byte limit.
        assert_eq!(split("中文字符串", Limit::bytes(7)), ["中文", "字符", "串"]);
        // A limit smaller than one character still makes progress.
        assert_eq!(split("中文", Limit::bytes(1)), ["中", "文"]);
    }

    #[test]
    fn combining_marks_stay_with_their_letter() {
        // "e" + combining acute, twice.
        let text = "e\u{301}e\u{301}";
        assert_eq!(split(text, Limit::bytes(4)), ["e\u{301}", "e\u{301}"]);
        // Kana with a combining voiced mark.
        let text = "か\u{3099}か\u{3099}";
        assert_eq!(split(text, Limit::bytes(8)), ["か\u{3099}", "か\u{3099}"]);
        // A family emoji joined with zero-width joiners stays whole when it fits.
        let family = "\u{1F468}\u{200D}\u{1F469}";
        let text = format!("{family}{family}");
        assert_eq!(split(&text, Limit::bytes(12)), [family, family]);
    }

    #[test]
    fn both_limits_apply() {
        let limit = Limit::chars(100).and_bytes(9);
        assert_eq!(split("一二三四五", limit), ["一二三", "四五"]);
        let limit = Limit::bytes(100).and_chars(4);
        assert_eq!(split("abcdefg", limit), ["abcd", "efg"]);
    }

    #[test]
    fn long_mixed_text_keeps_every_promise() {
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(match i % 5 {
                0 => "The quick brown fox jumps over the lazy dog. ",
                1 => "敏捷的棕色狐狸跳过了懒狗。",
                2 => "Wait… what?! ",
                3 => "e\u{301}clair, cafe\u{301}, and tea;\n",
                _ => "長い文章を分割します、そして結合します。",
            });
        }
        for limit in [
            Limit::bytes(1),
            Limit::bytes(5),
            Limit::bytes(64),
            Limit::bytes(3000),
            Limit::chars(7),
            Limit::chars(120).and_bytes(200),
        ] {
            split(&text, limit);
        }
    }
}
