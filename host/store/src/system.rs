//! The host's own records: every `batpak.*` kind, the scope they are
//! written in and the entities they name, defined here once. The store
//! writes some of them (denials, checkpoints, recovery), the runtime and the
//! service the others (parking, hot swap, resets); readers (the CLI's
//! `events`, `trace`, `parked`, the demo) find them by these names. They
//! are part of the log's format: a store written today must read the same
//! tomorrow, so a value here never changes.

/// Kinds with this prefix are written only by the host itself: an append
/// of one from a plugin or a user is refused
/// ([`ValidationError::ReservedKind`](crate::ValidationError::ReservedKind)).
pub const SYSTEM_KIND_PREFIX: &str = "batpak.";

/// Scope of every host record (`batpak`).
pub const SYSTEM_SCOPE: &str = "batpak";

/// Entity prefix of a reactor's own stream (`reactor:<name>`): its denials,
/// parked events, replay requests and hot swaps.
pub const REACTOR_STREAM_PREFIX: &str = "reactor:";

/// Entity prefix of a cursor's checkpoint records (`batpak.cursor:<id>`).
pub const CURSOR_ENTITY_PREFIX: &str = "batpak.cursor:";

/// Entity of the store's own records (`batpak.store`): recovery.
pub const STORE_ENTITY: &str = "batpak.store";

/// Entity prefix of a reset's record (`batpak.reactor:<name>`).
pub const RESET_ENTITY_PREFIX: &str = "batpak.reactor:";

/// A gate refused a proposal: what, who proposed it, and why.
pub const DENIED_KIND: &str = "batpak.gate.denied";

/// An open cut a torn tail or dropped an uncommitted bulk transaction.
pub const RECOVERED_KIND: &str = "batpak.store.recovered";

/// A cursor's checkpoint moved, atomically with the events it covers.
pub const CHECKPOINT_KIND: &str = "batpak.cursor.checkpoint";

/// A reactor gave up on an event: it is set aside, not lost.
pub const PARKED_KIND: &str = "batpak.reactor.parked";

/// An operator asked for parked events to be delivered again.
pub const REPLAY_KIND: &str = "batpak.reactor.replay-requested";

/// A parked event was delivered again and handled.
pub const UNPARKED_KIND: &str = "batpak.reactor.unparked";

/// An operator moved a reactor's checkpoint (`reset`).
pub const RESET_KIND: &str = "batpak.reactor.reset";

/// A reactor's code was replaced while running (hot swap).
pub const SWAPPED_KIND: &str = "batpak.plugin.swapped";

/// A hot swap was refused; the old version keeps running.
pub const SWAP_REFUSED_KIND: &str = "batpak.plugin.swap-refused";

/// A swapped-in version failed on probation and the old one was restored.
pub const ROLLED_BACK_KIND: &str = "batpak.plugin.swap-rolled-back";

/// True for kinds only the host writes (`batpak.*`).
pub fn is_system_kind(kind: &str) -> bool {
    kind.starts_with(SYSTEM_KIND_PREFIX)
}
