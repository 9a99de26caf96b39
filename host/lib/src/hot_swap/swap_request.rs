//! A swap asked of the running host (`batpak-host swap NAME FILE`): the
//! reactor's name checked, the file made absolute (the host resolves it,
//! not the caller), the host reached; then the request, answered once the
//! swap is recorded at a batch boundary.

use crate::usage::Usage;
use batpak_service::{Client, ClientError};
use std::path::{Path, PathBuf};

/// A swap ready to send to the host running on a store.
#[derive(Debug)]
pub struct SwapRequest {
    client: Client,
    name: String,
    file: PathBuf,
}

impl SwapRequest {
    /// Checks `name`, resolves `plugin` and connects to the host running on
    /// `data`.
    ///
    /// # Errors
    /// A bad reactor name ([`Usage`]), a plugin path that does not resolve,
    /// no host running on `data`.
    pub fn new(data: &Path, name: &str, plugin: &Path) -> anyhow::Result<SwapRequest> {
        batpak_runtime::validate_reactor_name(name).map_err(|m| Usage(m.to_string()))?;
        // The host resolves the path, not this process: send it absolute.
        let file = std::fs::canonicalize(plugin)
            .map_err(|e| anyhow::anyhow!("plugin {}: {e}", plugin.display()))?;
        let Some(client) = Client::connect(data)? else {
            anyhow::bail!(
                "no batpak-host is running on {} (swap replaces a plugin of a running host); start `batpak-host run --data {} PLUGINS…`, or stop nothing and just run the new file",
                data.display(),
                data.display()
            );
        };
        Ok(SwapRequest {
            client,
            name: name.to_string(),
            file,
        })
    }

    /// The plugin file, absolute.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Asks for the swap; returns the outcome the host recorded (position,
    /// old and new versions and digests).
    ///
    /// # Errors
    /// The host refused (the running version keeps serving), or did not
    /// answer in time ([`batpak_service::ErrorCode::Busy`]: the swap goes on).
    pub fn send(mut self) -> Result<serde_json::Value, ClientError> {
        self.client.swap(&self.name, &self.file)
    }
}
