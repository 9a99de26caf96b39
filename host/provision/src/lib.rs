//! batpak-provision: user-level installs of what the host's tests and
//! `batpak-host cluster dev` fetch themselves — one step with its lock and
//! its failure text ([`step`]), and the pinned `nats-server`
//! ([`nats_server`]). No root; nothing here runs unless asked.

#![warn(missing_docs)]

pub mod nats_server;
pub mod step;
