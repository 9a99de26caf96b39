//! [`HostServices`]: what the runner lends a reactor — read access to the
//! log (through the seam) and a dry run of the gates its output goes
//! through.

use super::admission::Admission;
use super::reaction::Reaction;
use batpak_log::SharedLog;
use batpak_store::{Denial, EventView};
use std::fmt;
use std::sync::Arc;

/// What the runner lends a reactor: read access to the log and a dry run
/// of the same gates its output goes through.
#[derive(Clone)]
pub struct HostServices {
    /// The log (reads only; reactors append through the runner).
    pub log: SharedLog,
    pub(crate) admission: Arc<Admission>,
}

impl HostServices {
    /// Asks the gates about `reaction` without appending anything.
    /// `source` is the batch event it reacts to, if known.
    pub fn check(&self, reaction: &Reaction, source: Option<&EventView>) -> Option<Denial> {
        self.admission.dry_run(&*self.log, reaction.clone(), source)
    }

    /// [`check`](Self::check) without copying `reaction` (the `check` host
    /// import: a guest's proposal may be large).
    pub(crate) fn check_owned(
        &self,
        reaction: Reaction,
        source: Option<&EventView>,
    ) -> Option<Denial> {
        self.admission.dry_run(&*self.log, reaction, source)
    }
}

impl fmt::Debug for HostServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostServices")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}
