//! Password rules and hashing: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane).

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use std::sync::Mutex;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::platform::error::{AppError, FieldRule};

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;

/// The 20,000 most common passwords (Royce Williams' list, lowercased), keeping those that
/// the length rule alone would not refuse.
static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().collect());

/// Hashing is CPU- and memory-bound: at most one runs per core, so a flood of sign-ins
/// queues instead of exhausting memory.
static HASHING: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    Arc::new(Semaphore::new(cores))
});

/// The 19 MiB work areas of finished hashes, reused by the next ones. Allocating one per
/// hash left the allocator holding hundreds of megabytes after a burst of sign-ins; at most
/// one area per hashing slot ever exists.
static WORK_AREAS: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// OWASP's parameters for argon2id: 19 MiB, 2 passes, 1 lane, 32-byte output.
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, Some(32)).expect("OWASP's parameters are valid")
}

/// Hashes `password` with `salt` under `params`, in a reused work area.
fn hash_into(password: &[u8], salt: &[u8], params: Params, out: &mut [u8]) -> anyhow::Result<()> {
    let blocks = params.block_count();
    let mut area = WORK_AREAS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop()
        .filter(|area| area.len() == blocks)
        .unwrap_or_else(|| vec![Block::default(); blocks]);
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let result = argon2.hash_password_into_with_memory(password, salt, out, &mut area);
    WORK_AREAS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(area);
    result.map_err(|err| anyhow::anyhow!("hashing failed: {err}"))
}

/// A new PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for `password`.
fn phc_hash(password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut raw_salt = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut raw_salt).map_err(|err| anyhow::anyhow!("salt: {err}"))?;
    let params = params();
    let mut out = [0u8; 32];
    hash_into(password, salt_bytes, params.clone(), &mut out)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|err| anyhow::anyhow!("params: {err}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|err| anyhow::anyhow!("output: {err}"))?),
    };
    Ok(hash.to_string())
}

/// Whether `password` produces the PHC hash `stored`, compared in constant time.
fn phc_verify(password: &[u8], stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected), Ok(params)) = (parsed.salt, parsed.hash, Params::try_from(&parsed)) else {
        return false;
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    let mut raw_salt = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut raw_salt) else { return false };
    let mut out = vec![0u8; expected.len()];
    hash_into(password, salt_bytes, params, &mut out).is_ok() && Output::new(&out).is_ok_and(|out| out == expected)
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
        run_hashing(move || phc_hash(password.expose_secret().as_bytes())).await
    }
}

/// Whether `password` matches the stored PHC hash. With no hash (no such account) it checks
/// against a fixed hash instead, so that the answer takes as long either way.
pub async fn verify(password: &str, stored: Option<String>) -> Result<bool, AppError> {
    let password: SecretString = password.into();
    let found = stored.is_some();
    let matches = run_hashing(move || {
        let stored = stored.as_deref().unwrap_or(&DUMMY_HASH);
        Ok(phc_verify(password.expose_secret().as_bytes(), stored))
    })
    .await?;
    Ok(found && matches)
}

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| phc_hash(b"an account that does not exist").unwrap_or_default());

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

    #[test]
    fn hashes_made_by_the_argon2_crate_verify_and_vice_versa() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = reference.hash_password(b"correct horse battery", &salt).unwrap().to_string();
        assert!(phc_verify(b"correct horse battery", &theirs));
        assert!(!phc_verify(b"wrong horse battery", &theirs));
        let ours = phc_hash(b"correct horse battery").unwrap();
        assert!(reference.verify_password(b"correct horse battery", &PasswordHash::new(&ours).unwrap()).is_ok());
        assert!(!phc_verify(b"correct horse battery", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"));
        assert!(!phc_verify(b"correct horse battery", "not a hash"));
    }
}
