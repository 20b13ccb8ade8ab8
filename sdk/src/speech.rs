//! Speaking text of any length as one audio file: split, synthesize piece by piece, join,
//! encode once.
//!
//! A cloud voice takes a limited amount of text per request (Azure about ten minutes of audio,
//! MiniMax and Murf a few thousand characters), but a chapter of a book must still come out
//! as one valid file. [`Speaker::speak`] does that for a text-to-speech adapter:
//!
//! 1. it splits the text at sentence boundaries within the adapter's per-request [`Limit`]
//!    ([`text::split_text`]: English and Chinese punctuation alike);
//! 2. it calls the adapter's closure once per [`Piece`], reporting progress before each
//!    ("synthesizing piece 3 of 12");
//! 3. with more than one piece, the closure returns each piece as WAV ([`Audio::Wav`]) or as
//!    headerless samples of a known spec ([`Audio::Pcm`]); the
//!    samples are spooled to a temporary file in the job's work directory (memory stays flat
//!    however long the text) and must all share one [`WavSpec`];
//! 4. the result is written in the format the user asked for: WAV with one header of the
//!    right length, headerless PCM, or, for a compressed [`Encoding`], encoded **once** by
//!    ffmpeg from the joined WAV.
//!
//! Compressed pieces are never concatenated byte by byte: every MP3 piece repeats its Xing
//! and ID3 headers and Ogg pieces make a chained stream, and players and ffprobe then
//! misreport the duration. When encoding is needed for several pieces, ffmpeg is checked
//! before the first request, so a missing ffmpeg costs the user nothing
//! ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable), naming ffmpeg, with a hint).
//!
//! A text that fits one request gives a [`Piece`] that [`Piece::is_direct`]: the closure may
//! then ask the service for the requested format itself and stream it straight to the
//! output ([`Piece::output`], returning [`Audio::Written`]), with no re-encoding. It may
//! also return WAV, which is then handled like a joined file. The output is opened only by
//! a direct piece or once every piece has arrived, so a failed request leaves no file. An
//! option that only works for one request (streaming as the audio is made) is checked up
//! front with [`Speaker::require_one_request`].
//!
//! # Example
//!
//! ```no_run
//! use launcher_sdk::speech::{Audio, AudioFormat, Speaker};
//! use launcher_sdk::text::Limit;
//! # fn synthesize(text: &str, wav: bool) -> Result<Vec<u8>, launcher_sdk::PluginError> { todo!() }
//! # fn run(job: &launcher_sdk::Job, cx: &mut launcher_sdk::Context<'_>, text: &str)
//! #     -> Result<(), launcher_sdk::PluginError> {
//! let format = AudioFormat::parse("mp3")?;
//! let spoken = Speaker::new(format, Limit::chars(3000))
//!     .work_dir(job.work_dir())
//!     .speak(text, cx, |piece, cx| {
//!         if piece.is_direct() {
//!             // One request is enough: ask the service for MP3 and pass it on.
//!             piece.write(&synthesize(piece.text, false)?, cx)
//!         } else {
//!             Ok(Audio::Wav(synthesize(piece.text, true)?))
//!         }
//!     })?;
//! let mut result = launcher_sdk::JobResult::default();
//! spoken.add_to(&mut result.info); // requests, bytes, duration_secs
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::PluginError;
use crate::media::{Wav, WavSpec};
use crate::plugin::{Context, OutputWriter};
use crate::process::{Runner, TempFile};
use crate::text::{self, Limit};

/// The hint given when ffmpeg is needed and cannot be run.
const FFMPEG_HINT: &str = "install ffmpeg (Debian: `apt-get install ffmpeg`), or ask for \
                           --format wav, which needs no encoding";

/// How ffmpeg's stderr is kept for an error message.
const FFMPEG_STDERR_LIMIT: usize = 8 * 1024;

/// How the output file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// A WAV file: one header, then the samples.
    Wav,
    /// The samples alone, without a header (as the pieces' WAV carried them).
    Pcm,
    /// MPEG Layer III, through ffmpeg's `libmp3lame`.
    Mp3,
    /// Opus in Ogg, through ffmpeg's `libopus`.
    Opus,
    /// Vorbis in Ogg, through ffmpeg's `libvorbis`.
    Vorbis,
    /// FLAC, lossless, through ffmpeg.
    Flac,
    /// AAC in an MP4 (`.m4a`) file, through ffmpeg.
    Aac,
}

impl Encoding {
    /// Returns whether this encoding needs ffmpeg to be made from WAV pieces.
    pub fn is_compressed(self) -> bool {
        !matches!(self, Encoding::Wav | Encoding::Pcm)
    }

    /// Returns the ffmpeg encoder and muxer for a compressed encoding.
    fn ffmpeg_codec(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Encoding::Mp3 => ("libmp3lame", "mp3"),
            Encoding::Opus => ("libopus", "ogg"),
            Encoding::Vorbis => ("libvorbis", "ogg"),
            Encoding::Flac => ("flac", "flac"),
            Encoding::Aac => ("aac", "ipod"),
            Encoding::Wav | Encoding::Pcm => return None,
        })
    }
}

/// The format of the output file a user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFormat {
    /// How it is encoded.
    pub encoding: Encoding,
    /// Its media type, such as `audio/mpeg`.
    pub media_type: &'static str,
    /// Its file name extension, without the dot.
    pub extension: &'static str,
    /// The bit rate for a lossy encoding, in bits per second; ffmpeg's default when unset.
    pub bitrate: Option<u32>,
}

impl AudioFormat {
    /// Returns the format a user's `--format` names: `wav`, `pcm`, `mp3`, `ogg` or `opus`
    /// (Opus in Ogg), `vorbis`, `flac`, `aac` or `m4a`; any case, a leading dot allowed.
    pub fn named(name: &str) -> Option<AudioFormat> {
        let name = name.trim();
        let name = name.strip_prefix('.').unwrap_or(name).to_ascii_lowercase();
        let (encoding, media_type, extension) = match name.as_str() {
            "wav" | "wave" => (Encoding::Wav, "audio/wav", "wav"),
            "pcm" | "raw" => (Encoding::Pcm, "audio/pcm", "pcm"),
            "mp3" => (Encoding::Mp3, "audio/mpeg", "mp3"),
            "ogg" | "opus" | "oga" => (Encoding::Opus, "audio/ogg", "ogg"),
            "vorbis" => (Encoding::Vorbis, "audio/ogg", "ogg"),
            "flac" => (Encoding::Flac, "audio/flac", "flac"),
            "aac" | "m4a" => (Encoding::Aac, "audio/mp4", "m4a"),
            _ => return None,
        };
        Some(AudioFormat {
            encoding,
            media_type,
            extension,
            bitrate: None,
        })
    }

    /// Returns the format a user's `--format` names, like [`AudioFormat::named`], or an
    /// invalid-input error naming it, with a hint listing the names known.
    pub fn parse(name: &str) -> Result<AudioFormat, PluginError> {
        AudioFormat::named(name).ok_or_else(|| {
            PluginError::invalid_input(format!("unknown audio format `{}`", name.trim()))
                .with_hint("use wav, mp3, ogg (Opus), vorbis, flac, m4a (AAC) or pcm")
        })
    }

    /// Returns this format with a bit rate, in bits per second, for lossy encodings.
    pub fn with_bitrate(mut self, bits_per_second: u32) -> Self {
        self.bitrate = Some(bits_per_second);
        self
    }

    /// Returns this format written with another media type and extension (a service's own
    /// names for raw A-law, say); the encoding is unchanged.
    pub fn labelled(mut self, media_type: &'static str, extension: &'static str) -> Self {
        self.media_type = media_type;
        self.extension = extension;
        self
    }
}

/// One piece of the text, as the synthesis closure gets it.
#[derive(Debug, Clone, Copy)]
pub struct Piece<'t> {
    /// The text to speak.
    pub text: &'t str,
    /// Its position, from 0.
    pub index: usize,
    /// How many pieces the text has.
    pub count: usize,
    format: &'t AudioFormat,
}

impl<'t> Piece<'t> {
    /// Returns whether this piece is the whole text, so the closure may synthesize it in the
    /// requested format and write it straight to [`Piece::output`]. Otherwise the closure
    /// must return [`Audio::Wav`].
    pub fn is_direct(&self) -> bool {
        self.count == 1
    }

    /// Returns the format the user asked for.
    pub fn format(&self) -> &'t AudioFormat {
        self.format
    }

    /// Opens the job's `audio` output in the requested format, for a direct piece. Open it
    /// only once the service accepted the request, so a refused job leaves no file.
    pub fn output<'c, 'a>(
        &self,
        cx: &'c mut Context<'a>,
    ) -> Result<OutputWriter<'c, 'a>, PluginError> {
        if !self.is_direct() {
            return Err(PluginError::internal(
                "a piece of a longer text was written to the output; return it as WAV",
            ));
        }
        cx.output("audio", self.format.media_type, self.format.extension)
    }

    /// Writes a direct piece's whole audio, already in the requested format, to the output,
    /// for services that answer with the audio in one piece.
    pub fn write(&self, audio: &[u8], cx: &mut Context<'_>) -> Result<Audio, PluginError> {
        let mut out = self.output(cx)?;
        out.write_all(audio)?;
        out.finish()?;
        Ok(Audio::Written(audio.len() as u64))
    }
}

/// Returns whether a voice of `locale` (`en-US`, `zh_CN`, or a bare language `en`) speaks
/// `wanted`, a language (`en`) or a locale (`en-US`): the same, or `wanted` and a region;
/// case and `-`/`_` do not matter. What `voices --language` filters by.
pub fn speaks(locale: &str, wanted: &str) -> bool {
    let norm = |s: &str| s.trim().replace('_', "-").to_ascii_lowercase();
    let (locale, wanted) = (norm(locale), norm(wanted));
    locale == wanted
        || locale
            .strip_prefix(wanted.as_str())
            .is_some_and(|rest| rest.starts_with('-'))
}

/// What the synthesis closure made of a piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audio {
    /// A whole WAV file, to be joined with the other pieces.
    Wav(Vec<u8>),
    /// Headerless samples of this spec (a service's raw PCM, A-law or µ-law), joined the
    /// same way.
    Pcm(WavSpec, Vec<u8>),
    /// The piece was direct and this many bytes were written to [`Piece::output`], which
    /// the closure finished.
    Written(u64),
}

/// What [`Speaker::speak`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Spoken {
    /// How many pieces (requests) the text took.
    pub pieces: usize,
    /// The bytes written to the output.
    pub bytes: u64,
    /// How long the audio lasts, when it passed through WAV.
    pub duration_secs: Option<f64>,
    /// Whether ffmpeg encoded the output.
    pub encoded: bool,
}

impl Spoken {
    /// Adds what a job's result reports about the speech to `info`: `requests`, `bytes`
    /// and, when known, `duration_secs` (to the millisecond).
    pub fn add_to(&self, info: &mut serde_json::Map<String, serde_json::Value>) {
        info.insert("requests".into(), self.pieces.into());
        info.insert("bytes".into(), self.bytes.into());
        if let Some(secs) = self.duration_secs {
            info.insert(
                "duration_secs".into(),
                ((secs * 1000.0).round() / 1000.0).into(),
            );
        }
    }
}

/// Speaks long text as one file; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Speaker {
    format: AudioFormat,
    limit: Limit,
    ffmpeg: PathBuf,
    work_dir: PathBuf,
}

impl Speaker {
    /// Returns a speaker writing `format`, sending at most `limit` of text per request.
    pub fn new(format: AudioFormat, limit: Limit) -> Speaker {
        Speaker {
            format,
            limit,
            ffmpeg: PathBuf::from("ffmpeg"),
            work_dir: std::env::temp_dir(),
        }
    }

    /// Sets the ffmpeg program to encode with (default `ffmpeg` on `PATH`).
    pub fn ffmpeg(mut self, program: impl Into<PathBuf>) -> Self {
        self.ffmpeg = program.into();
        self
    }

    /// Sets where temporary files go: the job's [`Job::work_dir`](crate::Job::work_dir), so
    /// they land beside the output and are cleaned up with the job.
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = dir.into();
        self
    }

    /// Returns the pieces `text` is sent in, for checking them (building each request)
    /// before anything is sent.
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        text::split_text(text, self.limit)
    }

    /// Fails unless `text` fits one request, for an option that only works then (streaming
    /// the audio as it is made: `option` is how the user asked, e.g. `--stream`).
    pub fn require_one_request(&self, text: &str, option: &str) -> Result<(), PluginError> {
        let pieces = self.split(text).len();
        if pieces <= 1 {
            return Ok(());
        }
        Err(PluginError::invalid_input(format!(
            "{option} works for text of one request, and this text needs {pieces}"
        ))
        .with_hint(format!(
            "leave out {option}: long text is spoken piece by piece into one file"
        )))
    }

    /// Speaks `text`, calling `synthesize` once per piece, and writes one `audio` output.
    ///
    /// Fails with invalid input when the text is empty, with unavailable when several pieces
    /// need encoding and ffmpeg cannot run (before any piece is synthesized), or when the
    /// pieces' WAV files cannot be joined; errors of `synthesize` are returned as they are.
    pub fn speak<F>(
        &self,
        text: &str,
        cx: &mut Context<'_>,
        mut synthesize: F,
    ) -> Result<Spoken, PluginError>
    where
        F: FnMut(&Piece<'_>, &mut Context<'_>) -> Result<Audio, PluginError>,
    {
        let pieces = self.split(text);
        if pieces.is_empty() {
            return Err(PluginError::invalid_input("the text to speak is empty"));
        }
        let count = pieces.len();
        if count > 1 && self.format.encoding.is_compressed() {
            self.check_ffmpeg(cx)?;
        }
        let mut spool: Option<Spool> = None;
        for (index, text) in pieces.iter().enumerate() {
            let piece = Piece {
                text,
                index,
                count,
                format: &self.format,
            };
            if count > 1 {
                cx.progress(
                    Some(index as f64 / count as f64),
                    &format!("synthesizing piece {} of {count}", index + 1),
                )?;
            }
            match synthesize(&piece, cx)? {
                Audio::Written(bytes) if count == 1 => {
                    return Ok(Spoken {
                        pieces: 1,
                        bytes,
                        duration_secs: None,
                        encoded: false,
                    });
                }
                Audio::Written(_) => {
                    return Err(PluginError::internal(format!(
                        "piece {} of {count} was written to the output instead of returned as WAV",
                        index + 1
                    )));
                }
                Audio::Wav(bytes) => {
                    let wav = Wav::parse(&bytes).map_err(|err| {
                        PluginError::unavailable(format!(
                            "the service sent audio for piece {} of {count} that is not a valid WAV file: {}",
                            index + 1,
                            err.message
                        ))
                    })?;
                    self.spool(&mut spool, wav.spec, wav.data, index, count)?;
                }
                Audio::Pcm(spec, samples) => {
                    self.spool(&mut spool, spec, &samples, index, count)?;
                }
            }
        }
        let spool = spool.expect("there is at least one piece, and each returned or spooled");
        self.finish(spool, count, cx)
    }

    /// Adds a piece's samples to the spool, starting it with the first piece.
    fn spool(
        &self,
        spool: &mut Option<Spool>,
        spec: WavSpec,
        samples: &[u8],
        index: usize,
        count: usize,
    ) -> Result<(), PluginError> {
        match spool {
            None => *spool = Some(Spool::new(&self.work_dir, spec, samples)?),
            Some(spool) => spool.push(spec, samples, index, count)?,
        }
        Ok(())
    }

    /// Fails, with a hint, when ffmpeg cannot run.
    fn check_ffmpeg(&self, cx: &Context<'_>) -> Result<(), PluginError> {
        Runner::new(&self.ffmpeg)
            .arg("-version")
            .output(cx)
            .map(drop)
            .map_err(|err| ffmpeg_missing(&self.ffmpeg, &err))
    }

    /// Writes the spooled samples to the output in the requested format.
    fn finish(
        &self,
        mut spool: Spool,
        count: usize,
        cx: &mut Context<'_>,
    ) -> Result<Spoken, PluginError> {
        let spec = spool.spec;
        let data_len = spool.data_len;
        let duration_secs = Some(spec.duration_secs(data_len));
        spool.seal()?;
        let format = &self.format;
        let (bytes, encoded) = match format.encoding {
            Encoding::Wav => {
                let mut out = cx.output("audio", format.media_type, format.extension)?;
                let bytes = io::copy(spool.file.file(), &mut out)?;
                out.finish()?;
                (bytes, false)
            }
            Encoding::Pcm => {
                let file = spool.file.file();
                file.seek(SeekFrom::Start(spec.header_len() as u64))?;
                let mut out = cx.output("audio", format.media_type, format.extension)?;
                let bytes = io::copy(&mut file.take(data_len), &mut out)?;
                out.finish()?;
                (bytes, false)
            }
            _ => {
                if count > 1 {
                    cx.progress(
                        Some(1.0),
                        &format!("encoding {} pieces as {}", count, format.extension),
                    )?;
                }
                let mut encoded =
                    encode_wav(spool.file.path(), format, &self.ffmpeg, &self.work_dir, cx)?;
                let mut out = cx.output("audio", format.media_type, format.extension)?;
                let bytes = io::copy(encoded.file(), &mut out)?;
                out.finish()?;
                (bytes, true)
            }
        };
        Ok(Spoken {
            pieces: count,
            bytes,
            duration_secs,
            encoded,
        })
    }
}

/// Encodes the WAV file at `wav` as `format`, a compressed [`Encoding`], with the ffmpeg
/// program `ffmpeg` (`ffmpeg` on `PATH`, usually), into a temporary file in `work_dir`
/// (the job's [`Job::work_dir`](crate::Job::work_dir)), which it returns for the adapter to
/// copy to its output.
///
/// For an engine that makes WAV only (espeak-ng, a local server), so that `-o speech.mp3`
/// gets MP3 rather than a refusal. Fails with unavailable, naming ffmpeg, when ffmpeg cannot
/// run or cannot encode, and with invalid input for an uncompressed `format`.
pub fn encode_wav(
    wav: &Path,
    format: &AudioFormat,
    ffmpeg: &Path,
    work_dir: &Path,
    cx: &Context<'_>,
) -> Result<TempFile, PluginError> {
    let Some((codec, muxer)) = format.encoding.ffmpeg_codec() else {
        return Err(PluginError::invalid_input(format!(
            "{} is not an encoding for ffmpeg to make",
            format.extension
        )));
    };
    let suffix = format!(".{}", format.extension);
    let target = TempFile::new_in(work_dir, "launcher-speech-", &suffix)?;
    // ffmpeg writes to a seekable file, not a pipe, so it can go back and fill in what
    // players read the duration from (MP3's Xing frame count, MP4's index).
    let mut runner = Runner::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .arg("-i")
        .arg(file_arg(wav))
        .args(["-vn", "-map_metadata", "-1", "-c:a", codec]);
    if let Some(bitrate) = format.bitrate.filter(|_| format.encoding != Encoding::Flac) {
        runner = runner.arg("-b:a").arg(bitrate.to_string());
    }
    let output = runner
        .args(["-f", muxer])
        .arg(file_arg(target.path()))
        .stderr_limit(FFMPEG_STDERR_LIMIT)
        .allow_failure()
        .output(cx)
        .map_err(|err| ffmpeg_missing(ffmpeg, &err))?;
    if !output.status.success() {
        let line = output
            .stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("no message");
        return Err(PluginError::unavailable(format!(
            "ffmpeg could not encode the speech as {} ({}): {line}",
            format.extension, output.status
        ))
        .with_hint(format!(
            "check that this ffmpeg has the `{codec}` encoder (`ffmpeg -encoders`), or ask \
             for --format wav"
        )));
    }
    Ok(target)
}

/// Returns a path as ffmpeg must read it: a `file:` URL, so a name with a colon or a leading
/// dash is never taken for a protocol or an option.
fn file_arg(path: &Path) -> String {
    format!("file:{}", path.display())
}

/// Returns the error for an ffmpeg that cannot run, keeping cancellation as it is.
fn ffmpeg_missing(program: &Path, err: &PluginError) -> PluginError {
    if err.kind == crate::ErrorKind::Cancelled {
        return err.clone();
    }
    PluginError::unavailable(format!(
        "the speech needs ffmpeg to be encoded, and `{}` is not ready: {}",
        program.display(),
        err.message
    ))
    .with_hint(FFMPEG_HINT)
}

/// Samples of every piece so far, in a WAV file whose header is written last.
struct Spool {
    file: TempFile,
    spec: WavSpec,
    data_len: u64,
}

impl Spool {
    fn new(dir: &Path, spec: WavSpec, first: &[u8]) -> Result<Spool, PluginError> {
        let mut file = TempFile::new_in(dir, "launcher-speech-", ".wav")?;
        // A placeholder of the header's length; `seal` writes the real one.
        file.file().write_all(&vec![0; spec.header_len()])?;
        let mut spool = Spool {
            file,
            spec,
            data_len: 0,
        };
        spool.append(first)?;
        Ok(spool)
    }

    fn push(
        &mut self,
        spec: WavSpec,
        samples: &[u8],
        index: usize,
        count: usize,
    ) -> Result<(), PluginError> {
        if spec != self.spec {
            return Err(PluginError::unavailable(format!(
                "the service sent piece {} of {count} as {} but the first as {}, so they \
                 cannot be joined",
                index + 1,
                spec,
                self.spec
            )));
        }
        self.append(samples)
    }

    fn append(&mut self, data: &[u8]) -> Result<(), PluginError> {
        self.file.file().write_all(data)?;
        self.data_len += data.len() as u64;
        Ok(())
    }

    /// Writes the real header and the pad byte, and rewinds the file for reading.
    fn seal(&mut self) -> Result<(), PluginError> {
        let header = self.spec.header(self.data_len)?;
        let file: &mut File = self.file.file();
        if self.data_len % 2 == 1 {
            file.write_all(&[0])?;
        }
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header)?;
        file.flush()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::media::SampleFormat;
    use crate::plugin::TestHost;

    const SPEC: WavSpec = WavSpec {
        sample_rate: 8000,
        channels: 1,
        bits_per_sample: 16,
        format: SampleFormat::Int,
    };

    /// A WAV of `millis` of a quiet tone at 8 kHz.
    fn wav(spec: WavSpec, millis: u64) -> Vec<u8> {
        let frames = u64::from(spec.sample_rate) * millis / 1000;
        let data: Vec<u8> = (0..frames)
            .flat_map(|i| (((i as f64 * 0.3).sin() * 2000.0) as i16).to_le_bytes())
            .collect();
        let mut out = spec.header(data.len() as u64).unwrap();
        out.extend_from_slice(&data);
        out
    }

    fn text(sentences: usize) -> String {
        (0..sentences)
            .map(|i| {
                if i % 2 == 0 {
                    format!("Sentence {i} is here. ")
                } else {
                    "这是中文句子。".to_string()
                }
            })
            .collect()
    }

    fn speaker(format: &str) -> Speaker {
        Speaker::new(AudioFormat::named(format).unwrap(), Limit::chars(40))
    }

    /// Speaks with a closure that returns 100 ms of WAV per piece and records the pieces.
    fn speak(speaker: &Speaker, text: &str) -> (Result<Spoken, PluginError>, Vec<String>, Vec<u8>) {
        let mut host = TestHost::default();
        let mut seen = Vec::new();
        let result = {
            let mut cx = Context::new(&mut host);
            speaker.speak(text, &mut cx, |piece, _| {
                assert_eq!(piece.index, seen.len());
                seen.push(piece.text.to_string());
                Ok(Audio::Wav(wav(SPEC, 100)))
            })
        };
        (result, seen, host.output)
    }

    #[test]
    fn pieces_are_joined_into_one_wav_of_their_total_length() {
        let text = text(9);
        let (result, pieces, out) = speak(&speaker("wav"), &text);
        let spoken = result.unwrap();
        assert!(pieces.len() >= 3, "{pieces:?}");
        assert_eq!(spoken.pieces, pieces.len());
        assert!(!spoken.encoded);
        let joined = Wav::parse(&out).unwrap();
        assert!(joined.exact_sizes);
        assert_eq!(joined.spec, SPEC);
        assert_eq!(joined.data.len(), pieces.len() * 1600);
        assert_eq!(spoken.bytes, out.len() as u64);
        assert!((spoken.duration_secs.unwrap() - pieces.len() as f64 * 0.1).abs() < 1e-9);
        // Every piece ends at a sentence, English or Chinese.
        assert!(pieces.iter().all(|p| p.ends_with('.') || p.ends_with('。')));
    }

    #[test]
    fn a_locale_speaks_its_language_and_itself() {
        assert!(speaks("en-US", "en"));
        assert!(speaks("en_US", "EN-us"));
        assert!(speaks("zh-CN", "zh"));
        assert!(speaks("en", "en"));
        assert!(!speaks("en-US", "en-GB"));
        assert!(!speaks("eng-US", "en"));
        assert!(!speaks("en", "en-US"));
    }

    #[test]
    fn headerless_pieces_join_with_wav_pieces_into_one_wav() {
        let text = text(9);
        let mut host = TestHost::default();
        let mut count = 0;
        let spoken = {
            let mut cx = Context::new(&mut host);
            speaker("wav")
                .speak(&text, &mut cx, |piece, _| {
                    count += 1;
                    let whole = wav(SPEC, 100);
                    // Every other piece comes as bare samples, as a raw-PCM service sends.
                    Ok(if piece.index % 2 == 0 {
                        Audio::Pcm(SPEC, whole[SPEC.header_len()..].to_vec())
                    } else {
                        Audio::Wav(whole)
                    })
                })
                .unwrap()
        };
        assert!(count >= 3);
        let joined = Wav::parse(&host.output).unwrap();
        assert!(joined.exact_sizes);
        assert_eq!(joined.spec, SPEC);
        assert_eq!(joined.data.len(), count * 1600);
        assert_eq!(spoken.pieces, count);
    }

    #[test]
    fn pcm_is_the_joined_samples_without_a_header() {
        let (result, pieces, out) = speak(&speaker("pcm"), &text(6));
        result.unwrap();
        assert_eq!(out.len(), pieces.len() * 1600);
    }

    #[test]
    fn compressed_output_is_encoded_once_with_ffmpeg() {
        let (result, pieces, out) = speak(&speaker("mp3"), &text(9));
        let spoken = result.unwrap();
        assert!(spoken.encoded);
        assert!(pieces.len() >= 3);
        assert_eq!(crate::media::sniff(&out).unwrap().extension, "mp3");
        // One stream: a single ID3 or Xing header, not one per piece.
        let xing = out
            .windows(4)
            .filter(|w| w == b"Xing" || w == b"Info")
            .count();
        assert_eq!(xing, 1);
    }

    #[test]
    fn a_missing_ffmpeg_is_reported_before_any_piece_is_synthesized() {
        let speaker = speaker("ogg").ffmpeg("/nonexistent/ffmpeg");
        let (result, pieces, out) = speak(&speaker, &text(9));
        let err = result.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("ffmpeg"), "{}", err.message);
        assert!(err.hint.unwrap().contains("--format wav"));
        assert!(pieces.is_empty());
        assert!(out.is_empty());
        // WAV needs no ffmpeg.
        let speaker = self::speaker("wav").ffmpeg("/nonexistent/ffmpeg");
        speak(&speaker, &text(9)).0.unwrap();
    }

    #[test]
    fn a_direct_piece_is_written_by_the_closure_as_it_is() {
        let mut host = TestHost::default();
        let spoken = {
            let mut cx = Context::new(&mut host);
            speaker("mp3")
                .speak("Short.", &mut cx, |piece, cx| {
                    assert!(piece.is_direct());
                    assert_eq!(piece.format().extension, "mp3");
                    piece.write(b"ID3 pretend mp3", cx)
                })
                .unwrap()
        };
        assert_eq!(spoken.pieces, 1);
        assert!(!spoken.encoded);
        assert_eq!(host.output, b"ID3 pretend mp3");
    }

    #[test]
    fn pieces_of_different_formats_or_bad_wav_are_refused_and_nothing_is_written() {
        let other = WavSpec {
            sample_rate: 16000,
            ..SPEC
        };
        let mut host = TestHost::default();
        let err = {
            let mut cx = Context::new(&mut host);
            speaker("wav")
                .speak(&text(6), &mut cx, |piece, _| {
                    let spec = if piece.index == 0 { SPEC } else { other };
                    Ok(Audio::Wav(wav(spec, 50)))
                })
                .unwrap_err()
        };
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("piece 2 of"), "{}", err.message);
        assert!(host.output.is_empty());

        let mut cx = Context::new(&mut host);
        let err = speaker("wav")
            .speak("Hi.", &mut cx, |_, _| {
                Ok(Audio::Wav(b"ID3 not a wav".to_vec()))
            })
            .unwrap_err();
        assert!(err.message.contains("not a valid WAV"), "{}", err.message);
    }

    #[test]
    fn a_piece_of_a_long_text_cannot_be_written_directly() {
        let mut host = TestHost::default();
        let mut cx = Context::new(&mut host);
        let err = speaker("wav")
            .speak(&text(6), &mut cx, |piece, cx| {
                piece.output(cx)?;
                Ok(Audio::Written(0))
            })
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
    }

    #[test]
    fn options_for_one_request_are_refused_for_long_text() {
        speaker("wav")
            .require_one_request("Short.", "--stream")
            .unwrap();
        let err = speaker("wav")
            .require_one_request(&text(9), "--stream")
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(
            err.message
                .starts_with("--stream works for text of one request")
        );
        assert!(err.hint.unwrap().contains("leave out --stream"));
        let err = AudioFormat::parse(" webm ").unwrap_err();
        assert_eq!(err.message, "unknown audio format `webm`");
    }

    #[test]
    fn empty_text_is_invalid_input() {
        let (result, pieces, _) = speak(&speaker("wav"), " \n ");
        assert_eq!(result.unwrap_err().kind, ErrorKind::InvalidInput);
        assert!(pieces.is_empty());
    }

    #[test]
    fn format_names_map_to_encodings() {
        let named = |n: &str| AudioFormat::named(n).map(|f| (f.encoding, f.extension));
        assert_eq!(named("MP3"), Some((Encoding::Mp3, "mp3")));
        assert_eq!(named(".ogg"), Some((Encoding::Opus, "ogg")));
        assert_eq!(named("opus"), Some((Encoding::Opus, "ogg")));
        assert_eq!(named("m4a"), Some((Encoding::Aac, "m4a")));
        assert_eq!(named("wav"), Some((Encoding::Wav, "wav")));
        assert_eq!(named("webm"), None);
        assert!(Encoding::Flac.is_compressed());
        assert!(!Encoding::Pcm.is_compressed());
    }
}
