//! Keys in memory.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use parallax_core::{DataKey, KeyStore, KeyStoreError};

/// A [`KeyStore`] in a map: passes the `key_store` contract; a forgotten
/// key is dropped, which wipes its bytes.
#[derive(Debug, Default)]
pub struct MemKeyStore {
    keys: Mutex<HashMap<String, DataKey>>,
}

impl MemKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl KeyStore for MemKeyStore {
    async fn key_for(&self, subject: &str) -> Result<DataKey, KeyStoreError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(keys.entry(subject.to_owned()).or_insert_with(DataKey::generate).clone())
    }

    async fn key(&self, subject: &str) -> Result<Option<DataKey>, KeyStoreError> {
        Ok(self.keys.lock().unwrap_or_else(PoisonError::into_inner).get(subject).cloned())
    }

    async fn forget(&self, subject: &str) -> Result<bool, KeyStoreError> {
        Ok(self.keys.lock().unwrap_or_else(PoisonError::into_inner).remove(subject).is_some())
    }
}
