//! Secrets and unguessable identifiers.
//!
//! * The playback id names a stream's media in public URLs: 128 random bits,
//!   as 32 lowercase hex digits, so a stream's name never leaks into them.
//! * The ingest token authorizes a WHIP publisher: 256 random bits, shown
//!   once, stored only as its SHA-256 hash.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    SystemRandom::new().fill(&mut buf).map_err(|_| RandomError)?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The public, unguessable id of a stream's media.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlaybackId(String);

impl PlaybackId {
    pub fn generate() -> Result<Self, RandomError> {
        Ok(PlaybackId(hex(&random_bytes::<16>()?)))
    }

    /// Wraps a stored id. Ids are 32 lowercase hex digits.
    pub fn from_stored(s: String) -> Self {
        PlaybackId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `s` has the shape of a playback id (used to reject bad media
    /// paths before they reach storage).
    pub fn is_well_formed(s: &str) -> bool {
        s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

impl fmt::Display for PlaybackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A freshly minted ingest token. Only its hash is ever stored.
pub struct IngestToken(String);

impl IngestToken {
    pub fn generate() -> Result<Self, RandomError> {
        Ok(IngestToken(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for IngestToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IngestToken(<redacted>)")
    }
}

/// SHA-256 of an ingest token, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        TokenHash(hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref()))
    }

    /// Whether `presented` is the token this hash was made from. Compares
    /// hashes in constant time.
    pub fn verify(&self, presented: &str) -> bool {
        let candidate = TokenHash::of(presented);
        ring_constant_time_eq(self.0.as_bytes(), candidate.0.as_bytes())
    }
}

fn ring_constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_verify_only_themselves() {
        let t = IngestToken::generate().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(t.as_str()).unwrap().len(), 32);
        let h = t.hash();
        assert!(h.verify(t.as_str()));
        assert!(!h.verify("nope"));
        assert!(!h.verify(""));
        let other = IngestToken::generate().unwrap();
        assert_ne!(t.as_str(), other.as_str());
        assert!(!h.verify(other.as_str()));
        assert_eq!(format!("{t:?}"), "IngestToken(<redacted>)");
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        // FIPS 180-2 example: SHA-256("abc").
        assert_eq!(TokenHash::of("abc").0, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn playback_ids_are_unguessable_hex() {
        let a = PlaybackId::generate().unwrap();
        let b = PlaybackId::generate().unwrap();
        assert!(PlaybackId::is_well_formed(a.as_str()));
        assert_ne!(a, b);
        assert!(!PlaybackId::is_well_formed("../etc"));
        assert!(!PlaybackId::is_well_formed(&"A".repeat(32)));
    }
}
