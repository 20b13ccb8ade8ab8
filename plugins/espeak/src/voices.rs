//! Voice names: friendly aliases, and the voice list `espeak-ng --voices` prints.

use serde::Serialize;

/// The voice used when the job names none: espeak-ng's own default.
pub(crate) const DEFAULT_VOICE: &str = "en";

/// Names people use for a language, mapped to the espeak-ng voice that speaks it.
/// espeak-ng matches voices case-insensitively, so the keys are lowercase.
const ALIASES: &[(&str, &str)] = &[
    ("zh", "cmn"),
    ("zh-cn", "cmn"),
    ("zh-hans", "cmn"),
    ("zh-cmn", "cmn"),
    ("zh-tw", "cmn"),
    ("cmn", "cmn"),
    ("mandarin", "cmn"),
    ("chinese", "cmn"),
    ("putonghua", "cmn"),
    ("yue", "yue"),
    ("zh-yue", "yue"),
    ("zh-hk", "yue"),
    ("cantonese", "yue"),
    ("english", "en"),
];

/// Returns the espeak-ng voice for `requested`, resolving aliases and keeping a `+variant`
/// suffix (`mandarin+f2` becomes `cmn+f2`).
pub(crate) fn resolve(requested: &str) -> String {
    let requested = requested.trim();
    let (base, variant) = match requested.split_once('+') {
        Some((base, variant)) => (base, Some(variant)),
        None => (requested, None),
    };
    // People write locales both ways (`zh_CN`, `zh-CN`); espeak-ng only knows dashes.
    let key = base.replace('_', "-").to_ascii_lowercase();
    let base = ALIASES
        .iter()
        .find(|(alias, _)| *alias == key)
        .map_or(base, |(_, voice)| voice);
    match variant {
        Some(variant) => format!("{base}+{variant}"),
        None => base.to_string(),
    }
}

/// Checks that espeak-ng knows voice `base` (no `+variant`) among `known`, as it matches
/// voices: by language code, file name or the other languages a voice answers to, whatever
/// the case. Returns the closest names (at most three, best first) when it does not.
pub(crate) fn check(base: &str, known: &[VoiceEntry]) -> Result<(), Vec<String>> {
    let wanted = base.to_ascii_lowercase();
    let mut names: Vec<String> = Vec::new();
    for entry in known.iter().filter(|v| !v.is_variant()) {
        names.push(entry.language.to_ascii_lowercase());
        names.push(entry.id().to_ascii_lowercase());
        names.push(entry.file.to_ascii_lowercase());
        names.push(entry.name.replace(' ', "_").to_ascii_lowercase());
        names.extend(entry.also.iter().map(|a| a.to_ascii_lowercase()));
    }
    if names.contains(&wanted) {
        return Ok(());
    }
    let mut scored: Vec<(f64, String)> = known
        .iter()
        .filter(|v| !v.is_variant())
        .map(|v| v.id())
        .map(|id| (strsim::jaro_winkler(&wanted, &id.to_ascii_lowercase()), id))
        .filter(|(score, _)| *score > 0.75)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut close: Vec<String> = Vec::new();
    for (_, id) in scored {
        if !close.contains(&id) {
            close.push(id);
        }
        if close.len() == 3 {
            break;
        }
    }
    Err(close)
}

/// One line of `espeak-ng --voices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VoiceEntry {
    /// The language code, e.g. `en-us`.
    pub(crate) language: String,
    /// `male`, `female` or empty.
    pub(crate) gender: String,
    /// The descriptive name, with spaces.
    pub(crate) name: String,
    /// The voice file relative to espeak-ng's data, e.g. `gmw/en-US`.
    pub(crate) file: String,
    /// Other language codes it answers to.
    pub(crate) also: Vec<String>,
}

impl VoiceEntry {
    /// Returns what to pass as `--voice` to get exactly this voice: the last part of its
    /// file, which espeak-ng accepts even where the language code is shared by several.
    /// A variant is only a suffix (`en+Alicia`), so its id starts with `+`.
    pub(crate) fn id(&self) -> String {
        let last = self.file.rsplit('/').next().unwrap_or(&self.file);
        if self.is_variant() {
            format!("+{last}")
        } else {
            last.to_string()
        }
    }

    /// Returns whether this is a variant (a voice quality added to a language's voice).
    pub(crate) fn is_variant(&self) -> bool {
        self.file.starts_with("!v/")
    }

    /// Returns whether espeak-ng needs the separate MBROLA synthesizer for this voice.
    pub(crate) fn needs_mbrola(&self) -> bool {
        self.file.starts_with("mb/")
    }
}

/// Parses the table `espeak-ng --voices[=lang]` prints.
///
/// Its columns are separated by spaces, and only the last (other languages, as
/// `(code priority)` groups) contains spaces itself; names use `_` for spaces.
pub(crate) fn parse_list(listing: &str) -> Vec<VoiceEntry> {
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let priority = fields.next()?;
            // Skips the header line and anything else that is not a voice row.
            priority.parse::<u32>().ok()?;
            let language = fields.next()?.to_string();
            let age_gender = fields.next()?;
            let name = fields.next()?.replace('_', " ");
            let file = fields.next()?.to_string();
            let rest: Vec<&str> = fields.collect();
            let also = rest
                .join(" ")
                .split('(')
                .filter_map(|group| group.split_whitespace().next())
                .map(|code| code.trim_end_matches(')').to_string())
                .filter(|code| !code.is_empty())
                .collect();
            let gender = match age_gender.rsplit('/').next() {
                Some("M") => "male",
                Some("F") => "female",
                _ => "",
            }
            .to_string();
            Some(VoiceEntry {
                language,
                gender,
                name,
                file,
                also,
            })
        })
        .collect()
}

/// One voice as the `voices` task lists it: the standard `id`, `name` and `language`, then
/// what espeak-ng adds.
#[derive(Debug, Serialize)]
pub(crate) struct Voice<'a> {
    /// What `--voice` takes.
    id: String,
    name: &'a str,
    language: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    gender: &'a str,
    /// Other language codes it answers to.
    other_languages: &'a [String],
    /// The voice file relative to espeak-ng's data.
    file: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    variant: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    needs_mbrola: bool,
}

impl<'a> From<&'a VoiceEntry> for Voice<'a> {
    fn from(v: &'a VoiceEntry) -> Self {
        Voice {
            id: v.id(),
            name: &v.name,
            language: &v.language,
            gender: &v.gender,
            other_languages: &v.also,
            file: &v.file,
            variant: v.is_variant(),
            needs_mbrola: v.needs_mbrola(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  cmn             --/M      Chinese_(Mandarin,_latin_as_English) sit/cmn              (zh-cmn 5)(zh 5)
 5  cmn-latn-pinyin --/M      Chinese_(Mandarin,_latin_as_Pinyin) sit/cmn-Latn-pinyin  (zh-cmn 5)(zh 5)
 5  zh              --/M      chinese-mb-cn1     mb/mb-cn1            
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
 5  variant         --/F      Alicia             !v/Alicia            
";

    #[test]
    fn mandarin_and_cantonese_aliases() {
        for name in [
            "zh", "zh-CN", "ZH-cn", "zh_CN", "cmn", "mandarin", "Mandarin",
        ] {
            assert_eq!(resolve(name), "cmn", "{name}");
        }
        for name in ["yue", "zh-HK", "cantonese", "zh-yue"] {
            assert_eq!(resolve(name), "yue", "{name}");
        }
    }

    #[test]
    fn other_voices_and_variants_pass_through() {
        assert_eq!(resolve("en-us"), "en-us");
        assert_eq!(resolve("gmw/en-US"), "gmw/en-US");
        assert_eq!(resolve(" fr "), "fr");
        assert_eq!(resolve("mandarin+f2"), "cmn+f2");
        assert_eq!(resolve("en+klatt"), "en+klatt");
    }

    #[test]
    fn unknown_voices_are_refused_with_close_matches() {
        let voices = parse_list(LISTING);
        for known in ["cmn", "CMN", "zh", "en-us", "en-US", "gmw/en-US"] {
            assert_eq!(check(known, &voices), Ok(()), "{known}");
        }
        let close = check("en-US-JennyNeural", &voices).unwrap_err();
        assert_eq!(
            close.first().map(String::as_str),
            Some("en-US"),
            "{close:?}"
        );
        assert!(check("Alicia", &voices).is_err(), "a variant is no voice");
    }

    #[test]
    fn parses_the_voice_table() {
        let voices = parse_list(LISTING);
        assert_eq!(voices.len(), 5);
        let cmn = &voices[0];
        assert_eq!(cmn.language, "cmn");
        assert_eq!(cmn.gender, "male");
        assert_eq!(cmn.name, "Chinese (Mandarin, latin as English)");
        assert_eq!(cmn.file, "sit/cmn");
        assert_eq!(cmn.id(), "cmn");
        assert_eq!(cmn.also, ["zh-cmn", "zh"]);
        assert_eq!(voices[1].id(), "cmn-Latn-pinyin");
        assert!(voices[2].needs_mbrola());
        assert!(voices[2].also.is_empty());
        assert_eq!(voices[3].id(), "en-US");
        assert_eq!(voices[4].gender, "female");
        assert!(voices[4].is_variant());
        assert_eq!(voices[4].id(), "+Alicia");
    }

    #[test]
    fn voices_are_listed_with_the_standard_fields() {
        let entries = parse_list(LISTING);
        let listed: Vec<Voice<'_>> = entries.iter().map(Voice::from).collect();
        let json = launcher_sdk::serde_json::to_value(&listed).unwrap();
        assert_eq!(
            json[0],
            launcher_sdk::serde_json::json!({
                "id": "cmn",
                "name": "Chinese (Mandarin, latin as English)",
                "language": "cmn",
                "gender": "male",
                "other_languages": ["zh-cmn", "zh"],
                "file": "sit/cmn",
            })
        );
        assert_eq!(json[2]["needs_mbrola"], true);
        assert_eq!(json[4]["id"], "+Alicia");
        assert_eq!(json[4]["variant"], true);
        assert!(json[3].get("variant").is_none());
    }
}
