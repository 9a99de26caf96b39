//! The host on a NATS JetStream cluster (`--store nats://…`): the address
//! that selects it, and the commands that run against it. Without
//! `--store` nothing here is used and every command works on the embedded
//! store in `--data`.

pub mod address;
pub mod append;
pub mod cluster_host;
pub mod cluster_http;
pub mod cluster_operator;
pub mod cluster_pause;
pub mod cluster_reset;
pub mod cluster_run_error;
pub mod cluster_status;
pub mod cluster_swap;
pub mod connect;
pub mod dev;
pub mod events;
pub mod free_slots;
pub mod held_slots;
pub mod init;
pub mod partition_scan;
pub mod relay_slots;
pub mod slot_log;
pub mod slots;
pub mod trace;
pub mod verify;
