//! Azure AI Speech wire shapes: output formats, SSML, text splitting and audio joining.
//!
//! One synthesis request should stay well under the service's limits (ten minutes of audio,
//! 64 KB of SSML), so long text is split at sentence boundaries into parts of at most
//! [`MAX_PART_UNITS`], each part is synthesized on its own, and the audio is joined into one
//! file the way its container allows:
//!
//! - RIFF/WAV: one header with the right sizes over the concatenated samples;
//! - MP3 and headerless PCM, A-law, µ-law: plain concatenation, which these formats allow;
//! - Ogg Opus: a chained Ogg stream (see [`OggChain`]);
//! - WebM, container-less Opus, SILK and AMR-WB: refused, with a hint to pick another format.

use std::collections::HashSet;

use launcher_sdk::PluginError;

/// The voice used when none is given and the text is not mostly Chinese, Japanese or Korean.
pub const DEFAULT_VOICE: &str = "en-US-AvaMultilingualNeural";

/// The most text one request carries, in units where a CJK character counts three (it takes
/// about three times as long to speak as a Latin letter). 3000 units is under four minutes of
/// speech at normal speed, and under eight at the slowest rate, so no part nears the ten
/// minutes after which the service silently cuts audio off.
pub const MAX_PART_UNITS: usize = 3000;

/// How audio in a format can be joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// A RIFF/WAV file: one header, then samples.
    Riff,
    /// A headerless stream of self-delimiting frames or samples: MP3, raw PCM, A-law, µ-law.
    Stream,
    /// An Ogg stream.
    Ogg,
    /// A format whose parts cannot be put together into one valid file.
    Unjoinable,
}

/// An output format the service offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// The name sent in `X-Microsoft-OutputFormat`.
    pub name: &'static str,
    /// The media type of the output.
    pub media_type: &'static str,
    /// The file name extension of the output.
    pub extension: &'static str,
    /// How parts are joined.
    pub container: Container,
}

const fn format(
    name: &'static str,
    media_type: &'static str,
    extension: &'static str,
    container: Container,
) -> Format {
    Format {
        name,
        media_type,
        extension,
        container,
    }
}

use Container::{Ogg, Riff, Stream, Unjoinable};

/// Every format of the contract. Raw PCM is little-endian, so it is not `audio/L16`.
pub const FORMATS: &[Format] = &[
    format("riff-8khz-16bit-mono-pcm", "audio/wav", "wav", Riff),
    format("riff-22050hz-16bit-mono-pcm", "audio/wav", "wav", Riff),
    format("riff-24khz-16bit-mono-pcm", "audio/wav", "wav", Riff),
    format("riff-44100hz-16bit-mono-pcm", "audio/wav", "wav", Riff),
    format("riff-48khz-16bit-mono-pcm", "audio/wav", "wav", Riff),
    format("riff-8khz-8bit-mono-alaw", "audio/wav", "wav", Riff),
    format("riff-8khz-8bit-mono-mulaw", "audio/wav", "wav", Riff),
    format(
        "audio-16khz-32kbitrate-mono-mp3",
        "audio/mpeg",
        "mp3",
        Stream,
    ),
    format(
        "audio-16khz-64kbitrate-mono-mp3",
        "audio/mpeg",
        "mp3",
        Stream,
    ),
    format(
        "audio-16khz-128kbitrate-mono-mp3",
        "audio/mpeg",
        "mp3",
        Stream,
    ),
    format(
        "audio-24khz-48kbitrate-mono-mp3",
        "audio/mpeg",
        "mp3",
        Stream,
    ),
    format(
        "audio-24khz-96kbitrate-mono-mp3",
        "audio/mpeg",
        "mp3",
        Stream,
    ),
    format(
        "audio-24khz-160kbitrate-mono-mp3",
        "audio/mpeg",
        "mp3",
        Stream,
    ),
    format(
        "audio-48khz-96kbitrate-mono-mp3",
        "audio/mpeg",
        "mp3",
        Stream,
    ),
    format(
        "audio-48khz-192kbitrate-mono-mp3",
        "audio/mpeg",
        "mp3",
        Stream,
    ),
    format("ogg-16khz-16bit-mono-opus", "audio/ogg", "ogg", Ogg),
    format("ogg-24khz-16bit-mono-opus", "audio/ogg", "ogg", Ogg),
    format("ogg-48khz-16bit-mono-opus", "audio/ogg", "ogg", Ogg),
    format(
        "webm-16khz-16bit-mono-opus",
        "audio/webm",
        "webm",
        Unjoinable,
    ),
    format(
        "webm-24khz-16bit-mono-opus",
        "audio/webm",
        "webm",
        Unjoinable,
    ),
    format(
        "webm-24khz-16bit-24kbps-mono-opus",
        "audio/webm",
        "webm",
        Unjoinable,
    ),
    format(
        "audio-16khz-16bit-32kbps-mono-opus",
        "audio/opus",
        "opus",
        Unjoinable,
    ),
    format(
        "audio-24khz-16bit-24kbps-mono-opus",
        "audio/opus",
        "opus",
        Unjoinable,
    ),
    format(
        "audio-24khz-16bit-48kbps-mono-opus",
        "audio/opus",
        "opus",
        Unjoinable,
    ),
    format("raw-8khz-16bit-mono-pcm", "audio/pcm", "pcm", Stream),
    format("raw-16khz-16bit-mono-pcm", "audio/pcm", "pcm", Stream),
    format("raw-22050hz-16bit-mono-pcm", "audio/pcm", "pcm", Stream),
    format("raw-24khz-16bit-mono-pcm", "audio/pcm", "pcm", Stream),
    format("raw-44100hz-16bit-mono-pcm", "audio/pcm", "pcm", Stream),
    format("raw-48khz-16bit-mono-pcm", "audio/pcm", "pcm", Stream),
    format("raw-8khz-8bit-mono-alaw", "audio/PCMA", "alaw", Stream),
    format("raw-8khz-8bit-mono-mulaw", "audio/PCMU", "ulaw", Stream),
    format(
        "raw-16khz-16bit-mono-truesilk",
        "audio/silk",
        "silk",
        Unjoinable,
    ),
    format(
        "raw-24khz-16bit-mono-truesilk",
        "audio/silk",
        "silk",
        Unjoinable,
    ),
    format("amr-wb-16000hz", "audio/AMR-WB", "amr", Unjoinable),
];

/// Short names for the common choices.
const ALIASES: &[(&str, &str)] = &[
    ("wav", "riff-24khz-16bit-mono-pcm"),
    ("mp3", "audio-24khz-96kbitrate-mono-mp3"),
    ("ogg", "ogg-24khz-16bit-mono-opus"),
    ("opus", "ogg-24khz-16bit-mono-opus"),
    ("webm", "webm-24khz-16bit-mono-opus"),
    ("pcm", "raw-24khz-16bit-mono-pcm"),
];

/// Returns the format a `--format` value names: a short name or an Azure format name.
pub fn resolve_format(requested: &str) -> Result<&'static Format, PluginError> {
    let requested = requested.trim().to_ascii_lowercase();
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == requested)
        .map_or(requested.as_str(), |(_, name)| name);
    FORMATS.iter().find(|f| f.name == name).ok_or_else(|| {
        PluginError::invalid_input(format!("unknown audio format `{requested}`")).with_hint(
            "use wav, mp3, ogg, opus, webm or pcm, or an Azure format name such as \
             riff-48khz-16bit-mono-pcm or audio-48khz-192kbitrate-mono-mp3",
        )
    })
}

/// How a voice speaks: the voice and its prosody and style.
#[derive(Debug, Clone, PartialEq)]
pub struct Speech<'a> {
    /// The voice's short name, e.g. `zh-CN-XiaoxiaoNeural`.
    pub voice: &'a str,
    /// The speaking rate as a multiplier, 1.0 is normal.
    pub rate: f64,
    /// The pitch as a multiplier, 1.0 is normal.
    pub pitch: f64,
    /// A speaking style for `mstts:express-as`.
    pub style: Option<&'a str>,
    /// How strongly the style applies, 0.01 to 2.
    pub style_degree: Option<f64>,
}

/// Returns the locale of a voice short name: everything before the last dash, so
/// `zh-CN-XiaoxiaoNeural` gives `zh-CN` and `zh-CN-henan-YundengNeural` gives `zh-CN-henan`.
pub fn locale_of(voice: &str) -> Result<&str, PluginError> {
    let bad = || {
        PluginError::invalid_input(format!("`{voice}` is not an Azure voice name"))
            .with_hint("voice names look like en-US-AvaMultilingualNeural or zh-CN-XiaoxiaoNeural")
    };
    let (locale, name) = voice.rsplit_once('-').ok_or_else(bad)?;
    let language = locale.split('-').next().unwrap_or_default();
    let well_formed = !name.is_empty()
        && locale.contains('-')
        && (2..=3).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_lowercase())
        && voice.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if well_formed { Ok(locale) } else { Err(bad()) }
}

/// Picks a voice for text when none was asked for: a native voice when the text is mostly
/// Chinese, Japanese or Korean, else the multilingual default.
pub fn default_voice(text: &str) -> &'static str {
    let (mut letters, mut han, mut kana, mut hangul) = (0usize, 0usize, 0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        match c {
            '\u{3040}'..='\u{30FF}' | '\u{31F0}'..='\u{31FF}' => kana += 1,
            '\u{AC00}'..='\u{D7AF}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}' => {
                hangul += 1;
            }
            c if is_han(c) => han += 1,
            _ => {}
        }
    }
    let dominant = |n: usize| n * 2 > letters;
    if kana > 0 && dominant(kana + han) {
        "ja-JP-NanamiNeural"
    } else if dominant(hangul) {
        "ko-KR-SunHiNeural"
    } else if dominant(han) {
        "zh-CN-XiaoxiaoNeural"
    } else {
        DEFAULT_VOICE
    }
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{2FA1F}')
}

/// Returns whether `c` is spoken like a CJK syllable (and counts three units).
fn is_wide(c: char) -> bool {
    is_han(c)
        || matches!(c, '\u{3040}'..='\u{30FF}' | '\u{AC00}'..='\u{D7AF}' | '\u{3000}'..='\u{303F}' | '\u{FF00}'..='\u{FFEF}')
}

fn units(c: char) -> usize {
    if is_wide(c) { 3 } else { 1 }
}

/// Returns the length of `text` in request units (see [`MAX_PART_UNITS`]).
pub fn text_units(text: &str) -> usize {
    text.chars().map(units).sum()
}

/// Returns a multiplier as an SSML relative percentage, or `None` for no change.
pub fn relative_percent(multiplier: f64) -> Option<String> {
    let percent = ((multiplier - 1.0) * 1000.0).round() / 10.0;
    if percent == 0.0 {
        None
    } else {
        Some(format!("{percent:+}%"))
    }
}

/// Escapes text for XML content and attribute values, dropping characters XML 1.0 forbids
/// (control characters would make the whole request malformed).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => {}
            c => out.push(c),
        }
    }
    out
}

/// Builds the SSML document for one part of the text.
pub fn ssml(speech: &Speech<'_>, text: &str) -> Result<String, PluginError> {
    let locale = locale_of(speech.voice)?;
    let mut inner = escape(text);
    let rate = relative_percent(speech.rate);
    let pitch = relative_percent(speech.pitch);
    if rate.is_some() || pitch.is_some() {
        let mut open = String::from("<prosody");
        if let Some(rate) = rate {
            open.push_str(&format!(" rate=\"{rate}\""));
        }
        if let Some(pitch) = pitch {
            open.push_str(&format!(" pitch=\"{pitch}\""));
        }
        inner = format!("{open}>{inner}</prosody>");
    }
    if let Some(style) = speech.style.filter(|s| !s.trim().is_empty()) {
        let degree = speech
            .style_degree
            .map(|d| format!(" styledegree=\"{}\"", (d * 100.0).round() / 100.0))
            .unwrap_or_default();
        inner = format!(
            "<mstts:express-as style=\"{}\"{degree}>{inner}</mstts:express-as>",
            escape(style.trim())
        );
    }
    Ok(format!(
        "<speak version=\"1.0\" xmlns=\"http://www.w3.org/2001/10/synthesis\" \
         xmlns:mstts=\"https://www.w3.org/2001/mstts\" xml:lang=\"{}\">\
         <voice name=\"{}\">{inner}</voice></speak>",
        escape(locale),
        escape(speech.voice)
    ))
}

/// Sentence-ending punctuation that needs whitespace after it to end a sentence ("3.14",
/// "e.g.x" do not end one).
fn ends_sentence_spaced(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | ';' | '…')
}

/// Sentence-ending punctuation that ends a sentence by itself (CJK and fullwidth).
fn ends_sentence_cjk(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '；' | '｡' | '．')
}

/// Closing quotes and brackets that belong to the sentence they follow.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '」' | '』' | '》' | '）' | '】' | '〉'
    )
}

/// Places where a sentence that is too long may be broken.
fn is_soft_break(c: char) -> bool {
    matches!(c, ',' | ':' | '，' | '、' | '：' | '—') || c.is_whitespace()
}

/// Splits text into parts of at most `max_units` units, at sentence boundaries where
/// possible, then at commas or spaces, and only as a last resort inside a word (never inside
/// a character). Parts are trimmed and never empty.
pub fn split_text(text: &str, max_units: usize) -> Vec<&str> {
    let max_units = max_units.max(3);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if text_units(rest) <= max_units {
            parts.push(rest);
            break;
        }
        let cut = cut_point(rest, max_units);
        let (head, tail) = rest.split_at(cut);
        let head = head.trim_end();
        if !head.is_empty() {
            parts.push(head);
        }
        rest = tail.trim_start();
    }
    parts
}

/// Returns the byte index at which to end the first part of `text`, which is longer than
/// `max_units`: the last sentence end that fits, else the last soft break, else as much as fits.
fn cut_point(text: &str, max_units: usize) -> usize {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut used = 0;
    let mut fits = 0; // number of chars that fit
    for &(_, c) in &chars {
        if used + units(c) > max_units {
            break;
        }
        used += units(c);
        fits += 1;
    }
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
    let mut sentence_end = None;
    let mut soft_break = None;
    for i in 0..fits {
        let c = chars[i].1;
        if c == '\n' || ends_sentence_cjk(c) || ends_sentence_spaced(c) {
            let mut end = i + 1;
            while end < fits && is_closer(chars[end].1) {
                end += 1;
            }
            let next = chars.get(end).map(|(_, c)| *c);
            let spaced = next.is_none_or(char::is_whitespace);
            if c == '\n' || ends_sentence_cjk(c) || spaced {
                sentence_end = Some(end);
            }
        }
        if is_soft_break(chars[i].1) && i > 0 {
            soft_break = Some(i + 1);
        }
    }
    byte_at(sentence_end.or(soft_break).unwrap_or(fits.max(1)))
}

/// Joins WAV files into one: the first part's format, every part's samples, one header.
#[derive(Debug, Default)]
pub struct WavJoiner {
    fmt: Option<Vec<u8>>,
    data: Vec<u8>,
}

impl WavJoiner {
    /// Adds the samples of one WAV file.
    pub fn push(&mut self, wav: &[u8]) -> Result<(), PluginError> {
        let (fmt, data) = parse_wav(wav)?;
        match &self.fmt {
            None => self.fmt = Some(fmt.to_vec()),
            Some(first) if first == fmt => {}
            Some(_) => {
                return Err(PluginError::unavailable(
                    "the service sent the parts of the audio in different WAV formats",
                ));
            }
        }
        self.data.extend_from_slice(data);
        Ok(())
    }

    /// Returns the joined file.
    pub fn finish(self) -> Result<Vec<u8>, PluginError> {
        let fmt = self
            .fmt
            .ok_or_else(|| PluginError::internal("no audio to join"))?;
        let format_tag = u16::from_le_bytes([fmt[0], fmt[1]]);
        let block_align = usize::from(u16::from_le_bytes([fmt[12], fmt[13]]).max(1));
        let mut body = b"WAVE".to_vec();
        riff_chunk(&mut body, b"fmt ", &fmt);
        // Every WAV that is not plain PCM needs a fact chunk with its sample count.
        if format_tag != 1 {
            let frames = u32::try_from(self.data.len() / block_align).map_err(|_| too_long())?;
            riff_chunk(&mut body, b"fact", &frames.to_le_bytes());
        }
        riff_chunk(&mut body, b"data", &self.data);
        let size = u32::try_from(body.len()).map_err(|_| too_long())?;
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }
}

fn too_long() -> PluginError {
    PluginError::invalid_input("the audio is longer than a WAV file can hold (4 GiB)")
        .with_hint("use --format mp3 for very long text")
}

fn riff_chunk(out: &mut Vec<u8>, id: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(id);
    // finish() has checked the whole file fits in u32.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

/// Returns the `fmt ` chunk and the samples of a WAV file.
fn parse_wav(wav: &[u8]) -> Result<(&[u8], &[u8]), PluginError> {
    let bad =
        |why: &str| PluginError::unavailable(format!("the service sent a bad WAV file: {why}"));
    if wav.len() < 12 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return Err(bad("no RIFF/WAVE header"));
    }
    let mut at = 12;
    let mut fmt = None;
    while at + 8 <= wav.len() {
        let id = &wav[at..at + 4];
        let size =
            u32::from_le_bytes([wav[at + 4], wav[at + 5], wav[at + 6], wav[at + 7]]) as usize;
        let start = at + 8;
        if id == b"data" {
            let fmt = fmt.ok_or_else(|| bad("samples before the format"))?;
            // Streamed WAVs may carry 0 or 0xFFFFFFFF as the size; the samples then run to
            // the end of the file.
            let end = if size == 0 || start + size > wav.len() {
                wav.len()
            } else {
                start + size
            };
            return Ok((fmt, &wav[start..end]));
        }
        let end = start
            .checked_add(size)
            .filter(|end| *end <= wav.len())
            .ok_or_else(|| bad("a chunk runs past the end"))?;
        if id == b"fmt " {
            if size < 16 {
                return Err(bad("the format chunk is too short"));
            }
            fmt = Some(&wav[start..end]);
        }
        at = end + (size % 2);
    }
    Err(bad("no samples"))
}

/// Joins Ogg streams into one chained Ogg stream.
///
/// RFC 3533 defines chaining, one logical stream after another in the same physical stream,
/// as Ogg's own way to put streams in sequence, and players (ffmpeg, browsers, VLC) play the
/// links back to back. The alternative, re-muxing every part into one logical Opus stream,
/// would mean rewriting granule positions and dropping each part's headers while its
/// decoder pre-skip still applies, so the joins would click. Links must not share a serial
/// number and must end with an end-of-stream page, so both are enforced here, with page CRCs
/// recomputed where a page changed.
#[derive(Debug, Default)]
pub struct OggChain {
    serials: HashSet<u32>,
}

impl OggChain {
    /// Returns one part's pages, fixed up to be the next link of the chain.
    pub fn link(&mut self, mut ogg: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        let pages = ogg_pages(&ogg)?;
        let mut renamed = Vec::new();
        for serial in pages.iter().map(|p| p.serial).collect::<HashSet<_>>() {
            let mut new = serial;
            while self.serials.contains(&new) {
                new = new.wrapping_add(0x9E37_79B9);
            }
            self.serials.insert(new);
            if new != serial {
                renamed.push((serial, new));
            }
        }
        for (i, page) in pages.iter().enumerate() {
            let header = &mut ogg[page.start..page.start + 27];
            let mut changed = false;
            if let Some((_, new)) = renamed.iter().find(|(old, _)| *old == page.serial) {
                header[14..18].copy_from_slice(&new.to_le_bytes());
                changed = true;
            }
            let last_of_stream = !pages[i + 1..].iter().any(|p| p.serial == page.serial);
            if last_of_stream && header[5] & 0x04 == 0 {
                header[5] |= 0x04;
                changed = true;
            }
            if changed {
                let page_bytes = &mut ogg[page.start..page.end];
                page_bytes[22..26].fill(0);
                let crc = ogg_crc(page_bytes);
                page_bytes[22..26].copy_from_slice(&crc.to_le_bytes());
            }
        }
        Ok(ogg)
    }
}

struct OggPage {
    start: usize,
    end: usize,
    serial: u32,
}

fn ogg_pages(ogg: &[u8]) -> Result<Vec<OggPage>, PluginError> {
    let bad =
        |why: &str| PluginError::unavailable(format!("the service sent a bad Ogg stream: {why}"));
    let mut pages = Vec::new();
    let mut at = 0;
    while at < ogg.len() {
        if ogg.len() < at + 27 || &ogg[at..at + 4] != b"OggS" {
            return Err(bad("a page does not start with OggS"));
        }
        let segments = usize::from(ogg[at + 26]);
        let table_end = at + 27 + segments;
        if ogg.len() < table_end {
            return Err(bad("a page is cut short"));
        }
        let body: usize = ogg[at + 27..table_end]
            .iter()
            .map(|b| usize::from(*b))
            .sum();
        let end = table_end + body;
        if ogg.len() < end {
            return Err(bad("a page is cut short"));
        }
        let mut copy = ogg[at..end].to_vec();
        let crc = u32::from_le_bytes([copy[22], copy[23], copy[24], copy[25]]);
        copy[22..26].fill(0);
        if ogg_crc(&copy) != crc {
            return Err(bad("a page checksum does not match"));
        }
        let serial = u32::from_le_bytes([ogg[at + 14], ogg[at + 15], ogg[at + 16], ogg[at + 17]]);
        pages.push(OggPage {
            start: at,
            end,
            serial,
        });
        at = end;
    }
    if pages.is_empty() {
        return Err(bad("no pages"));
    }
    Ok(pages)
}

/// The Ogg page checksum: CRC-32 with polynomial 0x04C11DB7, unreflected, zero initial value.
fn ogg_crc(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 {
                    (r << 1) ^ 0x04C1_1DB7
                } else {
                    r << 1
                };
            }
            *slot = r;
        }
        table
    });
    data.iter().fold(0u32, |crc, &b| {
        (crc << 8) ^ table[((crc >> 24) as u8 ^ b) as usize]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech(voice: &str) -> Speech<'_> {
        Speech {
            voice,
            rate: 1.0,
            pitch: 1.0,
            style: None,
            style_degree: None,
        }
    }

    #[test]
    fn resolves_short_and_azure_format_names() {
        assert_eq!(
            resolve_format("wav").unwrap().name,
            "riff-24khz-16bit-mono-pcm"
        );
        assert_eq!(resolve_format("MP3").unwrap().media_type, "audio/mpeg");
        assert_eq!(resolve_format("opus").unwrap().extension, "ogg");
        let raw = resolve_format("raw-8khz-8bit-mono-mulaw").unwrap();
        assert_eq!((raw.extension, raw.container), ("ulaw", Container::Stream));
        assert_eq!(
            resolve_format("webm").unwrap().container,
            Container::Unjoinable
        );
        let err = resolve_format("flac").unwrap_err();
        assert!(err.message.contains("`flac`"));
        assert!(err.hint.unwrap().contains("mp3"));
    }

    #[test]
    fn every_format_is_known_to_the_media_type_table() {
        for f in FORMATS {
            assert!(f.media_type.starts_with("audio/"), "{}", f.name);
            assert!(!f.extension.is_empty(), "{}", f.name);
        }
        assert_eq!(FORMATS.len(), 35);
    }

    #[test]
    fn locale_comes_from_the_voice_name() {
        assert_eq!(locale_of("zh-CN-XiaoxiaoNeural").unwrap(), "zh-CN");
        assert_eq!(
            locale_of("zh-CN-henan-YundengNeural").unwrap(),
            "zh-CN-henan"
        );
        assert_eq!(locale_of("iu-Cans-CA-SiqiniqNeural").unwrap(), "iu-Cans-CA");
        for bad in [
            "Xiaoxiao",
            "zh-",
            "CN-XiaoxiaoNeural",
            "en-US-Ava\"Neural",
            "x-Y",
        ] {
            assert!(locale_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn picks_a_native_voice_for_cjk_text() {
        assert_eq!(default_voice("你好，世界"), "zh-CN-XiaoxiaoNeural");
        assert_eq!(default_voice("こんにちは、世界"), "ja-JP-NanamiNeural");
        assert_eq!(default_voice("안녕하세요"), "ko-KR-SunHiNeural");
        assert_eq!(default_voice("Hello world"), DEFAULT_VOICE);
        assert_eq!(default_voice("The word 你好 means hello"), DEFAULT_VOICE);
    }

    #[test]
    fn multipliers_become_relative_percentages() {
        assert_eq!(relative_percent(1.0), None);
        assert_eq!(relative_percent(1.1).as_deref(), Some("+10%"));
        assert_eq!(relative_percent(0.5).as_deref(), Some("-50%"));
        assert_eq!(relative_percent(1.125).as_deref(), Some("+12.5%"));
        assert_eq!(relative_percent(2.0).as_deref(), Some("+100%"));
    }

    #[test]
    fn escapes_markup_and_drops_forbidden_characters() {
        assert_eq!(
            escape("Tom & Jerry <b>\"hi\" 'x'"),
            "Tom &amp; Jerry &lt;b&gt;&quot;hi&quot; &apos;x&apos;"
        );
        assert_eq!(escape("a\u{1}b\u{1b}c\nd"), "abc\nd");
    }

    #[test]
    fn builds_ssml_with_prosody_and_style() {
        let plain = ssml(&speech("zh-CN-XiaoxiaoNeural"), "你好 & <再见>").unwrap();
        assert_eq!(
            plain,
            "<speak version=\"1.0\" xmlns=\"http://www.w3.org/2001/10/synthesis\" \
             xmlns:mstts=\"https://www.w3.org/2001/mstts\" xml:lang=\"zh-CN\">\
             <voice name=\"zh-CN-XiaoxiaoNeural\">你好 &amp; &lt;再见&gt;</voice></speak>"
        );
        let styled = Speech {
            rate: 1.2,
            pitch: 0.9,
            style: Some("cheerful"),
            style_degree: Some(1.5),
            ..speech("en-US-JennyNeural")
        };
        let doc = ssml(&styled, "Hi").unwrap();
        assert!(doc.contains(
            "<voice name=\"en-US-JennyNeural\"><mstts:express-as style=\"cheerful\" \
             styledegree=\"1.5\"><prosody rate=\"+20%\" pitch=\"-10%\">Hi</prosody>\
             </mstts:express-as></voice>"
        ));
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_text("  Hello there.  ", 100), vec!["Hello there."]);
        assert!(split_text("   ", 100).is_empty());
    }

    #[test]
    fn splits_at_sentence_ends() {
        let text = "One two three. Four five six! Seven eight nine? Ten.";
        let parts = split_text(text, 30);
        assert_eq!(
            parts,
            vec!["One two three. Four five six!", "Seven eight nine? Ten."]
        );
        // A decimal point is not a sentence end.
        let parts = split_text("Pi is 3.14159 today. And tomorrow it is too.", 25);
        assert_eq!(
            parts,
            vec!["Pi is 3.14159 today.", "And tomorrow it is too."]
        );
        // Closing quotes stay with their sentence.
        let parts = split_text("He said \"stop.\" Then he left the room.", 25);
        assert_eq!(parts, vec!["He said \"stop.\"", "Then he left the room."]);
    }

    #[test]
    fn splits_chinese_at_its_own_punctuation_counting_wide_characters() {
        let sentence = "今天天气很好。"; // 7 wide characters: 21 units
        let text = sentence.repeat(5);
        let parts = split_text(&text, 50);
        let two = sentence.repeat(2);
        assert_eq!(parts, vec![two.as_str(), two.as_str(), sentence]);
        for part in &parts {
            assert!(text_units(part) <= 50);
            assert!(part.ends_with('。'));
        }
        let parts = split_text("你好吗？我很好！谢谢。", 12);
        assert_eq!(parts, vec!["你好吗？", "我很好！", "谢谢。"]);
    }

    #[test]
    fn long_sentences_break_at_commas_then_spaces_then_anywhere() {
        let parts = split_text("alpha beta, gamma delta epsilon", 15);
        assert_eq!(parts, vec!["alpha beta,", "gamma delta", "epsilon"]);
        let parts = split_text("abcdefghij", 4);
        assert_eq!(parts, vec!["abcd", "efgh", "ij"]);
        // Never inside a character, even with no break anywhere.
        let parts = split_text("一二三四五六七", 7);
        assert_eq!(parts, vec!["一二", "三四", "五六", "七"]);
        assert_eq!(parts.concat(), "一二三四五六七");
    }

    #[test]
    fn splitting_keeps_every_word() {
        let text = "Lorem ipsum dolor sit amet. ".repeat(400) + "最后一句话。";
        let parts = split_text(&text, MAX_PART_UNITS);
        assert!(parts.len() >= 4);
        for part in &parts {
            assert!(text_units(part) <= MAX_PART_UNITS);
        }
        let rejoined: Vec<&str> = parts.iter().flat_map(|p| p.split_whitespace()).collect();
        let original: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(rejoined, original);
    }

    fn wav(data: &[u8], extra_chunk: bool) -> Vec<u8> {
        let mut body = b"WAVE".to_vec();
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&24_000u32.to_le_bytes());
        fmt.extend_from_slice(&48_000u32.to_le_bytes());
        fmt.extend_from_slice(&2u16.to_le_bytes());
        fmt.extend_from_slice(&16u16.to_le_bytes());
        riff_chunk(&mut body, b"fmt ", &fmt);
        if extra_chunk {
            riff_chunk(&mut body, b"LIST", b"odd");
        }
        riff_chunk(&mut body, b"data", data);
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn joins_wav_parts_under_one_header() {
        let mut joiner = WavJoiner::default();
        joiner.push(&wav(&[1, 2, 3, 4], true)).unwrap();
        joiner.push(&wav(&[5, 6], false)).unwrap();
        let joined = joiner.finish().unwrap();
        assert_eq!(joined, wav(&[1, 2, 3, 4, 5, 6], false));
        let (_, data) = parse_wav(&joined).unwrap();
        assert_eq!(data, &[1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_streamed_wav_size_means_to_the_end() {
        let mut streamed = wav(&[9, 9, 9, 9], false);
        let at = streamed.len() - 8;
        streamed[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let (_, data) = parse_wav(&streamed).unwrap();
        assert_eq!(data, &[9, 9, 9, 9]);
    }

    #[test]
    fn refuses_mismatched_or_broken_wavs() {
        let mut joiner = WavJoiner::default();
        joiner.push(&wav(&[0, 0], false)).unwrap();
        let mut other = wav(&[0, 0], false);
        other[24..28].copy_from_slice(&48_000u32.to_le_bytes());
        assert!(joiner.push(&other).is_err());
        assert!(parse_wav(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(parse_wav(b"not a wav at all").is_err());
    }

    fn ogg_page(flags: u8, serial: u32, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut page = b"OggS\0".to_vec();
        page.push(flags);
        page.extend_from_slice(&0u64.to_le_bytes());
        page.extend_from_slice(&serial.to_le_bytes());
        page.extend_from_slice(&seq.to_le_bytes());
        page.extend_from_slice(&[0; 4]);
        page.push(1);
        page.push(body.len() as u8);
        page.extend_from_slice(body);
        let crc = ogg_crc(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        page
    }

    #[test]
    fn ogg_crc_matches_the_reference_value() {
        // The CRC-32/MPEG-2 check value uses the same polynomial but an all-ones start; with
        // Ogg's zero start, "123456789" gives 0x89A1897F.
        assert_eq!(ogg_crc(b"123456789"), 0x89A1_897F);
    }

    #[test]
    fn chains_ogg_links_with_unique_serials_and_end_pages() {
        let part = |eos: bool| {
            let mut ogg = ogg_page(0x02, 7, 0, b"head");
            ogg.extend(ogg_page(if eos { 0x04 } else { 0 }, 7, 1, b"data"));
            ogg
        };
        let mut chain = OggChain::default();
        let first = chain.link(part(true)).unwrap();
        assert_eq!(first, part(true));
        let second = chain.link(part(false)).unwrap();
        let pages = ogg_pages(&second).unwrap();
        assert!(pages.iter().all(|p| p.serial != 7));
        assert_eq!(pages[0].serial, pages[1].serial);
        assert_eq!(second[pages[1].start + 5] & 0x04, 0x04);
        let mut broken = part(true);
        broken[30] ^= 0xFF;
        assert!(chain.link(broken).is_err());
    }
}
