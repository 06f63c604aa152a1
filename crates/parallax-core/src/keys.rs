//! Crypto-shredding: personal data sealed under a key of its own per data
//! subject (a customer), so that destroying the key erases the data from
//! every copy of every event that carries it — the event store, the topic,
//! the views, backups — without rewriting a stored event (invariant 14).
//!
//! - [`KeyStore`] is the port: a subject's [`DataKey`], created on first
//!   use, read, and destroyed by [`KeyStore::forget`]. Adapters keep the
//!   keys in the write database (`parallax-sqlite`, `parallax-postgres`);
//!   a KMS could serve them instead. A key store answers from its storage on
//!   every call and never caches a key: a key forgotten by one process is
//!   gone for every other one at once.
//! - [`seal`] and [`open`] encrypt and decrypt one field with AES-256-GCM
//!   (RustCrypto's `aes-gcm`), a random 96-bit nonce per sealed value, and
//!   the subject and the field's name as associated data: a sealed value
//!   copied under another subject or into another field does not open.
//!
//! A sealed value is text, `pax1.` then the nonce, the ciphertext and the
//! tag in unpadded URL-safe base64: it travels in JSON payloads as it is.
//! Once the subject's key is gone it opens nowhere; readers show
//! [`ERASED`] in its place.
//!
//! Pure like the rest of this crate: no I/O but the operating system's
//! random numbers (for keys and nonces, as `uuid` uses them for ids).

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zeroize::Zeroize;

/// What a reader shows in place of a sealed value whose key was destroyed.
pub const ERASED: &str = "[erased]";

/// Prefix of a sealed value: names the format (AES-256-GCM, 12-byte nonce,
/// the associated data below).
const SEALED_PREFIX: &str = "pax1.";
/// Length of a [`DataKey`] in bytes (AES-256).
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A data subject's key: 32 random bytes, wiped from memory when dropped.
/// `Debug` never prints them.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    /// A new random key (the operating system's generator).
    pub fn generate() -> Self {
        let mut key = Aes256Gcm::generate_key(OsRng);
        let mut bytes = [0; KEY_LEN];
        bytes.copy_from_slice(&key);
        key.as_mut_slice().zeroize();
        Self(bytes)
    }

    /// A key read back from storage; `None` unless exactly [`KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; KEY_LEN]>::try_from(bytes).ok().map(Self)
    }

    /// The key's bytes, for storing it.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The keys of data subjects, one per subject (a customer id).
///
/// Contract (`parallax-testing`'s `key_store` suite, run by every adapter):
/// [`key_for`](Self::key_for) returns the same key for a subject until it is
/// forgotten, also when called concurrently; [`forget`](Self::forget)
/// destroys the key, after which [`key`](Self::key) finds none and
/// `key_for` creates a new, different one (what was sealed under the old
/// key stays unreadable).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The subject's key, created if it has none.
    async fn key_for(&self, subject: &str) -> Result<DataKey, KeyStoreError>;

    /// The subject's key, if it has one (none: never had one, or forgotten).
    async fn key(&self, subject: &str) -> Result<Option<DataKey>, KeyStoreError>;

    /// Destroys the subject's key: its bytes leave the storage, not only
    /// its row. `true` if there was one.
    async fn forget(&self, subject: &str) -> Result<bool, KeyStoreError>;
}

/// A failure of a key store's storage.
#[derive(Debug, thiserror::Error)]
#[error("key store: {message}")]
pub struct KeyStoreError {
    /// What failed.
    pub message: String,
    /// The cause.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl KeyStoreError {
    /// A key store error with a cause.
    pub fn new(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { message: message.into(), source: Some(Box::new(source)) }
    }

    /// A key store error without a cause.
    pub fn msg(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Not a sealed value of a format this code reads.
    #[error("not a sealed value")]
    Malformed,
    /// The key is not the one it was sealed with, or the value was sealed
    /// for another subject or field, or altered.
    #[error("the sealed value does not open with this key, subject and field")]
    Rejected,
}

/// The associated data: binds a sealed value to its subject and field.
fn associated_data(subject: &str, field: &str) -> Vec<u8> {
    // Lengths first: ("a", "b.c") and ("a.b", "c") never collide.
    format!("parallax/sealed/v1:{}:{subject}:{}:{field}", subject.len(), field.len()).into_bytes()
}

/// Seals `plaintext`, the `field` of `subject`'s data, under `key`.
pub fn seal(key: &DataKey, subject: &str, field: &str, plaintext: &str) -> String {
    let cipher = Aes256Gcm::new(key.0.as_slice().into());
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = associated_data(subject, field);
    let ciphertext = cipher
        .encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad: &aad })
        .expect("AES-GCM encrypts any message shorter than 64 GiB");
    let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&ciphertext);
    format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Opens a value [`seal`]ed for `subject`'s `field` under `key`.
pub fn open(key: &DataKey, subject: &str, field: &str, sealed: &str) -> Result<String, OpenError> {
    let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or(OpenError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| OpenError::Malformed)?;
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(OpenError::Malformed);
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(key.0.as_slice().into());
    let aad = associated_data(subject, field);
    let plaintext = cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
        .map_err(|_| OpenError::Rejected)?;
    String::from_utf8(plaintext).map_err(|_| OpenError::Malformed)
}

/// Opens a sealed value with the subject's key if there is one, else (the
/// key was forgotten, or it does not open) [`ERASED`].
pub fn open_or_erased(key: Option<&DataKey>, subject: &str, field: &str, sealed: &str) -> String {
    key.and_then(|key| open(key, subject, field, sealed).ok()).unwrap_or_else(|| ERASED.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_subject_and_field() {
        let key = DataKey::generate();
        let sealed = seal(&key, "alice", "email", "alice@example.com");
        assert!(sealed.starts_with(SEALED_PREFIX), "{sealed}");
        assert!(!sealed.contains("alice"), "{sealed}");
        assert_eq!(open(&key, "alice", "email", &sealed).as_deref(), Ok("alice@example.com"));
    }

    #[test]
    fn every_seal_draws_a_new_nonce() {
        let key = DataKey::generate();
        let (a, b) = (seal(&key, "alice", "name", "Alice"), seal(&key, "alice", "name", "Alice"));
        assert_ne!(a, b);
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn another_key_subject_or_field_does_not_open_it() {
        let key = DataKey::generate();
        let sealed = seal(&key, "alice", "email", "alice@example.com");
        assert_eq!(open(&DataKey::generate(), "alice", "email", &sealed), Err(OpenError::Rejected));
        assert_eq!(open(&key, "bob", "email", &sealed), Err(OpenError::Rejected));
        assert_eq!(open(&key, "alice", "name", &sealed), Err(OpenError::Rejected));
        // The lengths in the associated data keep the boundary fixed.
        let split = seal(&key, "a", "b:c", "x");
        assert_eq!(open(&key, "a:b", "c", &split), Err(OpenError::Rejected));
    }

    #[test]
    fn an_altered_or_foreign_value_is_refused() {
        let key = DataKey::generate();
        let sealed = seal(&key, "alice", "name", "Alice");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).expect("ascii");
        assert_eq!(open(&key, "alice", "name", &altered), Err(OpenError::Rejected));
        assert_eq!(open(&key, "alice", "name", "Alice"), Err(OpenError::Malformed));
        assert_eq!(open(&key, "alice", "name", "pax1.!!"), Err(OpenError::Malformed));
        assert_eq!(open(&key, "alice", "name", "pax1.AAAA"), Err(OpenError::Malformed));
    }

    #[test]
    fn without_its_key_a_value_reads_as_erased() {
        let key = DataKey::generate();
        let sealed = seal(&key, "alice", "name", "Alice");
        assert_eq!(open_or_erased(Some(&key), "alice", "name", &sealed), "Alice");
        assert_eq!(open_or_erased(None, "alice", "name", &sealed), ERASED);
        assert_eq!(open_or_erased(Some(&DataKey::generate()), "alice", "name", &sealed), ERASED);
    }

    #[test]
    fn keys_are_random_and_round_trip_their_bytes() {
        let key = DataKey::generate();
        assert_ne!(key, DataKey::generate());
        assert_eq!(DataKey::from_bytes(key.as_bytes()), Some(key.clone()));
        assert_eq!(DataKey::from_bytes(&[0; 31]), None);
        assert_eq!(format!("{key:?}"), "DataKey(..)");
    }
}
