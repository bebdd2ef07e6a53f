//! The Secrets trunks reference (`tls.caSecretRef`,
//! `tls.clientCertificateSecretRef`): their data is read on demand, only the
//! keys the operator uses (UTF-8 PEM), and kept until the Secret changes (the
//! controllers watch Secrets by metadata only, so no data of unrelated Secrets
//! is ever cached).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::render::{CA_KEY, SecretData, SecretKey, SecretLookup, TLS_CERT_KEY, TLS_KEY_KEY};

/// Data of referenced Secrets, read on demand, dropped when the Secret changes.
#[derive(Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<SecretKey, Option<Arc<SecretData>>>>,
}

impl SecretCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, Option<Arc<SecretData>>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Secret's data (`None`: it does not exist), from cache or the API server.
    pub async fn get(
        &self,
        client: &Client,
        key: &SecretKey,
    ) -> Result<Option<Arc<SecretData>>, kube::Error> {
        let cached = self.lock().get(key).cloned();
        if let Some(v) = cached {
            return Ok(v);
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), &key.0);
        let data = api.get_opt(&key.1).await?.map(|s| {
            let mut data = SecretData::new();
            for (k, v) in s.data.unwrap_or_default() {
                if [CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY].contains(&k.as_str())
                    && let Ok(text) = String::from_utf8(v.0)
                {
                    data.insert(k, text);
                }
            }
            Arc::new(data)
        });
        self.lock().insert(key.clone(), data.clone());
        Ok(data)
    }

    /// Forgets a Secret (it changed); true when it was cached.
    pub fn invalidate(&self, key: &SecretKey) -> bool {
        self.lock().remove(key).is_some()
    }

    /// What is cached for `keys`.
    pub fn snapshot<'a>(&self, keys: impl IntoIterator<Item = &'a SecretKey>) -> SecretLookup {
        let entries = self.lock();
        keys.into_iter()
            .filter_map(|k| entries.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}
