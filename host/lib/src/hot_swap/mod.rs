//! Hot swap on the host side: the pending work of a swap, start or stop
//! (compiled off the supervisor's thread), the `--watch` plugin watcher, a
//! swap asked of a running host, and shadow replay of a candidate version.
//! (The supervisor drives them; the runtime swaps at a batch boundary.)

pub mod pending_op;
pub mod shadow;
pub mod swap_request;
pub mod watch;
