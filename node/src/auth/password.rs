//! Password hashing: Argon2id (the RustCrypto `argon2` crate) with a random salt per hash, stored
//! as a PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) in `system_auth.roles`.
//!
//! Verification is deliberately slow (tens of milliseconds of CPU and ~19 MiB of memory with the
//! crate's default parameters): callers on the async runtime run it with `spawn_blocking`. The
//! parameters travel inside the stored string, so hashes made with other parameters (or by a
//! later release with stronger ones) still verify.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

/// Hashes `password` with a fresh random salt; the result is a PHC string.
pub fn hash(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the stored PHC string. A stored string that does not parse never
/// matches.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify("correct horse", &h));
        assert!(!verify("correct hors", &h));
        assert!(!verify("", &h));
    }

    #[test]
    fn salts_differ_and_garbage_never_verifies() {
        let a = hash("pw").unwrap();
        let b = hash("pw").unwrap();
        assert_ne!(a, b, "every hash has its own salt");
        assert!(verify("pw", &a) && verify("pw", &b));
        assert!(!verify("pw", "pw"));
        assert!(!verify("pw", ""));
        assert!(!verify("pw", "$argon2id$v=19$garbage"));
    }
}
