//! [`swap_file`]: load a plugin file beside the running version and swap it
//! in — the one call behind `run --watch` and the `swap` command.

use super::{SwapOutcome, SwapRefusal};
use crate::descriptor::Descriptor;
use crate::load_error::LoadError;
use crate::plugin::Plugin;
use crate::prepare::PluginSettings;
use crate::runner::RunnerHandle;
use crate::runtime::Runtime;
use std::path::Path;

/// Loads `path` (compiled, instantiated, `describe`d and `init`ed while the
/// running version keeps serving) and swaps it in for `handle`'s running
/// version at the next batch boundary. `settings_for` chooses the new
/// version's settings once `describe` has named it (re-read the config
/// there); `grant_emits` is the operator's grant for it.
///
/// # Errors
/// A [`SwapRefusal`] (recorded and logged): the file does not load
/// ([`SwapRefusal::UnsupportedWit`] when it targets another WIT version),
/// or the checks of [`RunnerHandle::swap`] fail.
pub fn swap_file(
    rt: &Runtime,
    handle: &RunnerHandle,
    path: &Path,
    base: PluginSettings,
    settings_for: impl FnMut(&Descriptor) -> Result<PluginSettings, String>,
    grant_emits: Option<Vec<String>>,
) -> Result<SwapOutcome, SwapRefusal> {
    let plugin = match Plugin::load_with(rt, path, base, settings_for) {
        Ok(p) => p,
        Err(e) => {
            let r = refusal_for(path, &e);
            handle.record_refusal(&r);
            return Err(r);
        }
    };
    handle.swap(Box::new(plugin), grant_emits)
}

/// The refusal for a file that did not load, from the typed load error
/// alone: the file is not opened or read again (it may be a FIFO or
/// `/dev/zero`, refused before a byte was read).
pub fn refusal_for(path: &Path, e: &LoadError) -> SwapRefusal {
    match e {
        LoadError::WrongWorld {
            path,
            found,
            expected,
        } => SwapRefusal::UnsupportedWit {
            path: path.clone(),
            found: found.clone(),
            supported: expected.to_string(),
        },
        other => SwapRefusal::Unloadable {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}
