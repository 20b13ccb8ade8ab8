//! Integrity and trust: sha256 of archives and libraries, and minisign signatures.
//!
//! Archives are signed with minisign (Ed25519), so a publisher can use this crate or the
//! standard `minisign` tool. The signature's trusted comment, which the signature covers, must
//! be exactly [`trusted_comment`]'s text, optionally followed by more `key=value` fields:
//!
//! ```text
//! launcher-plugin name=azure-tts version=1.2.0 target=x86_64-unknown-linux-gnu
//! ```
//!
//! so a signed archive of one plugin, version or target cannot be passed off as another. The
//! keys a registry is trusted with are configured on the client ([`TrustedKeys`]); nothing in
//! the registry can add one.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use minisign::{PublicKey, PublicKeyBox, SignatureBox};
use semver::Version;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result, SignatureError};

const COMMENT_TAG: &str = "launcher-plugin";

/// Returns the trusted comment an archive of `name` `version` for `target` must be signed with.
pub fn trusted_comment(name: &str, version: &Version, target: &str) -> String {
    format!("{COMMENT_TAG} name={name} version={version} target={target}")
}

/// The minisign public keys a registry is trusted with.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    /// Parses keys, each either the base64 line of a minisign public key or the whole `.pub`
    /// file (comment line and key line).
    pub fn parse<I, S>(keys: I) -> Result<TrustedKeys>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = keys
            .into_iter()
            .map(|k| parse_public_key(k.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(TrustedKeys { keys })
    }

    /// Returns whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Returns the key ids, in hex as the `minisign` tool prints them.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| key_id(k.keynum())).collect()
    }

    /// Checks that `sig` (a minisign signature file's text) is a good signature of `archive` by
    /// one of these keys, with the trusted comment naming `name`, `version` and `target`.
    pub fn verify(
        &self,
        archive: &Path,
        sig: &str,
        name: &str,
        version: &Version,
        target: &str,
    ) -> Result<()> {
        self.check(archive, sig, name, version, target)
            .map_err(|source| match source {
                Check::Io(e) => Error::io("read", archive, e),
                Check::Signature(source) => ErrorKind::Signature {
                    name: name.to_string(),
                    version: version.clone(),
                    target: target.to_string(),
                    source,
                }
                .into(),
            })
    }

    /// Checks that `signature` is a good signature of `bytes` by one of these keys; the
    /// trusted comment is the caller's to check.
    pub(crate) fn verify_bytes(
        &self,
        bytes: &[u8],
        signature: &SignatureBox,
    ) -> std::result::Result<(), SignatureError> {
        let key = self.signer(signature)?;
        minisign::verify(key, signature, io::Cursor::new(bytes), true, false, false)
            .map_err(|e| SignatureError::Invalid(e.to_string()))
    }

    /// Returns the trusted key that made `signature`.
    fn signer(&self, signature: &SignatureBox) -> std::result::Result<&PublicKey, SignatureError> {
        if self.keys.is_empty() {
            return Err(SignatureError::NoTrustedKeys);
        }
        self.keys
            .iter()
            .find(|k| k.keynum() == signature.keynum())
            .ok_or_else(|| SignatureError::UntrustedKey {
                key_id: key_id(signature.keynum()),
            })
    }

    /// Returns whether `key_id` (hex, as [`TrustedKeys::key_ids`] gives it) is trusted.
    pub fn trusts(&self, key_id: &str) -> bool {
        self.key_ids()
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key_id))
    }

    fn check(
        &self,
        archive: &Path,
        sig: &str,
        name: &str,
        version: &Version,
        target: &str,
    ) -> std::result::Result<(), Check> {
        if sig.trim().is_empty() {
            return Err(SignatureError::Missing.into());
        }
        if self.keys.is_empty() {
            return Err(SignatureError::NoTrustedKeys.into());
        }
        let signature =
            SignatureBox::from_string(sig).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        let key = self.signer(&signature)?;
        let file = File::open(archive).map_err(Check::Io)?;
        // Quiet: the minisign crate would otherwise print to stderr. Legacy (non-prehashed)
        // signatures are refused: they need the whole archive in memory.
        minisign::verify(key, &signature, file, true, false, false)
            .map_err(|e| SignatureError::Invalid(e.to_string()))?;
        let comment = signature
            .trusted_comment()
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        let expected = trusted_comment(name, version, target);
        if !comment_names(&comment, name, version, target) {
            return Err(SignatureError::CommentMismatch {
                expected,
                found: comment,
            }
            .into());
        }
        Ok(())
    }
}

enum Check {
    Io(io::Error),
    Signature(SignatureError),
}

impl From<SignatureError> for Check {
    fn from(e: SignatureError) -> Self {
        Check::Signature(e)
    }
}

/// Returns whether `comment` is the launcher tag followed by `name`, `version` and `target`
/// fields with exactly these values, each once. Other fields (a timestamp) are ignored.
fn comment_names(comment: &str, name: &str, version: &Version, target: &str) -> bool {
    let mut words = comment.split_whitespace();
    if words.next() != Some(COMMENT_TAG) {
        return false;
    }
    let version = version.to_string();
    let mut found = [None, None, None];
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return false;
        };
        let slot = match key {
            "name" => 0,
            "version" => 1,
            "target" => 2,
            _ => continue,
        };
        if found[slot].replace(value).is_some() {
            return false;
        }
    }
    found == [Some(name), Some(version.as_str()), Some(target)]
}

fn parse_public_key(text: &str) -> Result<PublicKey> {
    let invalid = |message: String| {
        ErrorKind::Key {
            key: format!("`{}`", text.trim().lines().last().unwrap_or_default()),
            message,
        }
        .into()
    };
    let key_line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .collect::<Vec<_>>();
    let [line] = key_line[..] else {
        return Err(invalid(
            "expected one base64 key line (optionally after a comment line)".to_string(),
        ));
    };
    let boxed = format!("untrusted comment: trusted key\n{line}\n");
    PublicKeyBox::from_string(&boxed)
        .and_then(PublicKeyBox::into_public_key)
        .map_err(|e| invalid(format!("not a minisign public key: {e}")))
}

/// Returns the id of the key that made a minisign signature (its text), if it parses.
pub fn signer_id(sig: &str) -> Option<String> {
    SignatureBox::from_string(sig)
        .ok()
        .map(|s| key_id(s.keynum()))
}

/// Formats a minisign key number as the `minisign` tool prints key ids.
pub(crate) fn key_id(keynum: &[u8]) -> String {
    let mut bytes = [0u8; 8];
    let n = keynum.len().min(8);
    bytes[..n].copy_from_slice(&keynum[..n]);
    format!("{:016X}", u64::from_le_bytes(bytes))
}

/// Returns the sha256 of everything `reader` yields, in lowercase hex, and the byte count.
pub fn sha256_reader(mut reader: impl Read) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// Returns the sha256 of the file at `path`, in lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    File::open(path)
        .and_then(sha256_reader)
        .map(|(sum, _)| sum)
        .map_err(|e| Error::io("read", path, e))
}

/// Formats bytes as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::{KeyPair, sign};

    fn signed(dir: &Path, keys: &KeyPair, comment: &str) -> (std::path::PathBuf, String) {
        let archive = dir.join("echo-1.0.0-t.tar.gz");
        std::fs::write(&archive, b"archive bytes").unwrap();
        let sig = sign(&archive, &keys.secret, None, comment).unwrap();
        (archive, sig)
    }

    fn version() -> Version {
        Version::new(1, 0, 0)
    }

    #[test]
    fn sha256_of_known_input() {
        let (sum, n) = sha256_reader(&b"abc"[..]).unwrap();
        assert_eq!(
            sum,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(n, 3);
    }

    #[test]
    fn accepts_a_good_signature_by_a_trusted_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyPair::generate(None).unwrap();
        let (archive, sig) = signed(dir.path(), &keys, &trusted_comment("echo", &version(), "t"));
        // Both forms of a public key are accepted: the .pub file and its base64 line.
        for key in [keys.public.clone(), keys.public_base64()] {
            let trusted = TrustedKeys::parse([key]).unwrap();
            trusted
                .verify(&archive, &sig, "echo", &version(), "t")
                .unwrap();
        }
    }

    #[test]
    fn refuses_missing_malformed_untrusted_and_tampered() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyPair::generate(None).unwrap();
        let other = KeyPair::generate(None).unwrap();
        let (archive, sig) = signed(dir.path(), &keys, &trusted_comment("echo", &version(), "t"));
        let trusted = TrustedKeys::parse([&keys.public]).unwrap();
        let check = |trusted: &TrustedKeys, sig: &str| match trusted
            .verify(&archive, sig, "echo", &version(), "t")
            .map_err(Error::into_kind)
        {
            Err(ErrorKind::Signature { source, .. }) => source,
            other => panic!("expected a signature error, got {other:?}"),
        };

        assert!(matches!(check(&trusted, ""), SignatureError::Missing));
        assert!(matches!(
            check(&trusted, "garbage"),
            SignatureError::Malformed(_)
        ));
        let untrusted = TrustedKeys::parse([&other.public]).unwrap();
        match check(&untrusted, &sig) {
            SignatureError::UntrustedKey { key_id } => assert_eq!(key_id, keys.key_id()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check(&TrustedKeys::default(), &sig),
            SignatureError::NoTrustedKeys
        ));

        std::fs::write(&archive, b"archive bytes, changed").unwrap();
        assert!(matches!(check(&trusted, &sig), SignatureError::Invalid(_)));
    }

    #[test]
    fn refuses_a_trusted_comment_naming_another_plugin_version_or_target() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyPair::generate(None).unwrap();
        let trusted = TrustedKeys::parse([&keys.public]).unwrap();
        for comment in [
            trusted_comment("other", &version(), "t"),
            trusted_comment("echo", &Version::new(1, 0, 1), "t"),
            trusted_comment("echo", &version(), "aarch64-apple-darwin"),
            "launcher-plugin name=echo version=1.0.0".to_string(),
            "launcher-plugin name=echo version=1.0.0 target=t name=other".to_string(),
            "timestamp:1700000000 file:echo-1.0.0-t.tar.gz".to_string(),
        ] {
            let (archive, sig) = signed(dir.path(), &keys, &comment);
            match trusted
                .verify(&archive, &sig, "echo", &version(), "t")
                .map_err(Error::into_kind)
            {
                Err(ErrorKind::Signature {
                    source: SignatureError::CommentMismatch { found, .. },
                    ..
                }) => assert_eq!(found, comment),
                other => panic!("{comment}: {other:?}"),
            }
        }
        // Extra fields, such as a timestamp, are allowed.
        let comment = format!(
            "{} timestamp=1700000000",
            trusted_comment("echo", &version(), "t")
        );
        let (archive, sig) = signed(dir.path(), &keys, &comment);
        trusted
            .verify(&archive, &sig, "echo", &version(), "t")
            .unwrap();
    }

    #[test]
    fn an_altered_trusted_comment_breaks_the_signature() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyPair::generate(None).unwrap();
        let (archive, sig) = signed(
            dir.path(),
            &keys,
            &trusted_comment("other", &version(), "t"),
        );
        let forged = sig.replace("name=other", "name=echo");
        assert_ne!(forged, sig);
        let trusted = TrustedKeys::parse([&keys.public]).unwrap();
        match trusted
            .verify(&archive, &forged, "echo", &version(), "t")
            .map_err(Error::into_kind)
        {
            Err(ErrorKind::Signature {
                source: SignatureError::Invalid(_),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_keys_that_do_not_parse() {
        assert!(TrustedKeys::parse(["not a key"]).is_err());
        assert!(TrustedKeys::parse(["RWQ\nRWQ"]).is_err());
    }
}
