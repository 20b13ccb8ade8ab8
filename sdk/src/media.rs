//! Media formats plugins handle themselves: WAV files, and telling a format from its first bytes.
//!
//! Engines and services hand plugins audio in pieces (one synthesis request per sentence, one
//! espeak-ng run writing to a pipe), and the host wants one valid file. This module holds the
//! one WAV reader and writer of the SDK:
//!
//! - [`Wav::parse`] reads a whole file; [`WavHeader::parse`] reads only the header, for files
//!   too large to hold. Both skip unknown chunks, accept `WAVE_FORMAT_EXTENSIBLE`, and treat
//!   the placeholder sizes streaming producers write (0, `0xFFFFFFFF`, espeak-ng's
//!   `0x7FFFF000`) as "up to the end of the bytes".
//! - [`WavSpec::header`] writes a canonical header for a known data length. Host outputs
//!   cannot seek, so the length must be known before the first byte is written: [`join_wav`]
//!   joins pieces held in memory, and [`WavStreamWriter`] writes pieces whose total length
//!   is known up front (for example pieces spooled to temporary files).
//! - [`repair_header`] rewrites a streaming header once the real length is known.
//!
//! [`sniff`] names the format of a file from its first bytes (images, audio, video), and
//! [`format_for_name`] maps a format a user types (`mp3`, `jpg`) to its media type and
//! extension.
//!
//! # Example
//!
//! ```
//! use launcher_sdk::media::{self, SampleFormat, WavSpec};
//!
//! let spec = WavSpec { sample_rate: 8000, channels: 1, bits_per_sample: 16, format: SampleFormat::Int };
//! let mut first = spec.header(4).unwrap();
//! first.extend_from_slice(&[1, 0, 2, 0]);
//! let mut second = spec.header(2).unwrap();
//! second.extend_from_slice(&[3, 0]);
//!
//! let mut joined = Vec::new();
//! media::join_wav(&[first, second], &mut joined).unwrap();
//! let wav = media::Wav::parse(&joined).unwrap();
//! assert_eq!(wav.data, &[1, 0, 2, 0, 3, 0]);
//! assert_eq!(media::sniff(&joined).unwrap().extension, "wav");
//! ```

use std::fmt;
use std::io::{self, Write};

use crate::error::PluginError;
use crate::types::ContentKind;

/// How the samples of a WAV file are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SampleFormat {
    /// Integer PCM (format tag 1): unsigned for 8 bits, signed otherwise.
    Int,
    /// IEEE floating point (format tag 3), 32 or 64 bits.
    Float,
    /// G.711 A-law (format tag 6), 8 bits.
    ALaw,
    /// G.711 µ-law (format tag 7), 8 bits.
    MuLaw,
}

impl SampleFormat {
    fn tag(self) -> u16 {
        match self {
            SampleFormat::Int => 1,
            SampleFormat::Float => 3,
            SampleFormat::ALaw => 6,
            SampleFormat::MuLaw => 7,
        }
    }

    fn from_tag(tag: u16) -> Option<Self> {
        match tag {
            1 => Some(SampleFormat::Int),
            3 => Some(SampleFormat::Float),
            6 => Some(SampleFormat::ALaw),
            7 => Some(SampleFormat::MuLaw),
            _ => None,
        }
    }
}

/// What the samples of a WAV file are: everything two pieces must share to be joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WavSpec {
    /// Frames per second.
    pub sample_rate: u32,
    /// Samples per frame.
    pub channels: u16,
    /// Bits per sample, as stored (a 24-bit sample in a 32-bit container counts 32).
    pub bits_per_sample: u16,
    /// How each sample is encoded.
    pub format: SampleFormat,
}

impl fmt::Display for WavSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = match self.format {
            SampleFormat::Int => "PCM",
            SampleFormat::Float => "float",
            SampleFormat::ALaw => "A-law",
            SampleFormat::MuLaw => "µ-law",
        };
        let channels = match self.channels {
            1 => "mono".to_string(),
            2 => "stereo".to_string(),
            n => format!("{n} channels"),
        };
        write!(
            f,
            "{} Hz {channels} {}-bit {format}",
            self.sample_rate, self.bits_per_sample
        )
    }
}

/// The largest data length a WAV header can describe: the RIFF size is 32 bits and counts the
/// rest of the header too.
const MAX_DATA_LEN: u64 = u32::MAX as u64 - 64;

/// Data sizes at or above this that run past the bytes given are a streaming producer's
/// placeholder rather than a truncated file: espeak-ng writes `0x7FFFF000`, others
/// `0xFFFFFFFF`, and no real speech file comes near 2 GiB.
const PLACEHOLDER_MIN: u32 = 0x7FFF_F000;

impl WavSpec {
    /// Returns the bytes of one frame (one sample for every channel).
    pub fn block_align(&self) -> u16 {
        self.channels.saturating_mul(self.bits_per_sample / 8)
    }

    /// Returns the bytes of audio per second.
    pub fn byte_rate(&self) -> u32 {
        self.sample_rate
            .saturating_mul(u32::from(self.block_align()))
    }

    /// Returns how many seconds `data_len` bytes of samples last.
    pub fn duration_secs(&self, data_len: u64) -> f64 {
        match self.byte_rate() {
            0 => 0.0,
            rate => data_len as f64 / f64::from(rate),
        }
    }

    /// Returns the length of the header [`WavSpec::header`] writes: 44 bytes for integer PCM;
    /// 58 for the other formats, which also need a `fact` chunk.
    pub fn header_len(&self) -> usize {
        if self.format == SampleFormat::Int {
            44
        } else {
            58
        }
    }

    /// Returns a header for `data_len` bytes of samples, ready to be followed by them (and by
    /// a pad byte when `data_len` is odd).
    ///
    /// Fails when the spec describes no audio or the data does not fit in a WAV file.
    pub fn header(&self, data_len: u64) -> Result<Vec<u8>, PluginError> {
        self.validate()?;
        if data_len > MAX_DATA_LEN {
            return Err(too_long(data_len));
        }
        let plain = self.format == SampleFormat::Int;
        let fmt_len: u32 = if plain { 16 } else { 18 };
        let padded = data_len + (data_len & 1);
        let riff_len = (self.header_len() as u64 - 8) + padded;
        let mut h = Vec::with_capacity(self.header_len());
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&(riff_len as u32).to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&fmt_len.to_le_bytes());
        h.extend_from_slice(&self.format.tag().to_le_bytes());
        h.extend_from_slice(&self.channels.to_le_bytes());
        h.extend_from_slice(&self.sample_rate.to_le_bytes());
        h.extend_from_slice(&self.byte_rate().to_le_bytes());
        h.extend_from_slice(&self.block_align().to_le_bytes());
        h.extend_from_slice(&self.bits_per_sample.to_le_bytes());
        if !plain {
            // Formats other than integer PCM need cbSize and a sample count (RIFF spec, 1994).
            h.extend_from_slice(&0u16.to_le_bytes());
            h.extend_from_slice(b"fact");
            h.extend_from_slice(&4u32.to_le_bytes());
            let frames = data_len / u64::from(self.block_align());
            h.extend_from_slice(&(frames as u32).to_le_bytes());
        }
        h.extend_from_slice(b"data");
        h.extend_from_slice(&(data_len as u32).to_le_bytes());
        debug_assert_eq!(h.len(), self.header_len());
        Ok(h)
    }

    /// Writes [`WavSpec::header`] for `data_len` bytes to `out`.
    pub fn write_header(&self, out: &mut dyn Write, data_len: u64) -> Result<(), PluginError> {
        out.write_all(&self.header(data_len)?)?;
        Ok(())
    }

    fn validate(&self) -> Result<(), PluginError> {
        let bits_ok = match self.format {
            SampleFormat::Int => matches!(self.bits_per_sample, 8 | 16 | 24 | 32),
            SampleFormat::Float => matches!(self.bits_per_sample, 32 | 64),
            SampleFormat::ALaw | SampleFormat::MuLaw => self.bits_per_sample == 8,
        };
        if self.sample_rate == 0 || self.channels == 0 || !bits_ok {
            return Err(PluginError::invalid_input(format!(
                "the WAV format {self} describes no playable audio"
            )));
        }
        Ok(())
    }
}

fn too_long(data_len: u64) -> PluginError {
    PluginError::invalid_input(format!(
        "{data_len} bytes of samples do not fit in a WAV file (4 GiB at most)"
    ))
}

fn bad_wav(why: impl fmt::Display) -> PluginError {
    PluginError::invalid_input(format!("the WAV file is not valid: {why}"))
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The header of a WAV file: its spec and where its samples start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavHeader {
    /// What the samples are.
    pub spec: WavSpec,
    /// Where the samples start: the header is everything before.
    pub data_offset: usize,
    /// The data chunk's size as written, which may be a streaming placeholder.
    pub declared_len: u32,
    /// Where the RIFF size and the data size sit, for [`repair_header`].
    riff_size_at: usize,
}

impl WavHeader {
    /// Reads the header at the start of `head`, which must reach the first sample.
    ///
    /// Chunks before the data chunk (`LIST`, `fact`, `bext`, ...) are skipped, with their pad
    /// byte when their size is odd.
    pub fn parse(head: &[u8]) -> Result<WavHeader, PluginError> {
        let riff_size_at = match head.get(0..4) {
            Some(b"RIFF") => 4,
            // RF64 keeps its real sizes in a `ds64` chunk; the 32-bit ones are placeholders.
            Some(b"RF64") => 4,
            _ => return Err(bad_wav("it does not start with a RIFF header")),
        };
        if head.get(8..12) != Some(b"WAVE") {
            return Err(bad_wav("its RIFF header is not of type WAVE"));
        }
        let mut spec = None;
        let mut pos = 12usize;
        loop {
            let Some(chunk) = head.get(pos..pos + 8) else {
                return Err(bad_wav(format!(
                    "it ends after {} bytes, before its data chunk",
                    head.len()
                )));
            };
            let size = le32(chunk, 4);
            let body = pos + 8;
            match &chunk[..4] {
                b"fmt " => {
                    let end = body + size as usize;
                    let fmt = head.get(body..end).ok_or_else(|| {
                        bad_wav(format!(
                            "its fmt chunk is cut short at {} bytes",
                            head.len()
                        ))
                    })?;
                    spec = Some(parse_fmt(fmt)?);
                }
                b"data" => {
                    let spec =
                        spec.ok_or_else(|| bad_wav("its data chunk comes before its fmt chunk"))?;
                    return Ok(WavHeader {
                        spec,
                        data_offset: body,
                        declared_len: size,
                        riff_size_at,
                    });
                }
                _ => {}
            }
            pos = body
                .checked_add(size as usize + (size as usize & 1))
                .ok_or_else(|| bad_wav("a chunk size overflows"))?;
        }
    }

    /// Returns whether the data size is a placeholder a streaming producer wrote because it
    /// could not know the length (0, `0xFFFFFFFF`, or espeak-ng's `0x7FFFF000`).
    pub fn is_streaming(&self) -> bool {
        self.declared_len == 0 || self.declared_len >= PLACEHOLDER_MIN
    }

    /// Returns how many bytes of samples a file of `total_len` bytes holds.
    ///
    /// A placeholder size means "the rest of the file", cut to whole frames (and to an even
    /// count, so the data chunk needs no pad byte); so does a real size of 2 GiB or more,
    /// which cannot be told from espeak-ng's placeholder. A real size that runs past the end means
    /// the file was cut short, which is an error. Bytes after the data chunk are ignored.
    pub fn data_len(&self, total_len: u64) -> Result<u64, PluginError> {
        let available = total_len.saturating_sub(self.data_offset as u64);
        let declared = u64::from(self.declared_len);
        if self.is_streaming() {
            let frame = u64::from(self.spec.block_align().max(1));
            let step = if frame % 2 == 1 { frame * 2 } else { frame };
            return Ok(available - available % step);
        }
        if declared <= available {
            return Ok(declared);
        }
        Err(bad_wav(format!(
            "its data chunk says {declared} bytes but only {available} follow (the file is cut short)"
        )))
    }
}

fn parse_fmt(fmt: &[u8]) -> Result<WavSpec, PluginError> {
    if fmt.len() < 16 {
        return Err(bad_wav(format!(
            "its fmt chunk has {} bytes, fewer than 16",
            fmt.len()
        )));
    }
    let mut tag = le16(fmt, 0);
    if tag == 0xFFFE {
        // WAVE_FORMAT_EXTENSIBLE: the real tag is the first two bytes of the sub-format GUID.
        if fmt.len() < 40 {
            return Err(bad_wav("its extensible fmt chunk is shorter than 40 bytes"));
        }
        tag = le16(fmt, 24);
    }
    let format = SampleFormat::from_tag(tag).ok_or_else(|| {
        PluginError::invalid_input(format!(
            "the WAV sample format {tag:#06x} is not supported (only PCM, float, A-law and µ-law are)"
        ))
    })?;
    let spec = WavSpec {
        channels: le16(fmt, 2),
        sample_rate: le32(fmt, 4),
        bits_per_sample: le16(fmt, 14),
        format,
    };
    spec.validate()?;
    Ok(spec)
}

/// A whole WAV file, parsed: its spec and its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wav<'a> {
    /// What the samples are.
    pub spec: WavSpec,
    /// The samples, without any pad byte or trailing chunk.
    pub data: &'a [u8],
    /// Where the samples start in the bytes parsed.
    pub data_offset: usize,
    /// Whether the header carried a streaming placeholder size instead of the real one.
    pub streamed: bool,
    /// Whether the RIFF size and the data size both agree with the bytes parsed, as they do
    /// in a well-formed file with nothing after its data chunk.
    pub exact_sizes: bool,
}

impl<'a> Wav<'a> {
    /// Parses a whole WAV file (see [`WavHeader::parse`] and [`WavHeader::data_len`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Wav<'a>, PluginError> {
        let header = WavHeader::parse(bytes)?;
        let len = header.data_len(bytes.len() as u64)? as usize;
        let data = &bytes[header.data_offset..header.data_offset + len];
        let riff_len = le32(bytes, header.riff_size_at) as usize;
        let padded = header.data_offset + len + (len & 1);
        Ok(Wav {
            spec: header.spec,
            data,
            data_offset: header.data_offset,
            streamed: header.is_streaming(),
            exact_sizes: header.declared_len as usize == len
                && riff_len + 8 == bytes.len()
                && padded == bytes.len(),
        })
    }

    /// Returns how many seconds the samples last.
    pub fn duration_secs(&self) -> f64 {
        self.spec.duration_secs(self.data.len() as u64)
    }
}

/// Rewrites the RIFF and data sizes in `head`, the first bytes of a WAV file `total_len` bytes
/// long, to match the samples actually present, and returns the repaired header.
///
/// This is for producers that write to a pipe and cannot seek back (espeak-ng `--stdout`):
/// spool the output, then fix the header before handing the file on. `head` must reach the
/// first sample; the whole file may be given. Copy [`WavHeader::data_len`] bytes of samples
/// after the header: a trailing partial frame is dropped.
pub fn repair_header(head: &mut [u8], total_len: u64) -> Result<WavHeader, PluginError> {
    let parsed = WavHeader::parse(head)?;
    let data_len = parsed.data_len(total_len)?;
    if data_len > MAX_DATA_LEN {
        return Err(too_long(data_len));
    }
    let riff_len = (parsed.data_offset as u64 - 8) + data_len + (data_len & 1);
    head[0..4].copy_from_slice(b"RIFF");
    head[4..8].copy_from_slice(&(riff_len as u32).to_le_bytes());
    let size_at = parsed.data_offset - 4;
    head[size_at..parsed.data_offset].copy_from_slice(&(data_len as u32).to_le_bytes());
    WavHeader::parse(head)
}

fn mismatch(first: &WavSpec, other: &WavSpec, index: usize) -> PluginError {
    PluginError::invalid_input(format!(
        "WAV piece {} is {other} but the first piece is {first}, so they cannot be joined",
        index + 1
    ))
}

/// Joins whole WAV files held in memory into one WAV file written to `out`, and returns its
/// spec and data length.
///
/// Every piece must have the same [`WavSpec`]. Nothing is written unless every piece parses
/// and matches, so a failure leaves `out` untouched.
pub fn join_wav<P: AsRef<[u8]>>(
    pieces: &[P],
    out: &mut dyn Write,
) -> Result<(WavSpec, u64), PluginError> {
    let parsed = pieces
        .iter()
        .map(|p| Wav::parse(p.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let first = parsed
        .first()
        .ok_or_else(|| PluginError::internal("there are no WAV pieces to join"))?;
    let spec = first.spec;
    let mut total = 0u64;
    for (i, piece) in parsed.iter().enumerate() {
        if piece.spec != spec {
            return Err(mismatch(&spec, &piece.spec, i));
        }
        total += piece.data.len() as u64;
    }
    let mut writer = WavStreamWriter::new(out, spec, total)?;
    for piece in &parsed {
        writer.write_all(piece.data)?;
    }
    writer.finish()?;
    Ok((spec, total))
}

/// Writes a WAV file whose data length is known before its samples are: the header first,
/// then the samples as they come, to an output that need not seek.
///
/// [`WavStreamWriter::finish`] checks that exactly the announced number of bytes was written,
/// because a header that lies about its length makes a broken file.
#[derive(Debug)]
pub struct WavStreamWriter<W: Write> {
    out: W,
    spec: WavSpec,
    total: u64,
    written: u64,
}

impl<W: Write> WavStreamWriter<W> {
    /// Writes the header for `total_data_len` bytes of samples to `out`.
    pub fn new(mut out: W, spec: WavSpec, total_data_len: u64) -> Result<Self, PluginError> {
        spec.write_header(&mut out, total_data_len)?;
        Ok(WavStreamWriter {
            out,
            spec,
            total: total_data_len,
            written: 0,
        })
    }

    /// Returns the spec given to [`WavStreamWriter::new`].
    pub fn spec(&self) -> &WavSpec {
        &self.spec
    }

    /// Returns how many bytes of samples are still to come.
    pub fn remaining(&self) -> u64 {
        self.total - self.written
    }

    /// Appends the samples of a whole WAV file, which must have this writer's spec.
    pub fn push_wav(&mut self, wav: &[u8]) -> Result<(), PluginError> {
        let piece = Wav::parse(wav)?;
        if piece.spec != self.spec {
            return Err(PluginError::invalid_input(format!(
                "a WAV piece is {} but the output is {}, so they cannot be joined",
                piece.spec, self.spec
            )));
        }
        self.write_all(piece.data)?;
        Ok(())
    }

    /// Checks that every announced byte was written, adds the pad byte an odd length needs,
    /// flushes, and returns the output.
    pub fn finish(mut self) -> Result<W, PluginError> {
        if self.written != self.total {
            return Err(PluginError::internal(format!(
                "the WAV header announced {} bytes of samples but {} were written",
                self.total, self.written
            )));
        }
        if self.total % 2 == 1 {
            self.out.write_all(&[0])?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for WavStreamWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.remaining() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} more bytes of samples than the WAV header announced",
                    buf.len() as u64 - self.remaining()
                ),
            ));
        }
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A file format: what to call it on the wire and on disk, and what kind of content it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFormat {
    /// The media type, such as `audio/wav`.
    pub media_type: &'static str,
    /// The usual file extension, without the dot, such as `wav`.
    pub extension: &'static str,
    /// The kind of content.
    pub kind: ContentKind,
}

const fn format(
    media_type: &'static str,
    extension: &'static str,
    kind: ContentKind,
) -> MediaFormat {
    MediaFormat {
        media_type,
        extension,
        kind,
    }
}

/// Returns the format of a file from its first bytes (a few dozen are enough), or `None` when
/// it is not one this function knows.
///
/// Knows PNG, JPEG, GIF, WebP, AVIF, HEIC, WAV, MP3 (an ID3v2 tag or an MPEG audio frame),
/// AAC (ADTS), Ogg (Opus and Vorbis as audio, Theora as video), FLAC, MP4 family files
/// (`M4A ` brands as audio, QuickTime as `mov`, the rest as video), and Matroska/WebM. Audio
/// only WebM or MP4 with a generic brand reads as video: telling them apart needs the tracks.
pub fn sniff(head: &[u8]) -> Option<MediaFormat> {
    use ContentKind::{Audio, Image};
    let at = |range: std::ops::Range<usize>| head.get(range).unwrap_or_default();
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(format("image/png", "png", Image));
    }
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(format("image/jpeg", "jpg", Image));
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return Some(format("image/gif", "gif", Image));
    }
    if matches!(at(0..4), b"RIFF" | b"RF64") {
        return match at(8..12) {
            b"WEBP" => Some(format("image/webp", "webp", Image)),
            b"WAVE" => Some(format("audio/wav", "wav", Audio)),
            _ => None,
        };
    }
    if head.starts_with(b"fLaC") {
        return Some(format("audio/flac", "flac", Audio));
    }
    if head.starts_with(b"OggS") {
        return Some(sniff_ogg(head));
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some(sniff_ebml(head));
    }
    if at(4..8) == b"ftyp" {
        return sniff_ftyp(at(8..12));
    }
    if head.starts_with(b"ID3") {
        return Some(format("audio/mpeg", "mp3", Audio));
    }
    sniff_mpeg_audio(head)
}

fn sniff_ogg(head: &[u8]) -> MediaFormat {
    use ContentKind::{Audio, Video};
    // The first page carries the codec's identification header right after its segment table.
    let payload = head
        .get(26)
        .and_then(|&segments| head.get(27 + usize::from(segments)..))
        .unwrap_or_default();
    if payload.starts_with(b"OpusHead") {
        format("audio/ogg", "opus", Audio)
    } else if payload.starts_with(b"\x80theora") {
        format("video/ogg", "ogv", Video)
    } else {
        format("audio/ogg", "ogg", Audio)
    }
}

fn sniff_ebml(head: &[u8]) -> MediaFormat {
    // The DocType element (ID 0x4282) is in the EBML header, within the first few dozen bytes;
    // its size is a one-byte variable-length integer in every file seen in practice.
    let window = &head[..head.len().min(64)];
    let doc_type = window
        .windows(2)
        .position(|w| w == [0x42, 0x82])
        .and_then(|i| {
            let size = window.get(i + 2)?;
            if size & 0x80 == 0 {
                return None;
            }
            let len = usize::from(size & 0x7F);
            window.get(i + 3..i + 3 + len)
        });
    match doc_type {
        Some(b"webm") => format("video/webm", "webm", ContentKind::Video),
        _ => format("video/x-matroska", "mkv", ContentKind::Video),
    }
}

fn sniff_ftyp(brand: &[u8]) -> Option<MediaFormat> {
    use ContentKind::{Audio, Image, Video};
    Some(match brand {
        b"M4A " | b"M4B " | b"M4P " | b"F4A " | b"F4B " => format("audio/mp4", "m4a", Audio),
        b"qt  " => format("video/quicktime", "mov", Video),
        b"avif" | b"avis" => format("image/avif", "avif", Image),
        b"heic" | b"heix" | b"mif1" | b"msf1" => format("image/heic", "heic", Image),
        b"" => return None,
        _ => format("video/mp4", "mp4", Video),
    })
}

fn sniff_mpeg_audio(head: &[u8]) -> Option<MediaFormat> {
    let [0xFF, b1, b2, ..] = *head else {
        return None;
    };
    if b1 & 0xE0 != 0xE0 {
        return None;
    }
    let version = (b1 >> 3) & 0b11;
    let layer = (b1 >> 1) & 0b11;
    if layer == 0 {
        // Layer bits 00 with MPEG-2/4 version bits is an ADTS (AAC) header.
        return (b1 & 0xF6 == 0xF0).then(|| format("audio/aac", "aac", ContentKind::Audio));
    }
    let bitrate = b2 >> 4;
    let rate = (b2 >> 2) & 0b11;
    // Reserved values: a random 0xFF byte followed by these is not a frame.
    if version == 0b01 || bitrate == 0b1111 || rate == 0b11 {
        return None;
    }
    Some(format("audio/mpeg", "mp3", ContentKind::Audio))
}

/// Returns the format for a name a user types, such as `mp3`, `JPG` or `.wav`, or `None`.
///
/// Knows wav, mp3, ogg, opus, flac, aac, m4a, webm, mp4, mov, mkv, png, jpg/jpeg, webp and gif.
pub fn format_for_name(name: &str) -> Option<MediaFormat> {
    use ContentKind::{Audio, Image, Video};
    let name = name.trim();
    let name = name.strip_prefix('.').unwrap_or(name).to_ascii_lowercase();
    Some(match name.as_str() {
        "wav" | "wave" => format("audio/wav", "wav", Audio),
        "mp3" => format("audio/mpeg", "mp3", Audio),
        "ogg" | "oga" => format("audio/ogg", "ogg", Audio),
        "opus" => format("audio/ogg", "opus", Audio),
        "flac" => format("audio/flac", "flac", Audio),
        "aac" => format("audio/aac", "aac", Audio),
        "m4a" => format("audio/mp4", "m4a", Audio),
        "webm" => format("video/webm", "webm", Video),
        "mp4" => format("video/mp4", "mp4", Video),
        "mov" => format("video/quicktime", "mov", Video),
        "mkv" => format("video/x-matroska", "mkv", Video),
        "png" => format("image/png", "png", Image),
        "jpg" | "jpeg" => format("image/jpeg", "jpg", Image),
        "webp" => format("image/webp", "webp", Image),
        "gif" => format("image/gif", "gif", Image),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// PNG text chunks

/// The eight bytes every PNG starts with.
pub const PNG_SIGNATURE: [u8; 8] = *b"\x89PNG\r\n\x1a\n";

/// Returns the CRC-32 (ISO-HDLC, as PNG uses) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Returns a PNG chunk holding `text` under `keyword`: `tEXt` when the text is Latin-1, as
/// PNG requires of it, else an uncompressed `iTXt` holding UTF-8 (what image libraries do).
pub fn png_text_chunk(keyword: &str, text: &str) -> Vec<u8> {
    let latin1 = text.chars().all(|c| (c as u32) < 256);
    let mut body: Vec<u8> = Vec::with_capacity(text.len() + keyword.len() + 16);
    if latin1 {
        body.extend_from_slice(b"tEXt");
        body.extend_from_slice(keyword.as_bytes());
        body.push(0);
        body.extend(text.chars().map(|c| c as u8));
    } else {
        body.extend_from_slice(b"iTXt");
        body.extend_from_slice(keyword.as_bytes());
        // Keyword end, no compression, compression method, empty language and translation.
        body.extend_from_slice(&[0, 0, 0, 0, 0]);
        body.extend_from_slice(text.as_bytes());
    }
    let mut chunk = Vec::with_capacity(body.len() + 8);
    chunk.extend_from_slice(&((body.len() - 4) as u32).to_be_bytes());
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc32(&body).to_be_bytes());
    chunk
}

/// Returns the text stored under `keyword` in a PNG's `tEXt` or `iTXt` chunks, if any.
pub fn png_text(png: &[u8], keyword: &str) -> Option<String> {
    let mut at = PNG_SIGNATURE.len();
    if !png.starts_with(&PNG_SIGNATURE) {
        return None;
    }
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().ok()?) as usize;
        let kind = &png[at + 4..at + 8];
        let data = png.get(at + 8..at + 8 + len)?;
        let key = data.split(|b| *b == 0).next()?;
        if key == keyword.as_bytes() {
            let rest = &data[key.len() + 1..];
            match kind {
                b"tEXt" => return Some(rest.iter().map(|b| char::from(*b)).collect()),
                // Uncompressed iTXt only: flag, method, language\0, translated keyword\0.
                b"iTXt" if rest.first() == Some(&0) => {
                    let mut parts = rest[2..].splitn(3, |b| *b == 0);
                    let text = parts.nth(2)?;
                    return String::from_utf8(text.to_vec()).ok();
                }
                _ => {}
            }
        }
        at += 12 + len;
    }
    None
}

/// Passes a PNG through as it streams and, when it has no text chunk under a keyword, adds
/// one before its end. The image is never held whole: only a chunk's 8-byte header waits.
pub struct PngTextAdder {
    keyword: Vec<u8>,
    chunk: Vec<u8>,
    state: PngState,
    found: bool,
}

enum PngState {
    /// Bytes of the signature still to pass.
    Signature(usize),
    /// A chunk header being gathered.
    Header(Vec<u8>),
    /// Inside a chunk: bytes left (data and CRC); the start of a text chunk's data.
    Body { left: usize, text: Option<Vec<u8>> },
}

impl PngTextAdder {
    /// Adds `text` under `keyword` unless the image carries that keyword already.
    pub fn new(keyword: &str, text: &str) -> PngTextAdder {
        PngTextAdder {
            keyword: keyword.as_bytes().to_vec(),
            chunk: png_text_chunk(keyword, text),
            state: PngState::Signature(PNG_SIGNATURE.len()),
            found: false,
        }
    }

    /// Passes the next bytes of the image to `out`, adding the chunk where it belongs.
    pub fn write(&mut self, mut data: &[u8], out: &mut dyn Write) -> std::io::Result<()> {
        while !data.is_empty() {
            match &mut self.state {
                PngState::Signature(left) => {
                    let n = (*left).min(data.len());
                    out.write_all(&data[..n])?;
                    data = &data[n..];
                    *left -= n;
                    if *left == 0 {
                        self.state = PngState::Header(Vec::with_capacity(8));
                    }
                }
                PngState::Header(head) => {
                    let n = (8 - head.len()).min(data.len());
                    head.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if head.len() < 8 {
                        continue;
                    }
                    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
                    let kind = [head[4], head[5], head[6], head[7]];
                    if &kind == b"IEND" && !self.found {
                        out.write_all(&self.chunk)?;
                        self.found = true;
                    }
                    out.write_all(head)?;
                    let text = matches!(&kind, b"tEXt" | b"iTXt").then(Vec::new);
                    self.state = PngState::Body {
                        left: len + 4,
                        text,
                    };
                }
                PngState::Body { left, text } => {
                    let n = (*left).min(data.len());
                    if let Some(start) = text.as_mut() {
                        let want = (self.keyword.len() + 1).saturating_sub(start.len()).min(n);
                        start.extend_from_slice(&data[..want]);
                    }
                    out.write_all(&data[..n])?;
                    data = &data[n..];
                    *left -= n;
                    if *left == 0 {
                        if let Some(start) = text.take()
                            && start.len() == self.keyword.len() + 1
                            && start[..self.keyword.len()] == self.keyword[..]
                            && start[self.keyword.len()] == 0
                        {
                            self.found = true;
                        }
                        self.state = PngState::Header(Vec::with_capacity(8));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const MONO16: WavSpec = WavSpec {
        sample_rate: 22050,
        channels: 1,
        bits_per_sample: 16,
        format: SampleFormat::Int,
    };

    fn wav(spec: WavSpec, data: &[u8]) -> Vec<u8> {
        let mut bytes = spec.header(data.len() as u64).unwrap();
        bytes.extend_from_slice(data);
        if data.len() % 2 == 1 {
            bytes.push(0);
        }
        bytes
    }

    /// Returns a header like espeak-ng's `--stdout` one, with its placeholder sizes.
    fn espeak_header() -> Vec<u8> {
        let mut h = MONO16.header(0).unwrap();
        h[4..8].copy_from_slice(&0x7fff_f024u32.to_le_bytes());
        h[40..44].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
        h
    }

    #[test]
    fn a_written_header_is_canonical_and_reads_back() {
        let bytes = wav(MONO16, &[1, 2, 3, 4]);
        assert_eq!(bytes.len(), 48);
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(le32(&bytes, 4), 40);
        assert_eq!(le32(&bytes, 28), 44100); // byte rate
        assert_eq!(le16(&bytes, 32), 2); // block align
        let parsed = Wav::parse(&bytes).unwrap();
        assert_eq!(parsed.spec, MONO16);
        assert_eq!(parsed.data, &[1, 2, 3, 4]);
        assert_eq!(parsed.data_offset, 44);
        assert!(parsed.exact_sizes);
        assert!(!parsed.streamed);
    }

    #[test]
    fn float_and_law_headers_carry_a_fact_chunk() {
        let float = WavSpec {
            sample_rate: 48000,
            channels: 2,
            bits_per_sample: 32,
            format: SampleFormat::Float,
        };
        let bytes = wav(float, &[0; 16]);
        assert_eq!(float.header_len(), 58);
        assert_eq!(&bytes[38..42], b"fact");
        assert_eq!(le32(&bytes, 46), 2); // frames
        let parsed = Wav::parse(&bytes).unwrap();
        assert_eq!(parsed.spec, float);
        assert!(parsed.exact_sizes);
        let alaw = WavSpec {
            sample_rate: 8000,
            channels: 1,
            bits_per_sample: 8,
            format: SampleFormat::ALaw,
        };
        // An odd length gets its pad byte, and the RIFF size counts it.
        let bytes = wav(alaw, &[1, 2, 3]);
        let parsed = Wav::parse(&bytes).unwrap();
        assert_eq!(parsed.data, &[1, 2, 3]);
        assert!(parsed.exact_sizes);
    }

    #[test]
    fn duration_counts_frames_per_second() {
        let bytes = wav(MONO16, &vec![0; 44100]);
        let parsed = Wav::parse(&bytes).unwrap();
        assert!((parsed.duration_secs() - 1.0).abs() < 1e-9);
        let stereo = WavSpec {
            channels: 2,
            ..MONO16
        };
        assert!((stereo.duration_secs(44100) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn unknown_and_odd_sized_chunks_are_skipped() {
        let plain = wav(MONO16, &[5, 6]);
        let mut bytes = plain[..36].to_vec();
        bytes.extend_from_slice(b"LIST");
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(b"abc\0");
        bytes.extend_from_slice(b"fact");
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&plain[36..]);
        let parsed = Wav::parse(&bytes).unwrap();
        assert_eq!(parsed.data, &[5, 6]);
        assert_eq!(parsed.data_offset, 44 + 12 + 12);
        // The RIFF size was not updated for the inserted chunks.
        assert!(!parsed.exact_sizes);
    }

    #[test]
    fn extensible_format_reads_its_sub_format() {
        let mut bytes = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        bytes.extend_from_slice(&40u32.to_le_bytes());
        bytes.extend_from_slice(&0xFFFEu16.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&44100u32.to_le_bytes());
        bytes.extend_from_slice(&(44100u32 * 6).to_le_bytes());
        bytes.extend_from_slice(&6u16.to_le_bytes());
        bytes.extend_from_slice(&24u16.to_le_bytes());
        bytes.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        bytes.extend_from_slice(&24u16.to_le_bytes()); // valid bits
        bytes.extend_from_slice(&3u32.to_le_bytes()); // channel mask
        bytes.extend_from_slice(&1u16.to_le_bytes()); // KSDATAFORMAT_SUBTYPE_PCM
        bytes.extend_from_slice(&[0; 14]);
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&6u32.to_le_bytes());
        bytes.extend_from_slice(&[9; 6]);
        let parsed = Wav::parse(&bytes).unwrap();
        assert_eq!(
            parsed.spec,
            WavSpec {
                sample_rate: 44100,
                channels: 2,
                bits_per_sample: 24,
                format: SampleFormat::Int
            }
        );
        assert_eq!(parsed.data, &[9; 6]);
    }

    #[test]
    fn streaming_sizes_take_the_rest_of_the_bytes() {
        for placeholder in [0u32, 0xFFFF_FFFF, 0x7FFF_F000] {
            let mut bytes = MONO16.header(0).unwrap();
            bytes[40..44].copy_from_slice(&placeholder.to_le_bytes());
            bytes.extend_from_slice(&[1, 2, 3, 4, 5]);
            let parsed = Wav::parse(&bytes).unwrap();
            assert!(parsed.streamed, "{placeholder:#x}");
            // The partial frame at the end is dropped.
            assert_eq!(parsed.data, &[1, 2, 3, 4], "{placeholder:#x}");
        }
    }

    #[test]
    fn a_cut_short_file_is_a_clear_error() {
        let mut bytes = wav(MONO16, &[0; 100]);
        bytes.truncate(80);
        let err = Wav::parse(&bytes).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(
            err.message.contains("says 100 bytes but only 36 follow"),
            "{err}"
        );
        let err = Wav::parse(&bytes[..30]).unwrap_err();
        assert!(err.message.contains("cut short"), "{err}");
        let err = Wav::parse(&bytes[..38]).unwrap_err();
        assert!(err.message.contains("before its data chunk"), "{err}");
    }

    #[test]
    fn garbage_and_unsupported_formats_are_refused() {
        assert!(Wav::parse(b"not a wav file at all").is_err());
        assert!(Wav::parse(b"RIFF\0\0\0\0WEBPVP8 ").is_err());
        let mut adpcm = wav(MONO16, &[0; 4]);
        adpcm[20..22].copy_from_slice(&2u16.to_le_bytes());
        let err = Wav::parse(&adpcm).unwrap_err();
        assert!(err.message.contains("0x0002 is not supported"), "{err}");
        let mut silent = wav(MONO16, &[0; 4]);
        silent[22..24].copy_from_slice(&0u16.to_le_bytes());
        assert!(Wav::parse(&silent).is_err());
        let mut data_first = b"RIFF\0\0\0\0WAVEdata".to_vec();
        data_first.extend_from_slice(&[0; 8]);
        let err = Wav::parse(&data_first).unwrap_err();
        assert!(err.message.contains("before its fmt chunk"), "{err}");
    }

    #[test]
    fn repair_replaces_placeholder_sizes() {
        let mut file = espeak_header();
        file.extend_from_slice(&[7; 1001]);
        let header = repair_header(&mut file, 44 + 1001).unwrap();
        assert_eq!(header.data_offset, 44);
        assert_eq!(header.declared_len, 1000);
        assert_eq!(le32(&file, 4), 36 + 1000);
        assert_eq!(le32(&file, 40), 1000);
        // Only the header is needed; the length comes from the caller.
        let mut head = espeak_header();
        let header = repair_header(&mut head, 44 + 44100).unwrap();
        assert_eq!(header.data_len(44 + 44100).unwrap(), 44100);
        assert_eq!(le32(&head, 4), 36 + 44100);
        // An empty stream is a valid, empty file.
        let mut head = espeak_header();
        repair_header(&mut head, 44).unwrap();
        let parsed = Wav::parse(&head).unwrap();
        assert!(parsed.data.is_empty() && parsed.exact_sizes);
    }

    #[test]
    fn repair_keeps_odd_frames_even() {
        let spec = WavSpec {
            sample_rate: 8000,
            channels: 1,
            bits_per_sample: 8,
            format: SampleFormat::Int,
        };
        let mut head = spec.header(0).unwrap();
        head[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        let header = repair_header(&mut head, 44 + 7).unwrap();
        assert_eq!(header.declared_len, 6);
    }

    #[test]
    fn repair_refuses_audio_too_long_for_a_wav() {
        let mut head = espeak_header();
        let err = repair_header(&mut head, 44 + u64::from(u32::MAX)).unwrap_err();
        assert!(err.message.contains("4 GiB"), "{err}");
    }

    #[test]
    fn joined_pieces_make_one_valid_file() {
        let pieces = vec![wav(MONO16, &[1, 0]), wav(MONO16, &[2, 0, 3, 0])];
        let mut out = Vec::new();
        let (spec, len) = join_wav(&pieces, &mut out).unwrap();
        assert_eq!((spec, len), (MONO16, 6));
        let joined = Wav::parse(&out).unwrap();
        assert_eq!(joined.data, &[1, 0, 2, 0, 3, 0]);
        assert!(joined.exact_sizes);
    }

    #[test]
    fn pieces_of_different_specs_are_not_joined() {
        let stereo = WavSpec {
            channels: 2,
            ..MONO16
        };
        let pieces = [wav(MONO16, &[1, 0]), wav(stereo, &[2, 0, 3, 0])];
        let mut out = Vec::new();
        let err = join_wav(&pieces, &mut out).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("22050 Hz stereo 16-bit PCM"), "{err}");
        assert!(err.message.contains("22050 Hz mono 16-bit PCM"), "{err}");
        assert!(
            out.is_empty(),
            "nothing is written before every piece is checked"
        );
        let none: [Vec<u8>; 0] = [];
        assert!(join_wav(&none, &mut out).is_err());
    }

    #[test]
    fn the_stream_writer_checks_the_announced_length() {
        let mut writer = WavStreamWriter::new(Vec::new(), MONO16, 6).unwrap();
        writer.push_wav(&wav(MONO16, &[1, 0])).unwrap();
        writer.write_all(&[2, 0]).unwrap();
        assert_eq!(writer.remaining(), 2);
        assert!(writer.write_all(&[3, 0, 4, 0]).is_err());
        let stereo = WavSpec {
            channels: 2,
            ..MONO16
        };
        assert!(writer.push_wav(&wav(stereo, &[0; 4])).is_err());
        writer.write_all(&[3, 0]).unwrap();
        let out = writer.finish().unwrap();
        assert_eq!(Wav::parse(&out).unwrap().data, &[1, 0, 2, 0, 3, 0]);

        let short = WavStreamWriter::new(Vec::new(), MONO16, 4).unwrap();
        let err = short.finish().unwrap_err();
        assert!(err.message.contains("announced 4 bytes"), "{err}");
    }

    #[test]
    fn the_stream_writer_pads_an_odd_length() {
        let spec = WavSpec {
            sample_rate: 8000,
            channels: 1,
            bits_per_sample: 8,
            format: SampleFormat::Int,
        };
        let mut writer = WavStreamWriter::new(Vec::new(), spec, 3).unwrap();
        writer.write_all(&[1, 2, 3]).unwrap();
        let out = writer.finish().unwrap();
        assert_eq!(out.len(), 48);
        let parsed = Wav::parse(&out).unwrap();
        assert_eq!(parsed.data, &[1, 2, 3]);
        assert!(parsed.exact_sizes);
    }

    fn sniffed(head: &[u8]) -> Option<(&'static str, &'static str, ContentKind)> {
        sniff(head).map(|f| (f.media_type, f.extension, f.kind))
    }

    #[test]
    fn images_are_sniffed() {
        use ContentKind::Image;
        assert_eq!(
            sniffed(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(("image/png", "png", Image))
        );
        assert_eq!(
            sniffed(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]),
            Some(("image/jpeg", "jpg", Image))
        );
        assert_eq!(sniffed(b"GIF89a\x01\0"), Some(("image/gif", "gif", Image)));
        assert_eq!(
            sniffed(b"RIFF\x24\0\0\0WEBPVP8 "),
            Some(("image/webp", "webp", Image))
        );
        assert_eq!(
            sniffed(b"\0\0\0\x1cftypavif\0\0\0\0"),
            Some(("image/avif", "avif", Image))
        );
    }

    #[test]
    fn audio_is_sniffed() {
        use ContentKind::Audio;
        assert_eq!(
            sniffed(&wav(MONO16, &[])),
            Some(("audio/wav", "wav", Audio))
        );
        assert_eq!(sniffed(b"ID3\x04\0\0"), Some(("audio/mpeg", "mp3", Audio)));
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz.
        assert_eq!(
            sniffed(&[0xFF, 0xFB, 0x90, 0x64]),
            Some(("audio/mpeg", "mp3", Audio))
        );
        // MPEG-2 layer III at 24 kHz, as speech services send it.
        assert_eq!(
            sniffed(&[0xFF, 0xF3, 0x64, 0xC4]),
            Some(("audio/mpeg", "mp3", Audio))
        );
        assert_eq!(
            sniffed(&[0xFF, 0xF1, 0x50, 0x80]),
            Some(("audio/aac", "aac", Audio))
        );
        assert_eq!(
            sniffed(b"fLaC\0\0\0\x22"),
            Some(("audio/flac", "flac", Audio))
        );
        assert_eq!(
            sniffed(b"\0\0\0\x20ftypM4A \0\0\0\0"),
            Some(("audio/mp4", "m4a", Audio))
        );
    }

    fn ogg_page(payload: &[u8]) -> Vec<u8> {
        let mut page = b"OggS\0\x02".to_vec();
        page.extend_from_slice(&[0; 20]);
        page.push(1);
        page.push(payload.len() as u8);
        page.extend_from_slice(payload);
        page
    }

    #[test]
    fn ogg_codecs_are_told_apart() {
        use ContentKind::{Audio, Video};
        assert_eq!(
            sniffed(&ogg_page(b"OpusHead\x01\x01")),
            Some(("audio/ogg", "opus", Audio))
        );
        assert_eq!(
            sniffed(&ogg_page(b"\x01vorbis\0\0")),
            Some(("audio/ogg", "ogg", Audio))
        );
        assert_eq!(
            sniffed(&ogg_page(b"\x80theora\x03")),
            Some(("video/ogg", "ogv", Video))
        );
        // Too short to see the codec: still Ogg.
        assert_eq!(sniffed(b"OggS\0"), Some(("audio/ogg", "ogg", Audio)));
    }

    #[test]
    fn video_is_sniffed() {
        use ContentKind::Video;
        assert_eq!(
            sniffed(b"\0\0\0\x18ftypisom\0\0\x02\0"),
            Some(("video/mp4", "mp4", Video))
        );
        assert_eq!(
            sniffed(b"\0\0\0\x14ftypqt  \0\0\0\0"),
            Some(("video/quicktime", "mov", Video))
        );
        let webm = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm\x42\x87";
        assert_eq!(sniffed(webm), Some(("video/webm", "webm", Video)));
        let mkv = b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska\x42\x87";
        assert_eq!(sniffed(mkv), Some(("video/x-matroska", "mkv", Video)));
    }

    #[test]
    fn unknown_or_short_heads_are_not_guessed() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"hello, world"), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0AVI "), None);
        // 0xFF followed by bytes that are not a valid frame header.
        assert_eq!(sniff(&[0xFF, 0xFF, 0xFF, 0xFF]), None);
        assert_eq!(sniff(&[0xFF, 0xEB, 0x90]), None);
        assert_eq!(sniff(&[0xFF]), None);
    }

    #[test]
    fn names_users_type_map_to_formats() {
        let f = |name| format_for_name(name).map(|f| (f.media_type, f.extension));
        assert_eq!(f("wav"), Some(("audio/wav", "wav")));
        assert_eq!(f("MP3"), Some(("audio/mpeg", "mp3")));
        assert_eq!(f(" .ogg "), Some(("audio/ogg", "ogg")));
        assert_eq!(f("opus"), Some(("audio/ogg", "opus")));
        assert_eq!(f("flac"), Some(("audio/flac", "flac")));
        assert_eq!(f("webm"), Some(("video/webm", "webm")));
        assert_eq!(f("mp4"), Some(("video/mp4", "mp4")));
        assert_eq!(f("png"), Some(("image/png", "png")));
        assert_eq!(f("jpeg"), Some(("image/jpeg", "jpg")));
        assert_eq!(f("jpg"), f("JPEG"));
        assert_eq!(f("webp"), Some(("image/webp", "webp")));
        assert_eq!(f("docx"), None);
        assert_eq!(f(""), None);
    }

    #[test]
    fn sniffed_formats_agree_with_named_ones() {
        for name in [
            "wav", "mp3", "flac", "png", "jpg", "webp", "gif", "m4a", "mov",
        ] {
            let named = format_for_name(name).unwrap();
            assert_eq!(named.extension, name);
        }
        assert_eq!(sniff(&wav(MONO16, &[])), format_for_name("wav"));
    }

    fn tiny_png(extra: &[u8]) -> Vec<u8> {
        let mut png = PNG_SIGNATURE.to_vec();
        let ihdr = [0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0];
        let mut body = b"IHDR".to_vec();
        body.extend_from_slice(&ihdr);
        png.extend_from_slice(&(ihdr.len() as u32).to_be_bytes());
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
        png.extend_from_slice(extra);
        png.extend_from_slice(&[0, 0, 0, 0]);
        png.extend_from_slice(b"IEND");
        png.extend_from_slice(&crc32(b"IEND").to_be_bytes());
        png
    }

    #[test]
    fn crc32_matches_the_png_iend_constant() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn a_text_chunk_is_added_once_before_iend_in_any_split() {
        let png = tiny_png(&[]);
        for split in [1, 3, 8, 9, 13, png.len()] {
            let mut adder = PngTextAdder::new("parameters", "a cat\nSteps: 2");
            let mut out = Vec::new();
            for piece in png.chunks(split) {
                adder.write(piece, &mut out).unwrap();
            }
            assert_eq!(
                png_text(&out, "parameters").as_deref(),
                Some("a cat\nSteps: 2")
            );
            assert!(out.ends_with(&tiny_png(&[])[png.len() - 12..]));
            assert_eq!(
                out.len(),
                png.len() + png_text_chunk("parameters", "a cat\nSteps: 2").len()
            );
        }
    }

    #[test]
    fn an_image_with_the_keyword_already_is_passed_unchanged() {
        let png = tiny_png(&png_text_chunk("parameters", "from the server"));
        let mut adder = PngTextAdder::new("parameters", "ours");
        let mut out = Vec::new();
        for piece in png.chunks(5) {
            adder.write(piece, &mut out).unwrap();
        }
        assert_eq!(out, png);
        assert_eq!(
            png_text(&out, "parameters").as_deref(),
            Some("from the server")
        );
    }

    #[test]
    fn text_that_is_not_latin1_goes_in_an_itxt_chunk() {
        let chunk = png_text_chunk("parameters", "一只猫");
        assert_eq!(&chunk[4..8], b"iTXt");
        let png = tiny_png(&chunk);
        assert_eq!(png_text(&png, "parameters").as_deref(), Some("一只猫"));
    }
}
