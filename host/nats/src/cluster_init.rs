//! `cluster init --partitions K --replicas R`: checks every node (see
//! [`crate::server_check`]), then creates what the host needs — one stream
//! per partition (`allow_atomic`, direct get, file storage, R replicas, a
//! 2-minute duplicate window), the layout bucket, the plugins object
//! store and the leases bucket ([`crate::lease`]). Running it again with the same layout changes nothing; with
//! another layout it is refused (moving entities between partitions is
//! not built).

use crate::error::LogError;
use crate::layout::{Layout, LAYOUT_BUCKET, LAYOUT_KEY, MAX_PARTITIONS, PLUGINS_BUCKET};
use crate::log::{Connection, NatsOptions};
use crate::partition::{stream_name, stream_subjects};
use crate::server_check::{check_servers, NodeReport, ServerCheckError};
use async_nats::jetstream::{self, stream::StorageType};
use std::time::Duration;

/// What `cluster init` is asked to create.
#[derive(Clone, Debug)]
pub struct InitSpec {
    /// `nats://HOST:PORT` of one or more nodes.
    pub servers: Vec<String>,
    /// `http://HOST:PORT` monitoring endpoint of every node.
    pub monitors: Vec<String>,
    /// Partition count K.
    pub partitions: u32,
    /// Replicas R of every stream and bucket.
    pub replicas: u32,
}

/// Why `cluster init` refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A node cannot keep the host's promises (with the fix).
    #[error(transparent)]
    Server(#[from] ServerCheckError),
    /// K or R out of range.
    #[error("{0}")]
    BadSpec(String),
    /// More replicas than JetStream nodes.
    #[error(
        "--replicas {replicas} needs at least {replicas} JetStream nodes; the cluster has \
         {nodes}: add nodes or lower --replicas"
    )]
    NotEnoughNodes {
        /// Asked for.
        replicas: u32,
        /// Found.
        nodes: usize,
    },
    /// The cluster was initialised with another layout.
    #[error(
        "the cluster already holds a batpak layout of {existing_partitions} partitions × \
         {existing_replicas} replicas; refusing to change it to {partitions} × {replicas} \
         (moving entities between partitions is not supported)"
    )]
    LayoutMismatch {
        /// Existing K.
        existing_partitions: u32,
        /// Existing R.
        existing_replicas: u32,
        /// Requested K.
        partitions: u32,
        /// Requested R.
        replicas: u32,
    },
    /// Talking to the cluster failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The server refused to create something.
    #[error("creating {what}: {reason}")]
    Create {
        /// The stream or bucket.
        what: String,
        /// The server's answer.
        reason: String,
    },
}

/// Checks every node, then creates the streams and buckets of `spec`.
/// Returns the layout and what was found on each node.
pub fn init_cluster(
    spec: &InitSpec,
    options: NatsOptions,
) -> Result<(Layout, Vec<NodeReport>), InitError> {
    if spec.partitions == 0 || spec.partitions > MAX_PARTITIONS {
        return Err(InitError::BadSpec(format!(
            "--partitions {} is out of range: use 1 to {MAX_PARTITIONS}",
            spec.partitions
        )));
    }
    if spec.replicas == 0 || spec.replicas > 5 {
        return Err(InitError::BadSpec(format!(
            "--replicas {} is out of range: use 1 to 5 (JetStream's limit); 3 survives one node loss",
            spec.replicas
        )));
    }
    let nodes = check_servers(&spec.monitors, options.timeout)?;
    let members = nodes
        .iter()
        .flat_map(|n| n.meta_members.iter())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if spec.replicas as usize > members {
        return Err(InitError::NotEnoughNodes {
            replicas: spec.replicas,
            nodes: members,
        });
    }
    // Creating a replicated stream waits for placement and its election,
    // slower than an append on a busy or just-started cluster.
    let options = NatsOptions {
        timeout: options.timeout.max(Duration::from_secs(10)),
        ..options
    };
    let conn = Connection::open(&spec.servers, &options)?;
    let layout = Layout::new(spec.partitions, spec.replicas);
    let js = conn.js.clone();
    let replicas = spec.replicas as usize;
    // Stream creation in a cluster waits for placement and election: allow
    // more than one operation's timeout.
    let limit = options.timeout * 4 + Duration::from_secs(2) * spec.partitions;
    let outcome = conn.run(limit, async move { create(js, layout, replicas).await })?;
    match outcome {
        None => Err(InitError::Log(LogError::Unknown {
            op: "cluster init",
            reason: format!("not finished within {limit:?}"),
            resolve: "run cluster init again: it keeps what exists and creates the rest",
        })),
        Some(r) => r.map(|()| (layout, nodes)),
    }
}

async fn create(js: jetstream::Context, layout: Layout, replicas: usize) -> Result<(), InitError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| InitError::Create {
        what: what.to_string(),
        reason: e.to_string(),
    };
    // An existing layout decides: same → keep going (idempotent), other → refuse.
    if let Ok(kv) = js.get_key_value(LAYOUT_BUCKET).await {
        if let Ok(Some(raw)) = kv.get(LAYOUT_KEY).await {
            if let Ok(existing) = serde_json::from_slice::<Layout>(&raw) {
                if existing != layout {
                    return Err(InitError::LayoutMismatch {
                        existing_partitions: existing.partitions,
                        existing_replicas: existing.replicas,
                        partitions: layout.partitions,
                        replicas: layout.replicas,
                    });
                }
            }
        }
    }
    for p in 0..layout.partitions {
        let name = stream_name(p);
        let config = jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![stream_subjects(p)],
            storage: StorageType::File,
            num_replicas: replicas,
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            allow_atomic_publish: true,
            ..Default::default()
        };
        again(|| js.create_or_update_stream(config.clone()))
            .await
            .map_err(|e| fail(&name, &e))?;
    }
    again(|| {
        js.create_object_store(jetstream::object_store::Config {
            bucket: PLUGINS_BUCKET.into(),
            num_replicas: replicas,
            storage: StorageType::File,
            ..Default::default()
        })
    })
    .await
    .map_err(|e| fail(PLUGINS_BUCKET, &e))?;
    crate::lease::ensure_bucket(&js, replicas)
        .await
        .map_err(|e| fail(crate::lease::LEASES_BUCKET, &e))?;
    let kv = again(|| {
        js.create_key_value(jetstream::kv::Config {
            bucket: LAYOUT_BUCKET.into(),
            num_replicas: replicas,
            storage: StorageType::File,
            history: 1,
            ..Default::default()
        })
    })
    .await
    .map_err(|e| fail(LAYOUT_BUCKET, &e))?;
    // Every partition serving before the layout is written: a host that
    // finds the layout can append at once.
    for p in 0..layout.partitions {
        let name = stream_name(p);
        loop {
            let led = match js.get_stream(&name).await {
                Ok(mut s) => s.info().await.is_ok_and(|i| {
                    i.cluster
                        .as_ref()
                        .is_none_or(|c| c.leader.as_deref().is_some_and(|l| !l.is_empty()))
                }),
                Err(_) => false,
            };
            if led {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The layout last: a host that finds it finds every stream too. The
    // bucket's own stream may still be electing its leader (the server
    // answers "no stream found for given subject" until then): the put is
    // idempotent, so it is retried for up to 10 s.
    let body = serde_json::to_vec(&layout).expect("a layout serialises");
    let mut tries = 0;
    loop {
        match kv.put(LAYOUT_KEY, body.clone().into()).await {
            Ok(_) => return Ok(()),
            Err(e) if tries >= 40 => return Err(fail(LAYOUT_KEY, &e)),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Runs `op` up to four times, half a second apart, while it fails: every
/// step of init is idempotent, and on a cluster that just started (or is
/// electing) a request can time out before the step is done.
async fn again<T, E, F, Fut>(mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut tries = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if tries >= 3 => return Err(e),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
