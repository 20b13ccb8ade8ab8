//! Azure AI Speech wire shapes: output formats and SSML.
//!
//! One synthesis request should stay well under the service's limits (ten minutes of audio,
//! 64 KB of SSML), so long text is split at sentence boundaries into parts of at most
//! [`MAX_PART_BYTES`] and spoken by the SDK's [`launcher_sdk::speech::Speaker`]. A text of one
//! part is asked for in the requested format and streamed as it comes; the parts of a longer
//! text are asked for as uncompressed audio ([`Format::pieces`]) and joined into one file:
//!
//! - RIFF/WAV: parts in the same RIFF format, one header over the joined samples;
//! - MP3 and Ogg Opus: headerless PCM parts at the format's sample rate, encoded once by
//!   ffmpeg at the format's bit rate (compressed parts put end to end make files whose
//!   duration players misreport);
//! - headerless PCM, A-law, µ-law: parts in that same format, put end to end;
//! - WebM, container-less Opus, SILK and AMR-WB: refused, with a hint to pick another format.

use launcher_sdk::PluginError;
use launcher_sdk::media::{SampleFormat, WavSpec};
use launcher_sdk::speech::AudioFormat;

/// The voice used when none is given and the text is not mostly Chinese, Japanese or Korean.
pub const DEFAULT_VOICE: &str = "en-US-AvaMultilingualNeural";

/// The most text one request carries, in UTF-8 bytes: a CJK character takes three, and about
/// three times as long to speak as a Latin letter. 3000 bytes is under four minutes of speech
/// at normal speed, and under eight at the slowest rate, so no part nears the ten minutes
/// after which the service silently cuts audio off.
pub const MAX_PART_BYTES: usize = 3000;

/// How the parts of a long text in a format become one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// A RIFF/WAV file: one header, then samples.
    Riff,
    /// MP3 frames, encoded from PCM parts.
    Mp3,
    /// An Ogg Opus stream, encoded from PCM parts.
    Ogg,
    /// Headerless samples: raw PCM, A-law, µ-law.
    Raw,
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

use Container::{Mp3, Ogg, Raw, Riff, Unjoinable};

/// Every format of the contract. Raw PCM is little-endian, so it is not `audio/L16`.
pub const FORMATS: &[Format] = &[
    format("riff-8khz-16bit-mono-pcm", "audio/wav", "wav", Riff),
    format("riff-22050hz-16bit-mono-pcm", "audio/wav", "wav", Riff),
    format("riff-24khz-16bit-mono-pcm", "audio/wav", "wav", Riff),
    format("riff-44100hz-16bit-mono-pcm", "audio/wav", "wav", Riff),
    format("riff-48khz-16bit-mono-pcm", "audio/wav", "wav", Riff),
    format("riff-8khz-8bit-mono-alaw", "audio/wav", "wav", Riff),
    format("riff-8khz-8bit-mono-mulaw", "audio/wav", "wav", Riff),
    format("audio-16khz-32kbitrate-mono-mp3", "audio/mpeg", "mp3", Mp3),
    format("audio-16khz-64kbitrate-mono-mp3", "audio/mpeg", "mp3", Mp3),
    format("audio-16khz-128kbitrate-mono-mp3", "audio/mpeg", "mp3", Mp3),
    format("audio-24khz-48kbitrate-mono-mp3", "audio/mpeg", "mp3", Mp3),
    format("audio-24khz-96kbitrate-mono-mp3", "audio/mpeg", "mp3", Mp3),
    format("audio-24khz-160kbitrate-mono-mp3", "audio/mpeg", "mp3", Mp3),
    format("audio-48khz-96kbitrate-mono-mp3", "audio/mpeg", "mp3", Mp3),
    format("audio-48khz-192kbitrate-mono-mp3", "audio/mpeg", "mp3", Mp3),
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
    format("raw-8khz-16bit-mono-pcm", "audio/pcm", "pcm", Raw),
    format("raw-16khz-16bit-mono-pcm", "audio/pcm", "pcm", Raw),
    format("raw-22050hz-16bit-mono-pcm", "audio/pcm", "pcm", Raw),
    format("raw-24khz-16bit-mono-pcm", "audio/pcm", "pcm", Raw),
    format("raw-44100hz-16bit-mono-pcm", "audio/pcm", "pcm", Raw),
    format("raw-48khz-16bit-mono-pcm", "audio/pcm", "pcm", Raw),
    format("raw-8khz-8bit-mono-alaw", "audio/PCMA", "alaw", Raw),
    format("raw-8khz-8bit-mono-mulaw", "audio/PCMU", "ulaw", Raw),
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

impl Format {
    /// Returns the sample rate the format's name states (`24khz`, `22050hz`).
    pub fn sample_rate(&self) -> Option<u32> {
        self.name.split('-').find_map(|part| {
            if let Some(khz) = part.strip_suffix("khz") {
                khz.parse::<u32>().ok().map(|k| k * 1000)
            } else {
                part.strip_suffix("hz")?.parse().ok()
            }
        })
    }

    /// Returns how the parts of a long text are asked for and what file they make: the
    /// format of each part and the output, or `None` when parts cannot be joined.
    pub fn pieces(&'static self) -> Option<(&'static Format, AudioFormat)> {
        let labelled = |name: &str| {
            AudioFormat::named(name).map(|f| f.labelled(self.media_type, self.extension))
        };
        match self.container {
            Riff => Some((self, labelled("wav")?)),
            Raw => Some((self, labelled("pcm")?)),
            Mp3 | Ogg => {
                let rate = self.sample_rate()?;
                let pcm = FORMATS
                    .iter()
                    .filter(|f| f.container == Raw && f.name.ends_with("-16bit-mono-pcm"))
                    .find(|f| f.sample_rate() == Some(rate))?;
                let mut output = labelled(if self.container == Mp3 { "mp3" } else { "ogg" })?;
                if let Some(kbps) = self
                    .name
                    .split('-')
                    .find_map(|p| p.strip_suffix("kbitrate"))
                    .and_then(|k| k.parse::<u32>().ok())
                {
                    output = output.with_bitrate(kbps * 1000);
                }
                Some((pcm, output))
            }
            Unjoinable => None,
        }
    }

    /// Returns the WAV spec of a headerless format's samples, so a part can be wrapped in a
    /// WAV header; `None` for formats with a header of their own.
    pub fn raw_spec(&self) -> Option<WavSpec> {
        if self.container != Raw {
            return None;
        }
        let (bits, format) = if self.name.ends_with("-alaw") {
            (8, SampleFormat::ALaw)
        } else if self.name.ends_with("-mulaw") {
            (8, SampleFormat::MuLaw)
        } else {
            (16, SampleFormat::Int)
        };
        Some(WavSpec {
            sample_rate: self.sample_rate()?,
            channels: 1,
            bits_per_sample: bits,
            format,
        })
    }
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
        assert_eq!((raw.extension, raw.container), ("ulaw", Container::Raw));
        assert_eq!(
            resolve_format("webm").unwrap().container,
            Container::Unjoinable
        );
        let err = resolve_format("flac").unwrap_err();
        assert!(err.message.contains("`flac`"));
        assert!(err.hint.unwrap().contains("mp3"));
    }

    #[test]
    fn long_text_parts_are_asked_for_uncompressed() {
        use launcher_sdk::speech::Encoding;
        let parts = |name: &str| {
            let (part, output) = resolve_format(name).unwrap().pieces().unwrap();
            (part.name, output.encoding, output.extension, output.bitrate)
        };
        assert_eq!(
            parts("mp3"),
            (
                "raw-24khz-16bit-mono-pcm",
                Encoding::Mp3,
                "mp3",
                Some(96_000)
            )
        );
        assert_eq!(
            parts("audio-48khz-192kbitrate-mono-mp3"),
            (
                "raw-48khz-16bit-mono-pcm",
                Encoding::Mp3,
                "mp3",
                Some(192_000)
            )
        );
        assert_eq!(
            parts("ogg-16khz-16bit-mono-opus"),
            ("raw-16khz-16bit-mono-pcm", Encoding::Opus, "ogg", None)
        );
        assert_eq!(
            parts("wav"),
            ("riff-24khz-16bit-mono-pcm", Encoding::Wav, "wav", None)
        );
        assert_eq!(
            parts("raw-8khz-8bit-mono-alaw"),
            ("raw-8khz-8bit-mono-alaw", Encoding::Pcm, "alaw", None)
        );
        let alaw = resolve_format("raw-8khz-8bit-mono-alaw").unwrap();
        assert_eq!(alaw.raw_spec().unwrap().format, SampleFormat::ALaw);
        assert!(resolve_format("webm").unwrap().pieces().is_none());
        assert_eq!(
            resolve_format("riff-22050hz-16bit-mono-pcm")
                .unwrap()
                .sample_rate(),
            Some(22_050)
        );
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
    fn the_part_limit_keeps_every_word_and_cjk_within_its_budget() {
        use launcher_sdk::text::{Limit, split_text};
        let text = "Lorem ipsum dolor sit amet. ".repeat(400) + "最后一句话。";
        let parts = split_text(&text, Limit::bytes(MAX_PART_BYTES));
        assert!(parts.len() >= 4);
        assert!(parts.iter().all(|p| p.len() <= MAX_PART_BYTES));
        let rejoined: Vec<&str> = parts.iter().flat_map(|p| p.split_whitespace()).collect();
        let original: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(rejoined, original);
        // A thousand Chinese characters are as long to speak as 3000 Latin letters.
        let chinese = "今天天气很好。".repeat(150);
        let parts = split_text(&chinese, Limit::bytes(MAX_PART_BYTES));
        assert!(parts.iter().all(|p| p.chars().count() <= 1000));
        assert!(parts.iter().all(|p| p.ends_with('。')));
    }
}
