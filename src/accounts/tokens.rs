//! Secret tokens: 256 random bits, shown once, stored only as a SHA-256 hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a token is for; the prefix lets a server (and a secret scanner) tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    CustomerSession,
    StaffSession,
    ApiKey,
    /// Mailed links: email verification and password reset.
    Mailed,
    Csrf,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::CustomerSession => "brc_",
            Self::StaffSession => "brs_",
            Self::ApiKey => "brk_",
            Self::Mailed => "brm_",
            Self::Csrf => "",
        }
    }

    /// The kind a presented token claims to be, from its prefix.
    pub fn of(token: &str) -> Option<Self> {
        [Self::CustomerSession, Self::StaffSession, Self::ApiKey, Self::Mailed]
            .into_iter()
            .find(|kind| token.starts_with(kind.prefix()))
    }
}

/// A new random token of `kind`.
pub fn generate(kind: TokenKind) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a token. Tokens carry 256 bits of entropy, so a fast hash is enough.
pub fn hash(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hash_stably() {
        let a = generate(TokenKind::ApiKey);
        let b = generate(TokenKind::ApiKey);
        assert_ne!(a, b);
        assert!(a.starts_with("brk_"));
        assert_eq!(a.len(), 4 + 43);
        assert_eq!(TokenKind::of(&a), Some(TokenKind::ApiKey));
        assert_eq!(hash(&a), hash(&a));
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_ne!(hash(&a), hash(&b));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
