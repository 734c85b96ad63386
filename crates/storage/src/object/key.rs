//! Object keys: `/`-separated relative paths, checked before they reach a
//! store so that no key can escape the local directory or hide as a
//! different object.

use std::fmt;

/// Longest key, in bytes (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectKeyError {
    #[error("object key is empty")]
    Empty,
    #[error("object key is longer than 1024 bytes")]
    TooLong,
    #[error("object key {0:?} has an empty, '.' or '..' segment")]
    BadSegment(String),
    #[error("object key {0:?} has a control character or backslash")]
    BadCharacter(String),
    #[error("prefix {0:?} must be a valid key followed by '/'")]
    BadPrefix(String),
}

/// A checked object key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn parse(key: &str) -> Result<Self, ObjectKeyError> {
        if key.is_empty() {
            return Err(ObjectKeyError::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(ObjectKeyError::TooLong);
        }
        if key.chars().any(|c| c.is_control() || c == '\\') {
            return Err(ObjectKeyError::BadCharacter(key.to_owned()));
        }
        if key.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
            return Err(ObjectKeyError::BadSegment(key.to_owned()));
        }
        Ok(ObjectKey(key.to_owned()))
    }

    /// Checks a listing/deletion prefix: a valid key plus a trailing `/`.
    pub fn check_prefix(prefix: &str) -> Result<(), ObjectKeyError> {
        match prefix.strip_suffix('/') {
            Some(p) if ObjectKey::parse(p).is_ok() => Ok(()),
            _ => Err(ObjectKeyError::BadPrefix(prefix.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["a", "abc/smooth.ism/Manifest", "abc/smooth.ism/QualityLevels(2500000)/Fragments(video=0)", "a/.hidden"] {
            assert!(ObjectKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "../a", "a/../b", "a/./b", "a\\b", "a\nb"] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ObjectKey::parse(&"a".repeat(1025)), Err(ObjectKeyError::TooLong));
        assert!(ObjectKey::check_prefix("abc/").is_ok());
        assert!(ObjectKey::check_prefix("abc").is_err());
        assert!(ObjectKey::check_prefix("/").is_err());
        assert!(ObjectKey::check_prefix("../").is_err());
    }
}
