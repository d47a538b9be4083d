//! Password rules and hashing: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane).

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::platform::error::{AppError, FieldRule};

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;

/// The 20,000 most common passwords (Royce Williams' list, lowercased), keeping those that
/// the length rule alone would not refuse.
static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().collect());

/// Hashing is CPU- and memory-bound: at most this many run at once, so a flood of sign-ins
/// queues instead of exhausting memory.
static HASHING: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    Arc::new(Semaphore::new(cores * 2))
});

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP's parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A password that passed the rules: 8 to 128 characters, not a common one.
pub struct NewPassword(SecretString);

impl NewPassword {
    pub fn parse(raw: &str) -> Result<Self, FieldRule> {
        let length = raw.chars().count();
        if length < MIN_LENGTH {
            return Err(FieldRule::new("too_short", format!("must be at least {MIN_LENGTH} characters")));
        }
        if length > MAX_LENGTH {
            return Err(FieldRule::new("too_long", format!("must be at most {MAX_LENGTH} characters")));
        }
        if COMMON.contains(raw.to_lowercase().as_str()) {
            return Err(FieldRule::new("too_common", "is one of the most common passwords; choose another"));
        }
        Ok(Self(raw.into()))
    }

    /// The PHC string of the argon2id hash.
    pub async fn hash(&self) -> Result<String, AppError> {
        let password = self.0.clone();
        run_hashing(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|err| anyhow::anyhow!("hashing failed: {err}"))
        })
        .await
    }
}

/// Whether `password` matches the stored PHC hash. With no hash (no such account) it checks
/// against a fixed hash instead, so that the answer takes as long either way.
pub async fn verify(password: &str, stored: Option<String>) -> Result<bool, AppError> {
    let password: SecretString = password.into();
    let found = stored.is_some();
    let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
    let matches = run_hashing(move || {
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return Ok(false);
        };
        Ok(argon2().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok())
    })
    .await?;
    Ok(found && matches)
}

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    argon2().hash_password(b"an account that does not exist", &salt).map(|hash| hash.to_string()).unwrap_or_default()
});

async fn run_hashing<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, AppError> {
    let _permit = HASHING.clone().acquire_owned().await.map_err(AppError::internal)?;
    tokio::task::spawn_blocking(work).await.map_err(AppError::internal)?.map_err(AppError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_and_commonness_are_enforced() {
        assert_eq!(NewPassword::parse("short").err().map(|r| r.code), Some("too_short"));
        assert_eq!(NewPassword::parse(&"x".repeat(129)).err().map(|r| r.code), Some("too_long"));
        assert_eq!(NewPassword::parse("password1").err().map(|r| r.code), Some("too_common"));
        assert_eq!(NewPassword::parse("PassWord1").err().map(|r| r.code), Some("too_common"));
        assert!(NewPassword::parse("correct horse battery").is_ok());
        // Length counts characters, not bytes.
        assert!(NewPassword::parse("ééééééé").is_err());
        assert!(NewPassword::parse(&"é".repeat(128)).is_ok());
    }

    #[tokio::test]
    async fn a_hash_verifies_only_its_password() {
        let password = NewPassword::parse("correct horse battery").unwrap();
        let hash = password.hash().await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery", Some(hash.clone())).await.unwrap());
        assert!(!verify("correct horse battery!", Some(hash)).await.unwrap());
        assert!(!verify("correct horse battery", None).await.unwrap());
    }
}
