//! Plugins in the cluster: each reactor's current version — its component
//! file in the object store [`PLUGINS_BUCKET`] (named by digest) and a key
//! `reactor/<name>` in the cluster bucket [`LAYOUT_BUCKET`] naming it
//! together with the reactor's plugin-config entry ([`ReactorVersion`]).
//! `run` publishes a reactor the cluster does not have and otherwise runs
//! the cluster's version and entry; `swap` stores a new version (or only a
//! new entry) and moves the key (compare-and-set on its revision); every
//! host watching the key swaps the instances it owns.

use crate::error::LogError;
use crate::layout::{LAYOUT_BUCKET, PLUGINS_BUCKET};
use crate::log::{Connection, NatsOptions};
use async_nats::jetstream::{kv, object_store, stream::StorageType};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// A reactor's current version in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactorVersion {
    /// The reactor's version (from its descriptor).
    pub version: String,
    /// The component's digest: also the object's name.
    pub digest: String,
    /// The file's extension (`wasm` or `wat`), so a host loads it as such.
    pub extension: String,
    /// The reactor's entry of `--plugin-config` (`plugins.<name>`: its
    /// `config` for `init`, `grant_emits`, limits, log level) stored with
    /// the version, so every host's instances run with the same one; `None`
    /// when the reactor has no entry (its `init` gets `{}`). Moved with the
    /// version key, so a swap can carry a new one (or only a new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_config: Option<serde_json::Value>,
}

/// Why a plugin-store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginStoreError {
    /// Someone else moved the reactor's key first.
    #[error("reactor {reactor}: another host or swap changed its version first; read it again")]
    Raced {
        /// The reactor.
        reactor: String,
    },
    /// The cluster did not answer or refused.
    #[error("the cluster's plugin store: {0}")]
    Unavailable(String),
    /// Connecting failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

fn key(reactor: &str) -> String {
    format!("reactor/{reactor}")
}

/// A connection to the cluster's plugins (its own connection).
pub struct PluginStore {
    conn: Connection,
    kv: kv::Store,
    objects: object_store::ObjectStore,
}

impl PluginStore {
    /// Opens the plugins object store (created when missing) and the
    /// cluster bucket.
    ///
    /// # Errors
    /// Connecting failed, or the buckets could not be opened.
    pub fn open(
        servers: &[String],
        options: &NatsOptions,
        replicas: u32,
    ) -> Result<PluginStore, PluginStoreError> {
        let conn = Connection::open(servers, options)?;
        let js = conn.js.clone();
        let (kv, objects) = conn
            .run(options.timeout * 4, async move {
                let kv = js
                    .get_key_value(LAYOUT_BUCKET)
                    .await
                    .map_err(|e| format!("{LAYOUT_BUCKET}: {e}"))?;
                let objects = match js.get_object_store(PLUGINS_BUCKET).await {
                    Ok(o) => o,
                    Err(_) => js
                        .create_object_store(object_store::Config {
                            bucket: PLUGINS_BUCKET.into(),
                            num_replicas: replicas as usize,
                            storage: StorageType::File,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| format!("{PLUGINS_BUCKET}: {e}"))?,
                };
                Ok::<_, String>((kv, objects))
            })?
            .ok_or_else(|| PluginStoreError::Unavailable("opening: no answer".into()))?
            .map_err(PluginStoreError::Unavailable)?;
        Ok(PluginStore { conn, kv, objects })
    }

    fn run<T: Send + 'static>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, PluginStoreError> {
        self.conn
            .run(self.conn.timeout * 6, fut)?
            .ok_or_else(|| PluginStoreError::Unavailable(format!("{what}: no answer")))?
            .map_err(|e| PluginStoreError::Unavailable(format!("{what}: {e}")))
    }

    /// The reactor's current version and the key's revision, if the cluster
    /// has it.
    ///
    /// # Errors
    /// [`PluginStoreError::Unavailable`].
    pub fn current(
        &self,
        reactor: &str,
    ) -> Result<Option<(ReactorVersion, u64)>, PluginStoreError> {
        let kv = self.kv.clone();
        let k = key(reactor);
        let entry = self.run("reading the version", async move {
            kv.entry(k).await.map_err(|e| e.to_string())
        })?;
        let Some(e) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let v = serde_json::from_slice(&e.value).map_err(|err| {
            PluginStoreError::Unavailable(format!("reactor/{reactor} holds no version: {err}"))
        })?;
        Ok(Some((v, e.revision)))
    }

    /// The component file of `version`.
    ///
    /// # Errors
    /// [`PluginStoreError::Unavailable`] (also when the object is missing).
    pub fn fetch(&self, version: &ReactorVersion) -> Result<Vec<u8>, PluginStoreError> {
        let objects = self.objects.clone();
        let name = version.digest.clone();
        self.run("fetching the plugin", async move {
            let mut o = objects.get(&name).await.map_err(|e| e.to_string())?;
            let mut bytes = Vec::new();
            o.read_to_end(&mut bytes).await.map_err(|e| e.to_string())?;
            Ok(bytes)
        })
    }

    /// True when `pause NAME --store` paused the reactor cluster-wide (key
    /// `paused/<name>` in the cluster bucket): hosts stop its instances
    /// at a batch boundary and take none of its slots until it is resumed.
    ///
    /// # Errors
    /// [`PluginStoreError::Unavailable`].
    pub fn paused(&self, reactor: &str) -> Result<bool, PluginStoreError> {
        let kv = self.kv.clone();
        let k = format!("paused/{reactor}");
        let entry = self.run("reading the pause flag", async move {
            kv.entry(k).await.map_err(|e| e.to_string())
        })?;
        Ok(entry.is_some_and(|e| e.operation == kv::Operation::Put))
    }

    /// Sets or clears the reactor's cluster-wide pause flag.
    ///
    /// # Errors
    /// [`PluginStoreError::Unavailable`].
    pub fn set_paused(&self, reactor: &str, paused: bool) -> Result<(), PluginStoreError> {
        let kv = self.kv.clone();
        let k = format!("paused/{reactor}");
        self.run("writing the pause flag", async move {
            if paused {
                kv.put(k, "1".into())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                kv.delete(k).await.map_err(|e| e.to_string())
            }
        })
    }

    /// Stores `bytes` as `version` of `reactor` and points the reactor's
    /// key at it: created when `expected` is `None`, else moved from that
    /// revision. Returns the key's new revision.
    ///
    /// # Errors
    /// [`PluginStoreError::Raced`] when the key moved meanwhile (or exists
    /// when `expected` is `None`); [`PluginStoreError::Unavailable`].
    pub fn publish(
        &self,
        reactor: &str,
        version: &ReactorVersion,
        bytes: Vec<u8>,
        expected: Option<u64>,
    ) -> Result<u64, PluginStoreError> {
        let objects = self.objects.clone();
        let name = version.digest.clone();
        self.run("storing the plugin", async move {
            if objects.info(&name).await.is_ok() {
                return Ok(());
            }
            objects
                .put(name.as_str(), &mut bytes.as_slice())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        let kv = self.kv.clone();
        let k = key(reactor);
        let body = serde_json::to_vec(version).expect("a version serialises");
        let r = self.run("moving the version", async move {
            Ok(match expected {
                None => kv.create(k, body.into()).await.map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                }),
                Some(rev) => kv.update(k, body.into(), rev).await.map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                }),
            })
        })?;
        match r {
            Ok(rev) => Ok(rev),
            Err((true, _)) => Err(PluginStoreError::Raced {
                reactor: reactor.to_string(),
            }),
            Err((false, e)) => Err(PluginStoreError::Unavailable(e)),
        }
    }
}
