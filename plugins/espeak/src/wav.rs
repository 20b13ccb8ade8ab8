//! Reading and repairing the RIFF/WAVE header espeak-ng writes.
//!
//! With `--stdout`, espeak-ng cannot seek back, so it writes placeholder sizes (measured with
//! espeak-ng 1.51: `0x7ffff024` for RIFF and `0x7ffff000` for data, even when stdout is a
//! regular file). Players that trust those sizes read past the end, so the header is rewritten
//! from the real length once the audio is complete.

/// The layout of a PCM WAV file, after its header has been repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WavLayout {
    pub(crate) channels: u16,
    pub(crate) sample_rate: u32,
    pub(crate) bits_per_sample: u16,
    pub(crate) block_align: u16,
    /// Where the samples start: the header is everything before.
    pub(crate) data_offset: usize,
    /// How many bytes of samples to keep: whole frames only, and an even count, so the data
    /// chunk needs no pad byte.
    pub(crate) data_len: u32,
}

impl WavLayout {
    /// Returns the length of the audio in seconds.
    pub(crate) fn duration_secs(&self) -> f64 {
        let bytes_per_sec = f64::from(self.sample_rate) * f64::from(self.block_align);
        if bytes_per_sec == 0.0 {
            0.0
        } else {
            f64::from(self.data_len) / bytes_per_sec
        }
    }
}

/// Rewrites the RIFF and data sizes in `head` (the first bytes of a WAV file that is
/// `file_len` bytes long) to match the samples actually present, and returns the layout.
///
/// `head` must reach at least the start of the data chunk's samples.
pub(crate) fn fix_header(head: &mut [u8], file_len: u64) -> Result<WavLayout, String> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Err("it does not start with a RIFF/WAVE header".to_string());
    }
    let mut format: Option<(u16, u32, u16, u16)> = None;
    let mut pos = 12usize;
    loop {
        let Some(chunk) = head.get(pos..pos + 8) else {
            return Err("it has no data chunk".to_string());
        };
        let id = [chunk[0], chunk[1], chunk[2], chunk[3]];
        let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        let body = pos + 8;
        if &id == b"fmt " {
            let fmt = head
                .get(body..body + 16)
                .ok_or_else(|| "its fmt chunk is cut short".to_string())?;
            let tag = u16::from_le_bytes([fmt[0], fmt[1]]);
            // 1 is integer PCM; 0xFFFE (extensible) also carries plain PCM for our purposes.
            if tag != 1 && tag != 0xFFFE {
                return Err(format!("its sample format {tag} is not PCM"));
            }
            let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
            let sample_rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
            let block_align = u16::from_le_bytes([fmt[12], fmt[13]]);
            let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
            if channels == 0 || sample_rate == 0 || block_align == 0 {
                return Err("its fmt chunk describes no audio".to_string());
            }
            format = Some((channels, sample_rate, block_align, bits));
        } else if &id == b"data" {
            let (channels, sample_rate, block_align, bits_per_sample) =
                format.ok_or_else(|| "its data chunk comes before the fmt chunk".to_string())?;
            let available = file_len.saturating_sub(body as u64);
            let step = if block_align % 2 == 1 {
                u64::from(block_align) * 2
            } else {
                u64::from(block_align)
            };
            let data_len = available - available % step;
            // The RIFF size counts everything after its own 8 bytes and must fit in 32 bits.
            let riff_len = (body as u64 - 8) + data_len;
            let (Ok(data_len), Ok(riff_len)) = (u32::try_from(data_len), u32::try_from(riff_len))
            else {
                return Err(format!(
                    "{available} bytes of samples do not fit in a WAV file (4 GiB at most)"
                ));
            };
            head[4..8].copy_from_slice(&riff_len.to_le_bytes());
            head[pos + 4..pos + 8].copy_from_slice(&data_len.to_le_bytes());
            return Ok(WavLayout {
                channels,
                sample_rate,
                bits_per_sample,
                block_align,
                data_offset: body,
                data_len,
            });
        }
        // Chunks are padded to an even size.
        pos = body + size as usize + (size as usize & 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns a 44-byte header like espeak-ng's `--stdout` one: 22050 Hz, mono, 16-bit,
    /// with its placeholder sizes.
    fn espeak_header() -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&0x7fff_f024u32.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&22050u32.to_le_bytes());
        h.extend_from_slice(&44100u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0x7fff_f000u32.to_le_bytes());
        h
    }

    fn le32(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn placeholder_sizes_are_replaced_by_real_ones() {
        let mut h = espeak_header();
        let layout = fix_header(&mut h, 44 + 44100).unwrap();
        assert_eq!(le32(&h, 4), 36 + 44100);
        assert_eq!(le32(&h, 40), 44100);
        assert_eq!(layout.data_offset, 44);
        assert_eq!(layout.data_len, 44100);
        assert_eq!(layout.sample_rate, 22050);
        assert_eq!(layout.channels, 1);
        assert_eq!(layout.bits_per_sample, 16);
        assert!((layout.duration_secs() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_partial_frame_at_the_end_is_dropped() {
        let mut h = espeak_header();
        let layout = fix_header(&mut h, 44 + 1001).unwrap();
        assert_eq!(layout.data_len, 1000);
        assert_eq!(le32(&h, 4), 36 + 1000);
    }

    #[test]
    fn odd_frame_sizes_keep_the_data_chunk_even() {
        let mut h = espeak_header();
        // 8-bit mono: one byte per frame, so an odd count would need a pad byte.
        h[32..34].copy_from_slice(&1u16.to_le_bytes());
        h[34..36].copy_from_slice(&8u16.to_le_bytes());
        let layout = fix_header(&mut h, 44 + 7).unwrap();
        assert_eq!(layout.data_len, 6);
    }

    #[test]
    fn chunks_before_data_are_skipped() {
        let mut h = espeak_header();
        let data = h.split_off(36);
        // An odd-sized LIST chunk, padded to even length.
        h.extend_from_slice(b"LIST");
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(b"abc\0");
        h.extend_from_slice(&data);
        let layout = fix_header(&mut h, 56 + 10).unwrap();
        assert_eq!(layout.data_offset, 56);
        assert_eq!(layout.data_len, 10);
        assert_eq!(le32(&h, 52), 10);
        assert_eq!(le32(&h, 4), 48 + 10);
    }

    #[test]
    fn an_empty_data_chunk_is_valid() {
        let mut h = espeak_header();
        let layout = fix_header(&mut h, 44).unwrap();
        assert_eq!(layout.data_len, 0);
        assert_eq!(le32(&h, 4), 36);
        assert_eq!(layout.duration_secs(), 0.0);
    }

    #[test]
    fn garbage_and_truncated_headers_are_refused() {
        assert!(fix_header(&mut b"not a wav file at all".to_vec(), 21).is_err());
        let mut h = espeak_header();
        h.truncate(30);
        assert!(fix_header(&mut h, 30).is_err());
        let mut h = espeak_header();
        h[20..22].copy_from_slice(&3u16.to_le_bytes());
        assert!(fix_header(&mut h, 100).unwrap_err().contains("not PCM"));
    }

    #[test]
    fn audio_too_long_for_a_wav_is_refused() {
        let mut h = espeak_header();
        let err = fix_header(&mut h, 44 + u64::from(u32::MAX)).unwrap_err();
        assert!(err.contains("4 GiB"), "{err}");
    }
}
