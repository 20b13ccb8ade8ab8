//! MiniMax text-to-speech wire shapes: the `t2a_v2` request, its answer, hex audio, and the
//! status codes the service reports inside HTTP 200 answers.

use launcher_sdk::PluginError;
use launcher_sdk::http::Refusal;
use launcher_sdk::serde_json::{Value, json};
use serde::Deserialize;

/// The global host.
pub const GLOBAL_URL: &str = "https://api.minimax.io";
/// The mainland China host.
pub const CN_URL: &str = "https://api.minimaxi.com";

/// The model used when none is given.
pub const DEFAULT_MODEL: &str = "speech-02-hd";
/// The voice used when none is given: one of the system voices every account has.
pub const DEFAULT_VOICE: &str = "male-qn-qingse";

/// Sample rates the service offers.
pub const SAMPLE_RATES: &[u32] = &[8000, 16_000, 22_050, 24_000, 32_000, 44_100];
/// MP3 bit rates the service offers.
pub const BITRATES: &[u32] = &[32_000, 64_000, 128_000, 256_000];
/// Emotions the service offers.
pub const EMOTIONS: &[&str] = &[
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgusted",
    "surprised",
    "calm",
    "fluent",
    "whisper",
];

/// How a voice speaks, and how its audio is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Speech<'a> {
    /// The model, e.g. `speech-02-hd`.
    pub model: &'a str,
    /// The voice id.
    pub voice: &'a str,
    /// The speed, 0.5 to 2.
    pub speed: f64,
    /// The volume, above 0 up to 10.
    pub volume: f64,
    /// The pitch in semitones, -12 to 12.
    pub pitch: i32,
    /// An emotion, or the voice's own.
    pub emotion: Option<&'a str>,
    /// Samples per second.
    pub sample_rate: u32,
    /// The MP3 bit rate.
    pub bitrate: u32,
}

/// Returns a multiplier of pitch (1.0 is normal, 2.0 an octave up) in whole semitones, as
/// the service takes it.
pub fn semitones(multiplier: f64) -> i32 {
    (12.0 * multiplier.log2()).round().clamp(-12.0, 12.0) as i32
}

/// Returns the JSON body of one synthesis request: `text` in `format` (`mp3`, `wav`, `flac`
/// or `pcm`), streamed as server-sent events when `stream`.
pub fn body(speech: &Speech<'_>, text: &str, format: &str, stream: bool) -> Value {
    let mut voice = json!({
        "voice_id": speech.voice,
        "speed": speech.speed,
        "vol": speech.volume,
        "pitch": speech.pitch,
    });
    if let Some(emotion) = speech.emotion {
        voice["emotion"] = json!(emotion);
    }
    json!({
        "model": speech.model,
        "text": text,
        "stream": stream,
        "voice_setting": voice,
        "audio_setting": {
            "sample_rate": speech.sample_rate,
            "bitrate": speech.bitrate,
            "format": format,
            "channel": 1,
        },
        "output_format": "hex",
    })
}

/// The `base_resp` every answer carries.
#[derive(Debug, Deserialize, Default)]
pub struct BaseResp {
    /// 0 for success.
    #[serde(default)]
    pub status_code: i64,
    /// What went wrong, in the service's words.
    #[serde(default)]
    pub status_msg: String,
}

/// An answer, or one streamed event: `data.audio` is hex.
#[derive(Debug, Deserialize)]
pub struct Answer {
    /// The audio, if any.
    #[serde(default)]
    pub data: Option<AudioData>,
    /// Facts about the whole audio (the last answer of a stream).
    #[serde(default)]
    pub extra_info: Option<ExtraInfo>,
    /// Success or the failure.
    #[serde(default)]
    pub base_resp: BaseResp,
}

/// The audio of an answer.
#[derive(Debug, Deserialize)]
pub struct AudioData {
    /// Hex-encoded audio.
    #[serde(default)]
    pub audio: String,
    /// 1 while streaming, 2 for the last answer (which repeats the whole audio).
    #[serde(default)]
    pub status: i64,
}

/// Facts about the whole audio.
#[derive(Debug, Deserialize)]
pub struct ExtraInfo {
    /// Milliseconds of audio.
    #[serde(default)]
    pub audio_length: Option<u64>,
}

/// Returns the error a non-zero `base_resp` reports, as the SDK client should treat it: a
/// rate limit is resent, everything else ends the request.
pub fn refusal(base: &BaseResp) -> Option<Refusal> {
    let err = error(base)?;
    Some(if base.status_code == 1002 || base.status_code == 1039 {
        Refusal::Resend(err)
    } else {
        Refusal::Fail(err)
    })
}

/// Returns the error a non-zero `base_resp` reports, or `None` for success.
pub fn error(base: &BaseResp) -> Option<PluginError> {
    let code = base.status_code;
    let said = base.status_msg.trim();
    let words = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    Some(match code {
        0 => return None,
        1002 | 1039 => PluginError::rate_limited(
            format!("MiniMax is rate limiting requests (status {code}){words}"),
            None,
        )
        .with_hint("wait a minute, or lower how many jobs run at once"),
        1004 | 2049 => PluginError::unauthorized(format!(
            "MiniMax rejected the credentials (status {code}){words}"
        ))
        .with_hint(
            "check MINIMAX_API_KEY, that it belongs to the host in use (global or CN: \
             MINIMAX_REGION), and MINIMAX_GROUP_ID if the account needs one",
        ),
        1008 => PluginError::rate_limited(
            format!("MiniMax refused the request: the account's balance is used up (status 1008){words}"),
            None,
        )
        .with_hint("waiting will not help: top up the account, or use another key"),
        1026 | 1027 => PluginError::invalid_input(format!(
            "MiniMax refused the text as sensitive content (status {code}){words}"
        ))
        .with_hint("rephrase the text; the service does not say which words it objected to"),
        2013 | 1042 => PluginError::invalid_input(format!(
            "MiniMax refused the parameters (status {code}){words}"
        ))
        .with_hint("check --voice, --model, --sample-rate and the other settings against MiniMax's documentation"),
        1001 => PluginError::timeout(format!("MiniMax timed out (status 1001){words}")),
        _ => PluginError::unavailable(format!("MiniMax failed with status {code}{words}")),
    })
}

/// Decodes hex audio.
pub fn unhex(hex: &str) -> Result<Vec<u8>, PluginError> {
    let bad = || PluginError::unavailable("MiniMax sent audio that is not valid hex");
    let hex = hex.as_bytes();
    if hex.len() % 2 == 1 {
        return Err(bad());
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    hex.chunks(2)
        .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use launcher_sdk::ErrorKind;

    fn kind_of(code: i64) -> Option<ErrorKind> {
        error(&BaseResp {
            status_code: code,
            status_msg: String::new(),
        })
        .map(|e| e.kind)
    }

    #[test]
    fn pitch_multipliers_become_semitones() {
        assert_eq!(semitones(1.0), 0);
        assert_eq!(semitones(2.0), 12);
        assert_eq!(semitones(0.5), -12);
        assert_eq!(semitones(1.0595), 1);
        assert_eq!(semitones(4.0), 12);
    }

    #[test]
    fn hex_decodes_both_cases_and_refuses_garbage() {
        assert_eq!(unhex("52494646").unwrap(), b"RIFF");
        assert_eq!(unhex("fFaB00").unwrap(), [0xFF, 0xAB, 0x00]);
        assert_eq!(unhex("").unwrap(), b"");
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
    }

    #[test]
    fn status_codes_map_to_error_kinds() {
        assert_eq!(kind_of(0), None);
        assert_eq!(kind_of(1002), Some(ErrorKind::RateLimited));
        assert_eq!(kind_of(1004), Some(ErrorKind::Unauthorized));
        assert_eq!(kind_of(1008), Some(ErrorKind::RateLimited));
        assert_eq!(kind_of(1026), Some(ErrorKind::InvalidInput));
        assert_eq!(kind_of(2013), Some(ErrorKind::InvalidInput));
        assert_eq!(kind_of(1000), Some(ErrorKind::Unavailable));
        let limited = BaseResp {
            status_code: 1002,
            status_msg: "rate limit".into(),
        };
        assert!(matches!(refusal(&limited), Some(Refusal::Resend(_))));
        let broke = BaseResp {
            status_code: 1008,
            status_msg: String::new(),
        };
        let Some(Refusal::Fail(err)) = refusal(&broke) else {
            panic!("a spent balance is not resent");
        };
        assert!(err.hint.unwrap().contains("waiting will not help"));
    }

    #[test]
    fn the_body_carries_voice_and_audio_settings() {
        let speech = Speech {
            model: "speech-02-hd",
            voice: "female-shaonv",
            speed: 1.2,
            volume: 2.0,
            pitch: -3,
            emotion: Some("happy"),
            sample_rate: 24_000,
            bitrate: 128_000,
        };
        let body = body(&speech, "你好", "wav", false);
        assert_eq!(body["voice_setting"]["voice_id"], "female-shaonv");
        assert_eq!(body["voice_setting"]["vol"], 2.0);
        assert_eq!(body["voice_setting"]["pitch"], -3);
        assert_eq!(body["voice_setting"]["emotion"], "happy");
        assert_eq!(body["audio_setting"]["format"], "wav");
        assert_eq!(body["audio_setting"]["sample_rate"], 24_000);
        assert_eq!(body["output_format"], "hex");
        assert_eq!(body["stream"], false);
    }
}
