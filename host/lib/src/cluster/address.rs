//! Where the log lives: `--store nats://HOST:PORT[,HOST:PORT…]` (or the
//! `BATPAK_STORE` environment variable) selects a NATS JetStream cluster;
//! without it the embedded store in `--data` is used.

use crate::usage::Usage;

/// The environment variable that selects the log when `--store` is not
/// given.
pub const STORE_ENV: &str = "BATPAK_STORE";

/// A NATS cluster's client URLs, as given to `--store`: one or more
/// `nats://HOST:PORT`, comma-separated (`nats://a:4222,b:4222` and
/// `nats://a:4222,nats://b:4222` mean the same). The client connects to
/// any of them and learns the rest of the cluster from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAddress {
    servers: Vec<String>,
}

impl ClusterAddress {
    /// Parses a `--store` value. Refused as [`Usage`] (naming the accepted
    /// form) when it is not a `nats://` URL list with a host and a port in
    /// every entry.
    pub fn parse(value: &str) -> Result<ClusterAddress, Usage> {
        let bad = |why: &str| {
            Usage(format!(
                "--store {value:?}: {why}; expected nats://HOST:PORT[,HOST:PORT…] (a NATS \
                 JetStream cluster; leave --store and {STORE_ENV} unset for the embedded store \
                 in --data)"
            ))
        };
        let rest = value
            .trim()
            .strip_prefix("nats://")
            .ok_or_else(|| bad("not a nats:// URL"))?;
        let mut servers = Vec::new();
        for entry in rest.split(',') {
            let entry = entry.trim();
            let hostport = entry.strip_prefix("nats://").unwrap_or(entry);
            let Some((host, port)) = hostport.rsplit_once(':') else {
                return Err(bad(&format!("{entry:?} has no port")));
            };
            if host.is_empty() || host.contains('/') || host.contains('@') {
                return Err(bad(&format!("{entry:?} is not HOST:PORT")));
            }
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(bad(&format!("{port:?} is not a port (1-65535)")));
            }
            servers.push(format!("nats://{host}:{port}"));
        }
        Ok(ClusterAddress { servers })
    }

    /// The server URLs, each `nats://HOST:PORT`.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }
}

impl std::fmt::Display for ClusterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.servers.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_or_more_servers_in_either_form() {
        let a = ClusterAddress::parse("nats://127.0.0.1:4222,nats://h2:4223, h3:4224").unwrap();
        assert_eq!(
            a.servers(),
            ["nats://127.0.0.1:4222", "nats://h2:4223", "nats://h3:4224"]
        );
    }

    #[test]
    fn refuses_what_is_not_a_nats_url_list() {
        for bad in [
            "",
            "./data",
            "http://h:1",
            "nats://h",
            "nats://h:0",
            "nats://h:x",
            "nats://:4222",
            "nats://u@h:1",
        ] {
            let e = ClusterAddress::parse(bad).unwrap_err();
            assert!(e.0.contains("nats://HOST:PORT"), "{bad:?}: {e}");
        }
    }
}
