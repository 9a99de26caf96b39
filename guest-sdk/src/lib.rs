//! # batpak-guest: write batpak reactors in Rust
//!
//! A *reactor* is a sandboxed WebAssembly component that the batpak host
//! feeds with batches of events from its append-only log. The reactor looks
//! at each event and *proposes* new events; the host passes every proposal
//! through its gates and appends the admitted ones together with the
//! reactor's checkpoint in one atomic write. This crate wraps the WIT
//! contract (`batpak:reactor@0.2.0`, world `reactor-plugin`) in plain Rust:
//!
//! * implement [`Reactor`] for your type and export it with
//!   [`export_reactor!`];
//! * read events through the [`Batch`] / [`EventRef`] view;
//! * propose events through [`Output`];
//! * use the read-only [`host`] functions and the [`log`] functions.
//!
//! ## A complete reactor
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "greeter"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! # from your own repository: a git dependency on the batpak-host repository
//! # (cargo finds the crate by name inside it), or a path to a checkout
//! batpak-guest = { git = "<url of the batpak-host repository>" }
//! # batpak-guest = { path = "../batpak-host/guest-sdk" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use batpak_guest::{Batch, Descriptor, Output, ReactError, Reactor};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Joined {
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Greeting {
//!     text: String,
//! }
//!
//! struct Greeter {
//!     greeting: String,
//! }
//!
//! impl Reactor for Greeter {
//!     fn describe() -> Descriptor {
//!         Descriptor::new("greeter", env!("CARGO_PKG_VERSION"))
//!             .consumes(["user.joined"])
//!             .emits(["user.greeted"])
//!     }
//!
//!     fn init(config: &str) -> Result<Self, String> {
//!         #[derive(Deserialize, Default)]
//!         struct Config {
//!             greeting: Option<String>,
//!         }
//!         let config: Config = batpak_guest::parse_config(config)?;
//!         Ok(Greeter {
//!             greeting: config.greeting.unwrap_or_else(|| "Hello".into()),
//!         })
//!     }
//!
//!     fn react(&mut self, batch: &Batch, out: &mut Output) -> Result<(), ReactError> {
//!         for event in batch.events() {
//!             // A payload this reactor cannot read parks that one event.
//!             let joined: Joined = event.json().map_err(|e| ReactError::at(&event, e))?;
//!             let text = format!("{}, {}!", self.greeting, joined.name);
//!             batpak_guest::info!("greeting {}", joined.name);
//!             out.emit_json(&event, event.entity(), event.scope(), "user.greeted", &Greeting { text })?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! batpak_guest::export_reactor!(Greeter);
//! ```
//!
//! Build and run:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2
//! batpak-host run target/wasm32-wasip2/release/greeter.wasm
//! ```
//!
//! ## Lifecycle
//!
//! The host calls [`Reactor::describe`] once per load (it must not depend on
//! config), then [`Reactor::init`] with the JSON config text (`{}` when the
//! operator gave none). The instance `init` returns is kept by the SDK and
//! handed to every [`Reactor::react`] call as `&mut self`. A trap (panic,
//! out-of-memory, fuel or time limit) makes the host throw the whole
//! instance away and call `init` again on a fresh one, so in-memory state
//! must always be rebuildable from the log (see [`host::read_entity`]).
//!
//! Proposals are discarded when `react` returns an error, so never commit
//! in-memory state assuming an `Output` will be appended: the gates may still
//! deny a proposal (see [`host::last_verdicts`]).
//!
//! ## The wire shape (for authors in other languages)
//!
//! See `WIT.md` next to this crate's `README.md`, or in short: `react`
//! takes the batch as one flat byte buffer (a header, one 96-byte record per
//! event, an interned string table, the payloads back to back) and returns
//! the proposals as one flat byte buffer (a header, one 56-byte record per
//! proposal naming its source event's batch index and its kind's index in
//! `emits`, then the names and payloads). [`Batch`] reads the first without
//! copying; [`Output`] writes the second.

#![warn(missing_docs)]

mod batch;
mod descriptor;
mod error;
pub mod host;
mod id;
pub mod log;
mod output;
mod stored_event;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod verdict;

pub use batch::{Batch, BatchError, EventRef, Events};
pub use descriptor::{is_valid_coordinate_part, is_valid_reactor_name};
pub use error::ReactError;
pub use host::{Denial, ProposalVerdict, StoredEvent, Verdict};
pub use id::{EventId, ParseEventIdError};
pub use log::Level;
pub use output::{Emitted, Output};
pub use wit::{CanalKind, Causation, Coordinate, Descriptor, Proposal, Region};

/// Compiles the Rust examples of README.md as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Re-exported so plugins can use `batpak_guest::serde_json` without naming
/// the dependency themselves.
pub use serde_json;

/// Code generated by `wit-bindgen` from `wit/reactor.wit`. Not a stable API:
/// use the friendly types at the crate root, or [`wit`] for the raw records.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "reactor-plugin",
        pub_export_macro: true,
        export_macro_name: "__batpak_export_reactor_plugin",
        default_bindings_module: "batpak_guest::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

/// The raw records of the WIT package `batpak:reactor@0.2.0`, exactly as
/// generated by `wit-bindgen`. The crate root re-exports the ones that need
/// no wrapping; the rest are here for anyone who wants the wire shape.
pub mod wit {
    pub use crate::bindings::batpak::reactor::types::*;
}

/// A reactor: the business logic of one plugin.
///
/// Implement this for your type and export it with [`export_reactor!`].
/// WebAssembly instances are single-threaded and the SDK keeps the one value
/// `init` returns, so `react` gets `&mut self` with no locking.
pub trait Reactor: Sized + 'static {
    /// Says who this reactor is, which events it consumes and which kinds it
    /// may emit. Called once per load, before [`init`](Reactor::init); must
    /// not depend on config.
    fn describe() -> Descriptor;

    /// Builds the reactor from the JSON `config` text the operator gave for
    /// this plugin (`{}` when none). An `Err` refuses the plugin with that
    /// message. Called again on a fresh instance after a trap; see
    /// [`parse_config`] for a helper.
    fn init(config: &str) -> Result<Self, String>;

    /// Reacts to one batch: look at `batch.events()` and propose events
    /// through `out`. Returning `Err` discards everything in `out`; the host
    /// retries, then isolates and parks the failing event (use
    /// [`ReactError::at`] to name it directly).
    fn react(&mut self, batch: &Batch, out: &mut Output) -> Result<(), ReactError>;
}

/// Parses a plugin's JSON config text into `T`, treating empty or
/// whitespace-only text as `{}`. The error is a message ready to return from
/// [`Reactor::init`].
pub fn parse_config<T: serde::de::DeserializeOwned>(config: &str) -> Result<T, String> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))
}

/// Exports a [`Reactor`] implementation as this component's `reactor`
/// interface. Use it exactly once per plugin crate, at module level:
///
/// ```ignore
/// batpak_guest::export_reactor!(MyReactor);
/// ```
#[macro_export]
macro_rules! export_reactor {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                static __BATPAK_REACTOR_SLOT: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            // Never constructed: wit-bindgen calls its trait functions.
            #[allow(dead_code)]
            struct __BatpakReactorExport;

            impl $crate::bindings::exports::batpak::reactor::reactor::Guest for __BatpakReactorExport {
                fn describe() -> $crate::Descriptor {
                    <$ty as $crate::Reactor>::describe()
                }

                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$ty>(&__BATPAK_REACTOR_SLOT, config)
                }

                fn react(
                    batch: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::ReactError> {
                    $crate::__private::react::<$ty>(&__BATPAK_REACTOR_SLOT, batch)
                }
            }

            // Only a wasm build exports the component interface: natively (unit
            // tests against `testing`) the canonical-ABI export names are not
            // valid linker symbols for a shared library.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::__batpak_export_reactor_plugin!(
                __BatpakReactorExport with_types_in $crate::bindings
            );
        };

        // Natively nothing calls the export, so keep the reactor reachable:
        // its code is then compiled and linted in native unit-test builds
        // instead of being reported dead.
        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __batpak_reactor_native_entry_points() {
            let _: fn() -> $crate::Descriptor = <$ty as $crate::Reactor>::describe;
            let _: fn(&str) -> ::core::result::Result<$ty, ::std::string::String> = <$ty as $crate::Reactor>::init;
            let _: fn(&mut $ty, &$crate::Batch, &mut $crate::Output) -> ::core::result::Result<(), $crate::ReactError> =
                <$ty as $crate::Reactor>::react;
        }
    };
}

/// Support code for [`export_reactor!`]. Not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use std::cell::RefCell;
    use std::thread::LocalKey;

    /// Runs [`Reactor::init`] and stores the instance in `slot`.
    pub fn init<R: Reactor>(
        slot: &'static LocalKey<RefCell<Option<R>>>,
        config: String,
    ) -> Result<(), String> {
        // Drop any previous instance first, so a failing init leaves no stale state.
        slot.with(|s| *s.borrow_mut() = None);
        let reactor = R::init(&config)?;
        slot.with(|s| *s.borrow_mut() = Some(reactor));
        Ok(())
    }

    thread_local! {
        /// The reactor's declared kinds, from its `describe()` (which must
        /// not depend on config), read once: proposals name a kind by its
        /// index in this list.
        static EMITS: std::cell::OnceCell<Vec<String>> = const { std::cell::OnceCell::new() };
    }

    /// Runs [`Reactor::react`] on the stored instance over the flat batch
    /// buffer and returns the flat proposals buffer.
    pub fn react<R: Reactor>(
        slot: &'static LocalKey<RefCell<Option<R>>>,
        batch: Vec<u8>,
    ) -> Result<Vec<u8>, ReactError> {
        let batch = Batch::from_bytes(batch).map_err(ReactError::new)?;
        slot.with(|s| {
            let mut guard = s.borrow_mut();
            let reactor = guard
                .as_mut()
                .ok_or_else(|| ReactError::new("react called before a successful init"))?;
            let mut out = Output::with_capacity(batch.len());
            reactor.react(&batch, &mut out)?;
            Ok(EMITS.with(|e| out.into_bytes(e.get_or_init(|| R::describe().emits))))
        })
    }
}
