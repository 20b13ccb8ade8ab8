//! Checks of media files produced in tests: WAV headers parsed by hand, other files by ffprobe.

use std::path::Path;
use std::process::Command;

/// The facts of a PCM WAV file.
#[derive(Debug, Clone, PartialEq)]
pub struct WavInfo {
    /// Samples per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
    /// Bits per sample.
    pub bits: u16,
    /// Bytes of sample data.
    pub data_len: u32,
    /// Seconds of sound.
    pub duration: f64,
}

/// Parses a WAV file, checking that its RIFF and data sizes agree with its length.
pub fn parse_wav(bytes: &[u8]) -> Result<WavInfo, String> {
    let u32_at = |i: usize| -> Result<u32, String> {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("truncated at byte {i}"))
    };
    let u16_at = |i: usize| -> Result<u16, String> {
        bytes
            .get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("truncated at byte {i}"))
    };
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err("not a RIFF/WAVE file".into());
    }
    if u32_at(4)? as usize + 8 != bytes.len() {
        return Err(format!(
            "RIFF size {} does not match file length {}",
            u32_at(4)?,
            bytes.len()
        ));
    }
    let mut pos = 12;
    let mut format = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(pos + 4)? as usize;
        let body = pos + 8;
        if id == b"fmt " {
            let audio_format = u16_at(body)?;
            if audio_format != 1 {
                return Err(format!("not PCM (format tag {audio_format})"));
            }
            format = Some((u16_at(body + 2)?, u32_at(body + 4)?, u16_at(body + 14)?));
        } else if id == b"data" {
            let (channels, sample_rate, bits) = format.ok_or("data chunk before fmt chunk")?;
            if body + size > bytes.len() {
                return Err(format!("data size {size} runs past the end of the file"));
            }
            let frame = u32::from(channels) * u32::from(bits / 8);
            return Ok(WavInfo {
                sample_rate,
                channels,
                bits,
                data_len: size as u32,
                duration: size as f64 / f64::from(sample_rate * frame.max(1)),
            });
        }
        pos = body + size + (size & 1);
    }
    Err("no data chunk".into())
}

/// Returns ffprobe's JSON description of a media file (streams and format).
pub fn ffprobe(path: &Path) -> Result<serde_json::Value, String> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run ffprobe (apt-get install ffmpeg): {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
}
