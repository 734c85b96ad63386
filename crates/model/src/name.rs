//! Stream and output names: 1-63 characters of `[a-z0-9-]`, starting with a
//! letter or digit (a DNS label, so names are safe in URLs and object keys).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest accepted name, in bytes (a DNS label).
pub const MAX_NAME_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name must not be empty")]
    Empty,
    #[error("name is {0} characters long; at most 63 are allowed")]
    TooLong(usize),
    #[error("name must start with a lowercase letter or a digit")]
    BadStart,
    #[error("name may contain only lowercase letters, digits and '-' (found {0:?})")]
    BadCharacter(char),
}

/// Checks a name against the naming rule.
pub fn validate(name: &str) -> Result<(), NameError> {
    let first = name.chars().next().ok_or(NameError::Empty)?;
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(NameError::BadStart);
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(NameError::BadCharacter(bad));
    }
    // Only ASCII is left, so bytes are characters.
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    Ok(())
}

/// A validated stream name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StreamName(String);

impl StreamName {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        validate(name)?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StreamName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "0", "my-stream", "9-lives", &"a".repeat(63), "a-"] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(validate(&"a".repeat(64)), Err(NameError::TooLong(64)));
        assert_eq!(validate("-a"), Err(NameError::BadStart));
        assert_eq!(validate("Abc"), Err(NameError::BadStart));
        assert_eq!(validate("a_b"), Err(NameError::BadCharacter('_')));
        assert_eq!(validate("a/b"), Err(NameError::BadCharacter('/')));
        assert_eq!(validate("aé"), Err(NameError::BadCharacter('é')));
        assert_eq!(validate("a b"), Err(NameError::BadCharacter(' ')));
    }
}
