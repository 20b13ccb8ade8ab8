//! Checks of media files produced in tests: WAV files read by the SDK's reader, other files
//! by ffprobe.

use std::path::Path;
use std::process::Command;

use launcher_sdk::media::{SampleFormat, Wav};

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

/// Parses a PCM WAV file, checking that its RIFF and data sizes agree with its length.
///
/// The SDK's reader does the parsing; this adds what a test insists on and a producer may
/// get away with elsewhere: integer PCM, a RIFF size that is the file length, and a data size
/// that is real rather than a streaming placeholder.
pub fn parse_wav(bytes: &[u8]) -> Result<WavInfo, String> {
    let wav = Wav::parse(bytes).map_err(|err| err.message)?;
    let riff_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if riff_len as usize + 8 != bytes.len() {
        return Err(format!(
            "RIFF size {riff_len} does not match file length {}",
            bytes.len()
        ));
    }
    if wav.spec.format != SampleFormat::Int {
        return Err(format!("not PCM ({:?} samples)", wav.spec.format));
    }
    Ok(WavInfo {
        sample_rate: wav.spec.sample_rate,
        channels: wav.spec.channels,
        bits: wav.spec.bits_per_sample,
        data_len: wav.data.len() as u32,
        duration: wav.duration_secs(),
    })
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

/// Returns a real MP4 made by ffmpeg: `seconds` of a 64×64 test pattern in H.264, for
/// emulators that serve videos. Fails when ffmpeg cannot run.
pub fn tiny_mp4(seconds: u32) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("tiny.mp4");
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=64x64:rate=10:duration={seconds}"))
        .args(["-pix_fmt", "yuv420p", "-movflags", "+faststart"])
        .arg(&path)
        .output()
        .map_err(|e| format!("cannot run ffmpeg (apt-get install ffmpeg): {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    std::fs::read(&path).map_err(|e| e.to_string())
}

/// Returns how long the audio in `bytes` lasts by ffprobe, which reads what players read
/// (an MP3's Xing frame count, an Ogg stream's last granule position, a WAV header).
///
/// Fails when ffprobe finds more than one audio stream (a chained Ogg shows up that way) or
/// cannot read the file.
pub fn probe_duration(bytes: &[u8], extension: &str) -> Result<f64, String> {
    let file = tempfile::Builder::new()
        .suffix(&format!(".{extension}"))
        .tempfile()
        .map_err(|e| e.to_string())?;
    std::fs::write(file.path(), bytes).map_err(|e| e.to_string())?;
    let probe = ffprobe(file.path())?;
    let streams = probe["streams"].as_array().cloned().unwrap_or_default();
    if streams.len() != 1 {
        return Err(format!("{} streams, not one: {probe}", streams.len()));
    }
    probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("ffprobe gave no duration: {probe}"))
}

/// 16-bit little-endian samples of a quiet 440 Hz sine: `millis` of it at `rate`.
pub fn tone(rate: u32, millis: u64) -> Vec<u8> {
    let samples = (u64::from(rate) * millis / 1000) as usize;
    let step = 2.0 * std::f64::consts::PI * 440.0 / f64::from(rate);
    (0..samples)
        .flat_map(|i| (((i as f64 * step).sin() * 3000.0) as i16).to_le_bytes())
        .collect()
}

/// Returns a mono 16-bit PCM WAV file of `millis` of [`tone`] at `rate`.
pub fn tone_wav(rate: u32, millis: u64) -> Vec<u8> {
    let data = tone(rate, millis);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// MPEG Layer III frames of silence lasting at least `millis` at `rate` and `kbps`: a
/// header and zeroed side information and data in each, which decoders play as silence.
/// Rates of 32 kHz and up are MPEG-1; 16 to 24 kHz are MPEG-2 with half-size frames.
pub fn mp3_silence(rate: u32, kbps: u32, millis: u64) -> Vec<u8> {
    let mpeg1 = rate >= 32_000;
    let bitrates: &[u32] = if mpeg1 {
        &[
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ]
    } else {
        &[0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160]
    };
    let rates: &[u32] = if mpeg1 {
        &[44_100, 48_000, 32_000]
    } else {
        &[22_050, 24_000, 16_000]
    };
    let bitrate_index = bitrates.iter().position(|b| *b == kbps).unwrap_or(1) as u8;
    let rate_index = rates.iter().position(|r| *r == rate).unwrap_or(0) as u8;
    let (samples_per_frame, coefficient) = if mpeg1 { (1152, 144) } else { (576, 72) };
    let frame_len = (coefficient * kbps * 1000 / rate) as usize;
    let header = [
        0xFF,
        if mpeg1 { 0xFB } else { 0xF3 },
        (bitrate_index << 4) | (rate_index << 2),
        0xC0, // mono, no copyright, no emphasis
    ];
    let frames = (u64::from(rate) * millis / 1000).div_ceil(samples_per_frame) as usize;
    let mut out = Vec::with_capacity(frames * frame_len);
    for _ in 0..frames {
        out.extend_from_slice(&header);
        out.resize(out.len() + frame_len - header.len(), 0);
    }
    out
}

/// Returns the start of a FLAC file whose STREAMINFO says it lasts `millis` at `rate`, mono
/// 16-bit, with no audio frames: enough for a reader that takes the length from the header
/// (ffprobe does), not for playing.
pub fn flac_header(rate: u32, millis: u64) -> Vec<u8> {
    let samples = u64::from(rate) * millis / 1000;
    let mut info = Vec::with_capacity(34);
    info.extend_from_slice(&4096u16.to_be_bytes()); // min block size
    info.extend_from_slice(&4096u16.to_be_bytes()); // max block size
    info.extend_from_slice(&[0; 6]); // min and max frame size: unknown
    // 20 bits of rate, 3 of channels - 1, 5 of bits - 1, 36 of total samples.
    let packed: u64 = (u64::from(rate) << 44) | (15 << 36) | (samples & 0xF_FFFF_FFFF);
    info.extend_from_slice(&packed.to_be_bytes());
    info.extend_from_slice(&[0; 16]); // MD5 of the audio: unknown
    let mut out = b"fLaC".to_vec();
    out.push(0x80); // the last metadata block, of type STREAMINFO
    out.extend_from_slice(&(info.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&info);
    out
}

/// Returns `bytes` as lowercase hexadecimal, as MiniMax sends audio.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xF)]));
    }
    out
}

/// Returns a real PNG of `width`×`height` pixels of one colour: 8-bit RGB, its image data in
/// stored (uncompressed) deflate blocks, every chunk with its CRC.
pub fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    // Each row: filter type 0 (none), then the pixels.
    let row: Vec<u8> = std::iter::once(0)
        .chain(rgb.iter().copied().cycle().take(3 * width as usize))
        .collect();
    let raw = row.repeat(height as usize);
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in &raw {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", zlib), (b"IEND", Vec::new())] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(&data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(tag: u16, riff_extra: i64, data: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF".to_vec();
        let riff = (36 + data.len()) as i64 + riff_extra;
        out.extend_from_slice(&(riff as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        let bits: u16 = if tag == 3 { 32 } else { 16 };
        let align = bits / 8;
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&8000u32.to_le_bytes());
        out.extend_from_slice(&(8000 * u32::from(align)).to_le_bytes());
        out.extend_from_slice(&align.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_a_pcm_wav() {
        let info = parse_wav(&wav(1, 0, &[0; 16000])).unwrap();
        assert_eq!(
            info,
            WavInfo {
                sample_rate: 8000,
                channels: 1,
                bits: 16,
                data_len: 16000,
                duration: 1.0,
            }
        );
    }

    #[test]
    fn refuses_wrong_sizes_and_other_sample_formats() {
        assert!(
            parse_wav(&wav(1, 4, &[0; 8]))
                .unwrap_err()
                .contains("RIFF size")
        );
        assert!(
            parse_wav(&wav(3, 0, &[0; 8]))
                .unwrap_err()
                .contains("not PCM")
        );
        let mut cut = wav(1, 0, &[0; 8]);
        cut.truncate(cut.len() - 2);
        let riff = (cut.len() - 8) as u32;
        cut[4..8].copy_from_slice(&riff.to_le_bytes());
        assert!(parse_wav(&cut).is_err());
        assert!(parse_wav(b"not a wav file at all").is_err());
    }
}
