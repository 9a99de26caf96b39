//! batpak-host: an event-sourcing host whose business logic runs as
//! sandboxed WebAssembly reactors.
//!
//! Data flows one way, and so do the module dependencies:
//! `cli` → [`runtime`] → [`canal`] → plugin → [`gate`] → [`store`].
//!
//! - [`event`]: ids, coordinates, proposals, receipts.
//! - [`store`]: the durable, append-only causal log (one directory, one owner).
//! - [`canal`]: delivery — ordered durable cursors and lossy subscriptions.
//! - [`gate`]: caller-defined admission rules and recorded denials.
//! - [`runtime`]: wasm components, reactor threads, retry/bisect/park.
//!
//! ```no_run
//! use batpak_host::{event::{Coordinate, Proposal}, store::{Store, AppendOptions}};
//! let store = Store::open("./batpak-data")?;
//! let receipt = store.append(
//!     Proposal::new(Coordinate::new("order:1", "shop")?, "order.placed", br#"{"sku":"widget","qty":2}"#.to_vec()),
//!     AppendOptions::durable(),
//! )?;
//! println!("appended {} at sequence {}", receipt.id, receipt.sequence);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod canal;
pub mod cli;
pub mod event;
pub mod gate;
pub mod runtime;
pub mod store;
