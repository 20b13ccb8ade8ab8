//! Reading a WebUI answer as it arrives: `{"images": ["<base64>", ...], "parameters": {...},
//! "info": "..."}`. A batch of large images is tens of megabytes of base64, so each image is
//! decoded and written as its characters arrive, and only the rest of the document (the
//! parameters and the info, small) is kept to be parsed at the end.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use launcher_sdk::PluginError;

/// What the scanner hands its caller.
pub(crate) enum Piece<'a> {
    /// Decoded bytes of image number `index` (from 0).
    Bytes { index: usize, bytes: &'a [u8] },
    /// Image number `index` ended.
    End { index: usize },
}

/// A push scanner over the answer's bytes.
pub(crate) struct Scanner {
    /// The document without the images' characters, for `serde_json` at the end.
    rest: Vec<u8>,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// The last complete string at depth 1, to tell which key an array belongs to.
    last_key: Vec<u8>,
    /// The characters of the string being read at depth 1.
    key: Vec<u8>,
    in_images: bool,
    /// Inside an image's string: its index, and base64 characters not yet decoded.
    image: Option<(usize, Vec<u8>)>,
    images: usize,
    decoded: Vec<u8>,
}

/// The most of the non-image part kept; an answer with more is not a WebUI answer.
const REST_LIMIT: usize = 16 * 1024 * 1024;

impl Scanner {
    pub(crate) fn new() -> Scanner {
        Scanner {
            rest: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            last_key: Vec::new(),
            key: Vec::new(),
            in_images: false,
            image: None,
            images: 0,
            decoded: Vec::new(),
        }
    }

    /// Scans the next bytes, calling `each` with decoded image bytes as they are complete.
    pub(crate) fn feed(
        &mut self,
        data: &[u8],
        each: &mut dyn FnMut(Piece<'_>) -> Result<(), PluginError>,
    ) -> Result<(), PluginError> {
        for &byte in data {
            if let Some((index, pending)) = &mut self.image {
                let index = *index;
                if self.escaped {
                    self.escaped = false;
                    // `\/` is a `/`; a line break some encoders add is dropped.
                    if byte == b'/' {
                        pending.push(b'/');
                    }
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    let tail = std::mem::take(pending);
                    self.image = None;
                    self.in_string = false;
                    self.rest.extend_from_slice(b"\"\"");
                    self.decode(index, &tail, true, each)?;
                    each(Piece::End { index })?;
                } else if !byte.is_ascii_whitespace() {
                    pending.push(byte);
                    if pending.len() >= 64 * 1024 {
                        let whole = pending.len() / 4 * 4;
                        let ready: Vec<u8> = pending.drain(..whole).collect();
                        self.decode(index, &ready, false, each)?;
                    }
                }
                continue;
            }
            if self.rest.len() >= REST_LIMIT {
                return Err(PluginError::unavailable(
                    "the server's answer is not a WebUI answer (too much besides the images)",
                ));
            }
            self.rest.push(byte);
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                    if self.depth == 1 {
                        self.last_key = std::mem::take(&mut self.key);
                    }
                } else if self.depth == 1 && self.key.len() < 64 {
                    self.key.push(byte);
                }
                continue;
            }
            match byte {
                b'"' if self.in_images && self.depth == 2 => {
                    // The opening quote already went into `rest`; the closing one is added
                    // when the image ends, with nothing between.
                    self.rest.pop();
                    self.image = Some((self.images, Vec::new()));
                    self.images += 1;
                    self.in_string = true;
                }
                b'"' => {
                    self.in_string = true;
                    self.key.clear();
                }
                b'[' | b'{' => {
                    self.depth += 1;
                    if byte == b'[' && self.depth == 2 && self.last_key == b"images" {
                        self.in_images = true;
                    }
                }
                b']' | b'}' => {
                    if self.depth == 2 {
                        self.in_images = false;
                    }
                    self.depth = self.depth.saturating_sub(1);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn decode(
        &mut self,
        index: usize,
        chars: &[u8],
        last: bool,
        each: &mut dyn FnMut(Piece<'_>) -> Result<(), PluginError>,
    ) -> Result<(), PluginError> {
        if chars.is_empty() {
            return Ok(());
        }
        // A data: URL prefix is accepted as servers accept it on input.
        let chars = match chars.iter().position(|b| *b == b',') {
            Some(comma) if chars.starts_with(b"data:") => &chars[comma + 1..],
            _ => chars,
        };
        self.decoded.clear();
        let padded;
        let chars = if last && chars.len() % 4 != 0 {
            padded = [chars, &b"==="[..(4 - chars.len() % 4)]].concat();
            &padded[..]
        } else {
            chars
        };
        STANDARD.decode_vec(chars, &mut self.decoded).map_err(|e| {
            PluginError::unavailable(format!("image {} is not valid base64: {e}", index + 1))
        })?;
        each(Piece::Bytes {
            index,
            bytes: &self.decoded,
        })
    }

    /// Returns the answer without its images, parsed, once all bytes were fed.
    pub(crate) fn finish(self) -> Result<launcher_sdk::serde_json::Value, PluginError> {
        if self.image.is_some() || self.depth != 0 {
            return Err(PluginError::unavailable(
                "the server's answer broke off in the middle",
            ));
        }
        launcher_sdk::serde_json::from_slice(&self.rest)
            .map_err(|e| PluginError::unavailable(format!("the server's answer is not JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(answer: &str, split: usize) -> (Vec<Vec<u8>>, launcher_sdk::serde_json::Value) {
        let mut scanner = Scanner::new();
        let mut images: Vec<Vec<u8>> = Vec::new();
        for piece in answer.as_bytes().chunks(split) {
            scanner
                .feed(piece, &mut |p| {
                    match p {
                        Piece::Bytes { index, bytes } => {
                            if images.len() <= index {
                                images.resize(index + 1, Vec::new());
                            }
                            images[index].extend_from_slice(bytes);
                        }
                        Piece::End { index } => {
                            if images.len() <= index {
                                images.resize(index + 1, Vec::new());
                            }
                        }
                    }
                    Ok(())
                })
                .unwrap();
        }
        (images, scanner.finish().unwrap())
    }

    #[test]
    fn images_are_decoded_in_any_split_and_the_rest_parses() {
        let one = STANDARD.encode(b"first image bytes");
        let two = STANDARD.encode([0u8, 1, 2, 250, 251]);
        let answer = format!(
            r#"{{"images": ["{one}", "{two}"], "parameters": {{"prompt": "a \"cat\" [x]"}}, "info": "{{\"seed\": 7}}"}}"#
        );
        for split in [1, 2, 3, 7, answer.len()] {
            let (images, rest) = scan(&answer, split);
            assert_eq!(
                images,
                [b"first image bytes".to_vec(), vec![0, 1, 2, 250, 251]]
            );
            assert_eq!(rest["images"], launcher_sdk::serde_json::json!(["", ""]));
            assert_eq!(rest["parameters"]["prompt"], "a \"cat\" [x]");
            assert_eq!(rest["info"], "{\"seed\": 7}");
        }
    }

    #[test]
    fn escaped_slashes_and_line_breaks_in_base64_are_read() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let encoded = STANDARD.encode(&bytes).replace('/', "\\/");
        let wrapped = format!("{}\\n{}", &encoded[..40], &encoded[40..]);
        let answer = format!(r#"{{"info": "", "images": ["{wrapped}"]}}"#);
        let (images, _) = scan(&answer, 5);
        assert_eq!(images, [bytes]);
    }

    #[test]
    fn a_truncated_answer_is_an_error() {
        let mut scanner = Scanner::new();
        scanner
            .feed(br#"{"images": ["aGVsbG"#, &mut |_| Ok(()))
            .unwrap();
        assert!(scanner.finish().is_err());
    }
}
