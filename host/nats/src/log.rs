//! The NATS JetStream log behind a synchronous API: appends, fenced atomic
//! commits, reads, checkpoints, look-ups and waits, all with bounded waits
//! and typed outcomes.

use crate::codec;
use crate::driver::Driver;
use crate::error::LogError;
use crate::heads::{Head, HeadCache};
use crate::layout::{Layout, LAYOUT_BUCKET, LAYOUT_KEY};
use crate::partition::{self, partition_of, stream_name};
use async_nats::jetstream::{self, message::OutboundMessage};
use async_nats::HeaderMap;
use batpak_store::{now_us, ChainLink, Event, EventId, Proposal, Region};
use futures_util::StreamExt;
use jetstream_extra::batch_fetch::{BatchFetchErrorKind, BatchFetchExt};
use jetstream_extra::batch_publish::{BatchPublishErrorKind, BatchPublishExt};
use std::error::Error as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most reactions one commit carries (one atomic batch holds 1000
/// messages, the checkpoint is one of them).
pub const MAX_REACTIONS: usize = 999;
/// The most events one [`NatsLog::read`] returns (the direct-get batch
/// limit).
pub const MAX_READ: usize = 1000;
/// The header on a checkpoint naming the commit that wrote it.
pub const COMMIT_HEADER: &str = "Batpak-Commit";
/// JetStream's "wrong last sequence" error code (a failed expected-sequence
/// check).
const WRONG_LAST_SEQUENCE: u64 = 10071;
/// The check could not be made because the subject has a write in flight
/// (in a cluster: proposed, not yet applied — possibly this writer's own
/// earlier try); nothing stored, settles within moments.
const SUBJECT_IN_FLIGHT: u64 = 10164;
/// A new stream leader cannot check per-subject expectations yet.
const SUBJECT_CHECK_NOT_READY: u64 = 10163;
/// A message with the same `Nats-Msg-Id` is still being stored (an earlier
/// try of the same append, proposed, not yet applied): this try was not
/// stored, the earlier one may still be — so the outcome is unknown, and
/// appending again (same id) resolves it once the earlier one settles.
const MSG_ID_IN_PROCESS: u64 = 10158;

/// True for the server's answers that refuse a write on an expected
/// sequence (moved, in flight, or not checkable yet): nothing was stored,
/// and re-reading the heads then trying again is the way on.
fn sequence_check_failed(code: u64) -> bool {
    matches!(
        code,
        WRONG_LAST_SEQUENCE | SUBJECT_IN_FLIGHT | SUBJECT_CHECK_NOT_READY
    )
}

/// The pause before try `attempt` (0-based) of a write whose sequence
/// check failed: none for the first retry, then growing, so a write in
/// flight can settle.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(u64::from(attempt.saturating_sub(1)) * 50)
}

/// How the log talks to the cluster.
#[derive(Clone, Debug)]
pub struct NatsOptions {
    /// The longest any one operation waits for an answer before it ends in
    /// [`LogError::Unknown`] (or `Unavailable` for reads).
    pub timeout: Duration,
    /// The longest connecting waits.
    pub connect_timeout: Duration,
    /// How often the client pings its server: a server that stops
    /// answering (paused, partitioned away) is left after two missed pings,
    /// and the client reconnects to another node.
    pub ping_interval: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(2),
        }
    }
}

/// A durable append's receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The partition it went to.
    pub partition: u32,
    /// Its sequence there (the first copy's, when a duplicate).
    pub sequence: u64,
    /// Its id.
    pub id: EventId,
    /// Its position in its entity's chain (0 for a duplicate: the first
    /// copy's is in the stream).
    pub entity_sequence: u64,
    /// True when the server had it already (same id or idempotency key
    /// within the stream's duplicate window): nothing new was stored.
    pub duplicate: bool,
}

/// One commit: a reactor's reactions and its new checkpoint in one
/// partition, stored as one atomic batch or not at all, fenced on the
/// checkpoint subject.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The partition. A reaction whose entity hashes to another partition
    /// is written to this partition's outbox for that one, in the same
    /// atomic batch (see the crate docs, "Reactions to other partitions").
    pub partition: u32,
    /// The reactor.
    pub reactor: String,
    /// The reactions, in order.
    pub reactions: Vec<Proposal>,
    /// The new checkpoint's bytes (opaque to the log).
    pub checkpoint: Vec<u8>,
    /// The sequence of the checkpoint this instance last read
    /// ([`Checkpoint::sequence`]; 0 when there was none): the fence.
    pub expected: u64,
    /// A unique token written on the checkpoint, so an unknown outcome can
    /// be resolved ([`NatsLog::resolve_commit`]). Keep the same `Commit`
    /// (same token) when retrying.
    pub token: String,
}

impl Commit {
    /// A commit with a fresh token.
    pub fn new(
        partition: u32,
        reactor: impl Into<String>,
        reactions: Vec<Proposal>,
        checkpoint: Vec<u8>,
        expected: u64,
    ) -> Commit {
        Commit {
            partition,
            reactor: reactor.into(),
            reactions,
            checkpoint,
            expected,
            token: codec::id_hex(EventId::generate()),
        }
    }
}

/// A stored commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The ids and sequences of the reactions of this partition, in order.
    pub reactions: Vec<(EventId, u64)>,
    /// The reactions for other partitions, in order: id, target partition,
    /// and the sequence of its outbox message in this partition (it is an
    /// event of the target once that partition's relay forwarded it).
    pub outbox: Vec<(EventId, u32, u64)>,
    /// The new checkpoint's sequence: the next commit's fence.
    pub checkpoint: u64,
}

/// A reactor's checkpoint in a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its sequence in the partition's stream (the fence for the next commit).
    pub sequence: u64,
    /// Its bytes.
    pub payload: Vec<u8>,
    /// The token of the commit that wrote it.
    pub token: Option<String>,
}

/// A message of a partition's stream as stored, whatever it is
/// ([`NatsLog::message_at`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its subject (`batpak.p<p>.e.…` an event, `.ck.` a checkpoint, `.o.`
    /// an outbox message).
    pub subject: String,
    /// The token of the commit that wrote it, when it has one.
    pub token: Option<String>,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// What [`NatsLog::resolve_commit`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The commit is stored; the fence for this instance's next commit:
    /// its checkpoint's sequence — or, when another instance has moved the
    /// checkpoint since, an older one, so that commit is refused.
    Landed(u64),
    /// The commit is not stored and never will be (final: its fence is
    /// spent, so even a copy still in flight somewhere is refused).
    NotLanded {
        /// The reactor's checkpoint now: the fence for the next commit.
        checkpoint: Option<Checkpoint>,
        /// True when resolving sealed the fence itself: the checkpoint is a
        /// copy of the one the commit was fenced on (same payload; an empty
        /// payload when there was none), so the cursor did not move and
        /// this instance retries its batch with `expected =
        /// checkpoint.sequence`. False when another instance moved the
        /// checkpoint: this instance is stale and stops.
        sealed: bool,
    },
}

/// The token prefix of a checkpoint written by
/// [`NatsLog::resolve_commit`] to seal a fence.
const SEAL_PREFIX: &str = "seal-";

/// Events read from a partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadBatch {
    /// The events, in partition order (`header.sequence` is the stream
    /// sequence).
    pub events: Vec<Event>,
    /// The last sequence looked at (at least the `after` asked): the next
    /// read goes on after it, past events the region left out.
    pub scanned: u64,
}

/// The log on a NATS JetStream cluster. Synchronous: every method blocks
/// the caller (at most [`NatsOptions::timeout`], or the wait asked for)
/// while the client runs on its own thread.
pub struct NatsLog {
    conn: Connection,
    layout: Layout,
    heads: HeadCache,
    /// Per partition, the highest stream sequence this process has seen
    /// acknowledged or read (every stored message is durable: quorum and
    /// fsync).
    seen: Vec<AtomicU64>,
}

/// A connection without a layout (what `cluster init` uses).
pub(crate) struct Connection {
    pub driver: Driver,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub timeout: Duration,
}

impl Connection {
    /// Connects to any of `servers` (`nats://HOST:PORT`); the client
    /// reconnects by itself, to any server of the cluster, after a loss.
    pub fn open(servers: &[String], options: &NatsOptions) -> Result<Connection, LogError> {
        let shown = servers.join(",");
        let driver = Driver::start().map_err(|e| LogError::Connect {
            servers: shown.clone(),
            reason: format!("starting the client thread: {e}"),
        })?;
        let addrs = servers.to_vec();
        let opts = async_nats::ConnectOptions::new()
            .connection_timeout(options.connect_timeout)
            .request_timeout(Some(options.timeout))
            .ping_interval(options.ping_interval)
            // Quick, bounded reconnects: a failover should cost the
            // election, not a back-off.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 50).min(500))
            });
        let connect_timeout = options.connect_timeout;
        let client = driver
            .run(async move {
                tokio::time::timeout(
                    connect_timeout,
                    async_nats::connect_with_options(addrs, opts),
                )
                .await
            })
            .map_err(|_| LogError::ClientThreadGone)?
            .map_err(|_| LogError::Connect {
                servers: shown.clone(),
                reason: format!("no answer within {connect_timeout:?}"),
            })?
            .map_err(|e| LogError::Connect {
                servers: shown.clone(),
                reason: e.to_string(),
            })?;
        // Built on the client thread: the context spawns its acker task.
        let timeout = options.timeout;
        let for_js = client.clone();
        let js = driver
            .run(async move {
                jetstream::ContextBuilder::new()
                    .timeout(timeout)
                    .build(for_js)
            })
            .map_err(|_| LogError::ClientThreadGone)?;
        Ok(Connection {
            driver,
            client,
            js,
            timeout: options.timeout,
        })
    }

    /// Runs `fut` on the client thread, bounded by `limit`; `None` when the
    /// limit passed.
    pub fn run<F, T>(&self, limit: Duration, fut: F) -> Result<Option<T>, LogError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.driver
            .run(async move { tokio::time::timeout(limit, fut).await.ok() })
            .map_err(|_| LogError::ClientThreadGone)
    }
}

/// How many times a write is rebuilt after another writer moved one of its
/// entities on, before [`LogError::Contended`].
const MAX_TRIES: u32 = 8;

/// One message of a write, before it is sent.
struct Outgoing {
    subject: String,
    body: Vec<u8>,
    headers: HeaderMap,
}

/// The events of one write, chained onto their entities' heads, and the
/// heads they leave.
struct Built {
    messages: Vec<Outgoing>,
    ids: Vec<EventId>,
    entity_sequences: Vec<u64>,
    /// Entity → (head before, head after without its stream sequence).
    heads: Vec<(String, Head, Head)>,
}

impl NatsLog {
    /// Connects to the cluster at `servers` and reads its layout.
    ///
    /// # Errors
    /// [`LogError::Connect`] when no server answers; [`LogError::NoLayout`]
    /// when `cluster init` has not run.
    pub fn open(servers: &[String], options: NatsOptions) -> Result<NatsLog, LogError> {
        let conn = Connection::open(servers, &options)?;
        let js = conn.js.clone();
        // Just after `cluster init` (or a leader change) the bucket's
        // replicas may not answer yet: retry until the connect deadline. A
        // bucket that does not exist is final at once.
        let limit = options.connect_timeout.max(options.timeout);
        let deadline = tokio::time::Instant::now() + limit;
        let layout = conn
            .run(limit + options.timeout, async move {
                loop {
                    let attempt: Result<Layout, (bool, String)> = async {
                        let kv = js.get_key_value(LAYOUT_BUCKET).await.map_err(|e| {
                            let missing = api_error(&e).is_some_and(|j| {
                                j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                            });
                            (missing, e.to_string())
                        })?;
                        let raw = kv
                            .get(LAYOUT_KEY)
                            .await
                            .map_err(|e| (false, e.to_string()))?
                            .ok_or_else(|| {
                                (
                                    true,
                                    format!("bucket {LAYOUT_BUCKET} has no key {LAYOUT_KEY}"),
                                )
                            })?;
                        serde_json::from_slice::<Layout>(&raw).map_err(|e| (true, e.to_string()))
                    }
                    .await;
                    match attempt {
                        Ok(layout) => return Ok(layout),
                        Err((true, reason)) => return Err(reason),
                        Err((false, reason)) if tokio::time::Instant::now() >= deadline => {
                            return Err(reason)
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            })?
            .ok_or_else(|| LogError::NoLayout {
                reason: "no answer in time".into(),
            })?
            .map_err(|reason| LogError::NoLayout { reason })?;
        Ok(NatsLog {
            conn,
            layout,
            heads: HeadCache::default(),
            seen: (0..layout.partitions).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// The cluster's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The partition `entity`'s events live in (see [`crate::partition`]).
    pub fn partition_of(&self, entity: &str) -> u32 {
        partition_of(entity, self.layout.partitions)
    }

    /// The highest sequence of partition `p` this process has seen stored
    /// (acknowledged, read, or asked with [`last_sequence`](Self::last_sequence)),
    /// without a round trip: a lower bound of the partition's head. Every
    /// stored message is durable (quorum, fsync), so it is the durable head
    /// as far as this process knows.
    pub fn last_known(&self, p: u32) -> u64 {
        self.seen
            .get(p as usize)
            .map_or(0, |s| s.load(Ordering::Acquire))
    }

    fn saw(&self, p: u32, sequence: u64) {
        if let Some(s) = self.seen.get(p as usize) {
            s.fetch_max(sequence, Ordering::AcqRel);
        }
    }

    fn check_partition(&self, p: u32) -> Result<(), LogError> {
        if p < self.layout.partitions {
            Ok(())
        } else {
            Err(LogError::NotInitialised {
                stream: stream_name(p),
            })
        }
    }

    /// The entity's head: cached unless `fresh`, else read from the stream
    /// leader (the last message on the entity's subjects).
    fn head(&self, p: u32, entity: &str, fresh: bool) -> Result<Head, LogError> {
        if !fresh {
            if let Some(h) = self.heads.get(p, entity) {
                return Ok(h);
            }
        }
        let head = match self.last_by_subject(p, partition::entity_filter(p, entity))? {
            None => Head::default(),
            Some(m) => {
                let e = codec::decode(p, m.sequence, &m.payload)?;
                Head {
                    stream_sequence: m.sequence,
                    entity_sequence: e.header.entity_sequence,
                    link: Some(ChainLink {
                        id: e.id(),
                        hash: e.hash,
                    }),
                }
            }
        };
        self.heads.put(p, entity, head);
        Ok(head)
    }

    /// Chains `proposals` (all of partition `p`) onto their entities'
    /// heads. The first message of each entity carries the head's stream
    /// sequence as the expected last sequence on the entity's subjects.
    fn build(&self, p: u32, proposals: &[Proposal], fresh: bool) -> Result<Built, LogError> {
        let now = now_us();
        let mut built = Built {
            messages: Vec::with_capacity(proposals.len()),
            ids: Vec::with_capacity(proposals.len()),
            entity_sequences: Vec::with_capacity(proposals.len()),
            heads: Vec::new(),
        };
        for prop in proposals {
            let entity = prop.coordinate.entity.as_str();
            let slot = match built.heads.iter().position(|(e, _, _)| e == entity) {
                Some(i) => i,
                None => {
                    let h = self.head(p, entity, fresh || prop.expected_sequence.is_some())?;
                    built.heads.push((entity.to_string(), h, h));
                    built.heads.len() - 1
                }
            };
            let (_, before, now_head) = &mut built.heads[slot];
            let mut headers = HeaderMap::new();
            if now_head == before {
                if let Some(expected) = prop.expected_sequence {
                    if expected != before.entity_sequence {
                        return Err(LogError::Conflict {
                            entity: entity.to_string(),
                            expected,
                            actual: before.entity_sequence,
                        });
                    }
                }
                headers.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    before.stream_sequence.to_string().as_str(),
                );
                headers.insert(
                    "Nats-Expected-Last-Subject-Sequence-Subject",
                    partition::entity_filter(p, entity).as_str(),
                );
            } else if let Some(expected) = prop.expected_sequence {
                if expected != now_head.entity_sequence {
                    return Err(LogError::Conflict {
                        entity: entity.to_string(),
                        expected,
                        actual: now_head.entity_sequence,
                    });
                }
            }
            let id = prop.id.unwrap_or_else(EventId::generate);
            let entity_sequence = now_head.entity_sequence + 1;
            let header = codec::header(prop, id, entity_sequence, now_head.link, now);
            let (body, hash) = codec::encode(&header, &prop.payload);
            *now_head = Head {
                stream_sequence: 0,
                entity_sequence,
                link: Some(ChainLink { id, hash }),
            };
            built.ids.push(id);
            built.entity_sequences.push(entity_sequence);
            built.messages.push(Outgoing {
                subject: partition::event_subject(p, entity, &codec::id_hex(id)),
                body,
                headers,
            });
        }
        Ok(built)
    }

    /// Appends one event to its entity's partition, chained onto the
    /// entity's last event (entity sequence, `prev` link, hash — as in the
    /// embedded store), and returns once the stream's quorum has it on disk
    /// (every node fsyncs each write: the cluster was checked for
    /// `sync_interval: always` at init).
    ///
    /// `expected_sequence` is honoured: the entity must be at that entity
    /// sequence, else [`LogError::Conflict`]. The server de-duplicates on
    /// `Nats-Msg-Id` within the stream's duplicate window (2 minutes): the
    /// idempotency key when there is one, otherwise the id. So an append
    /// that ended in [`LogError::Unknown`] is resolved by appending the same
    /// proposal again with the same id (set `proposal.id` before the first
    /// try; an id is generated otherwise).
    ///
    /// # Errors
    /// `Unknown` (may be stored), `Unavailable` (not stored), `Conflict`,
    /// `Contended`, `Invalid`, `Refused`.
    pub fn append(&self, proposal: &Proposal) -> Result<Appended, LogError> {
        proposal.validate(false)?;
        let p = self.partition_of(&proposal.coordinate.entity);
        let entity = proposal.coordinate.entity.as_str();
        let mut proposal = proposal.clone();
        // One id for every try, so a try that landed de-duplicates the next.
        let id = *proposal.id.get_or_insert_with(EventId::generate);
        let msg_id = proposal
            .idempotency_key
            .clone()
            .unwrap_or_else(|| codec::id_hex(id));
        for attempt in 0..MAX_TRIES {
            let mut built = self.build(p, std::slice::from_ref(&proposal), attempt > 0)?;
            let mut m = built.messages.pop().expect("one message");
            m.headers.insert("Nats-Msg-Id", msg_id.as_str());
            let js = self.conn.js.clone();
            let outcome = self.conn.run(self.conn.timeout, async move {
                let ack = js
                    .publish_with_headers(m.subject, m.headers, m.body.into())
                    .await
                    .map_err(|e| (true, e))?;
                ack.await.map_err(|e| (false, e))
            })?;
            match outcome {
                None => {
                    self.heads.forget(p, entity);
                    return Err(unknown("append", "no acknowledgement in time".into()));
                }
                Some(Ok(ack)) if ack.duplicate => {
                    self.heads.forget(p, entity);
                    self.saw(p, ack.sequence);
                    return Ok(Appended {
                        partition: p,
                        sequence: ack.sequence,
                        id,
                        entity_sequence: 0,
                        duplicate: true,
                    });
                }
                Some(Ok(ack)) => {
                    self.saw(p, ack.sequence);
                    let (_, _, mut after) = built.heads.pop().expect("one head");
                    after.stream_sequence = ack.sequence;
                    self.heads.put(p, entity, after);
                    return Ok(Appended {
                        partition: p,
                        sequence: ack.sequence,
                        id,
                        entity_sequence: built.entity_sequences[0],
                        duplicate: false,
                    });
                }
                Some(Err((false, e)))
                    if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence
                        || api_error(&e)
                            .is_some_and(|j| sequence_check_failed(j.error_code().0)) =>
                {
                    // Another writer appended to the entity (or a write to
                    // it is in flight): chain again.
                    self.heads.forget(p, entity);
                    std::thread::sleep(backoff(attempt + 1));
                    continue;
                }
                Some(Err((sending, e))) => {
                    self.heads.forget(p, entity);
                    return Err(publish_error(p, sending, e));
                }
            }
        }
        Err(LogError::Contended { tries: MAX_TRIES })
    }

    /// Stores `commit`'s reactions and checkpoint as one atomic batch, or
    /// nothing. Reactions are chained onto their entities like appends
    /// (`expected_sequence` honoured). The checkpoint carries
    /// `Nats-Expected-Last-Subject-Sequence = commit.expected` on the
    /// reactor's checkpoint subject, so when another instance committed
    /// since this one read its checkpoint, the whole batch is refused
    /// ([`LogError::Fenced`]). When only an entity moved on (another writer
    /// appended to it), the batch is chained again and resent.
    ///
    /// # Errors
    /// `Fenced`, `Unknown` (resolve with [`NatsLog::resolve_commit`]),
    /// `Unavailable`, `Conflict`, `Contended`, `BatchTooLarge`, `Invalid`,
    /// `Unsupported` (`expected_sequence` on a reaction for another
    /// partition: it can only be checked there), `Refused`.
    ///
    /// Reactions for entities of other partitions go into this partition's
    /// outbox in the same batch (see the crate docs); they reach their own
    /// partitions through its [`Relay`](crate::Relay).
    pub fn commit(&self, commit: &Commit) -> Result<Committed, LogError> {
        let (reactions, outbox, checkpoint) =
            self.send_batch(commit.partition, &commit.reactions, Some(commit))?;
        Ok(Committed {
            reactions,
            outbox,
            checkpoint,
        })
    }

    /// Stores `records` (all of partition `p`: the host's own records) as
    /// one atomic batch without a checkpoint, chained like appends; returns
    /// their ids and sequences. Give them ids: before each send the first
    /// record is looked up by id (after the entities' heads are read), so a
    /// batch re-sent after an unknown outcome — or by another instance
    /// deriving the same ids — is stored once, and the stored copy's ids
    /// and sequences are returned.
    ///
    /// # Errors
    /// As [`commit`](Self::commit), without `Fenced`; `Unsupported` for a
    /// record of another partition (only a checkpointed commit carries
    /// those, through the outbox: a batch without a fence could land twice
    /// when re-sent after an unknown outcome, and so would its outbox
    /// messages).
    pub fn append_batch(
        &self,
        p: u32,
        records: &[Proposal],
    ) -> Result<Vec<(EventId, u64)>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.send_batch(p, records, None).map(|(ids, _, _)| ids)
    }

    /// One atomic batch of `records`, then `fenced`'s checkpoint when
    /// given; retried (re-chained) while only an entity moved on. With a
    /// checkpoint, records of other partitions become outbox messages
    /// after this partition's events.
    #[allow(clippy::type_complexity)]
    fn send_batch(
        &self,
        p: u32,
        records: &[Proposal],
        fenced: Option<&Commit>,
    ) -> Result<(Vec<(EventId, u64)>, Vec<(EventId, u32, u64)>, u64), LogError> {
        self.check_partition(p)?;
        let max = MAX_REACTIONS + usize::from(fenced.is_none());
        if records.len() > max {
            return Err(LogError::BatchTooLarge {
                reactions: records.len(),
                max,
            });
        }
        let op = if fenced.is_some() {
            "commit"
        } else {
            "append_batch"
        };
        let mut records = records.to_vec();
        let mut foreign: Vec<(u32, Proposal)> = Vec::new();
        for r in &mut records {
            r.validate(true)?;
            // One id for every try (and for resolving by look-up).
            r.id.get_or_insert_with(EventId::generate);
        }
        records.retain(|r| {
            let q = self.partition_of(&r.coordinate.entity);
            if q == p {
                return true;
            }
            foreign.push((q, r.clone()));
            false
        });
        if !foreign.is_empty() {
            if fenced.is_none() {
                return Err(LogError::Unsupported {
                    what: "a record for an entity of another partition in a batch without a \
                           checkpoint (only a checkpointed commit carries those, through the \
                           outbox)",
                });
            }
            if foreign.iter().any(|(_, r)| r.expected_sequence.is_some()) {
                return Err(LogError::Unsupported {
                    what: "`expected_sequence` on a record for another partition (it can \
                           only be checked in that partition, where the relay writes it later)",
                });
            }
        }
        // The outbox messages do not change between tries (no chain).
        let now = now_us();
        let outbox: Vec<(String, bytes::Bytes)> = foreign
            .iter()
            .map(|(q, r)| {
                let id = r.id.expect("ids fixed above");
                (
                    partition::outbox_subject(p, *q, &codec::id_hex(id)),
                    codec::encode_outbox(r, id, now).into(),
                )
            })
            .collect();
        for attempt in 0..MAX_TRIES {
            let built = self.build(p, &records, attempt > 0)?;
            if fenced.is_none() {
                // A batch without a checkpoint has no fence to seal, so a
                // copy of it sent before (outcome unknown) is looked for
                // here, by id, *after* `build` read the entities' heads: a
                // copy that landed before this look-up is found (nothing is
                // sent again); one that lands after it makes those heads
                // stale, so this send is refused and the next try finds it.
                // Either way the records land once.
                if let Some(stored) = self.stored_batch(p, &records)? {
                    let last = stored.last().map_or(0, |(_, s)| *s);
                    return Ok((stored, Vec::new(), last));
                }
            }
            let mut messages: Vec<OutboundMessage> = built
                .messages
                .into_iter()
                .map(|m| OutboundMessage {
                    subject: m.subject.into(),
                    payload: m.body.into(),
                    headers: (!m.headers.is_empty()).then_some(m.headers),
                })
                .collect();
            messages.extend(outbox.iter().map(|(subject, body)| OutboundMessage {
                subject: subject.clone().into(),
                payload: body.clone(),
                headers: None,
            }));
            let last = match fenced {
                Some(commit) => {
                    let mut headers = HeaderMap::new();
                    headers.insert(
                        "Nats-Expected-Last-Subject-Sequence",
                        commit.expected.to_string().as_str(),
                    );
                    headers.insert(COMMIT_HEADER, commit.token.as_str());
                    OutboundMessage {
                        subject: partition::checkpoint_subject(p, &commit.reactor).into(),
                        payload: commit.checkpoint.clone().into(),
                        headers: Some(headers),
                    }
                }
                None => messages.pop().expect("at least one record"),
            };
            let js = self.conn.js.clone();
            let timeout = self.conn.timeout;
            let outcome = self.conn.run(timeout, async move {
                // No flow-control ack on the first message: a batch is at
                // most 1000 messages, and the one round trip is the commit's.
                let mut batch = js.batch_publish().ack_first(false).timeout(timeout).build();
                for m in messages {
                    batch.add_message(m).await.map_err(|e| (true, e))?;
                }
                batch.commit_message(last).await.map_err(|e| (false, e))
            })?;
            let forget_all = |heads: &[(String, Head, Head)]| {
                for (entity, _, _) in heads {
                    self.heads.forget(p, entity);
                }
            };
            match outcome {
                None => {
                    forget_all(&built.heads);
                    return Err(unknown(op, "no acknowledgement in time".into()));
                }
                Some(Ok(ack)) => {
                    self.saw(p, ack.sequence);
                    let n = built.ids.len() as u64;
                    let (first, outboxed) = stored_at(n, &foreign, ack.sequence, fenced.is_some());
                    let sequences: Vec<u64> = (0..n).map(|i| first + i).collect();
                    // Each entity's head is its last record in the batch.
                    for (entity, _, mut after) in built.heads {
                        after.stream_sequence = records
                            .iter()
                            .zip(&sequences)
                            .filter(|(r, _)| r.coordinate.entity == entity)
                            .map(|(_, s)| *s)
                            .next_back()
                            .expect("an entity of the batch");
                        self.heads.put(p, &entity, after);
                    }
                    return Ok((
                        built.ids.into_iter().zip(sequences).collect(),
                        outboxed,
                        ack.sequence,
                    ));
                }
                Some(Err((adding, e))) => {
                    forget_all(&built.heads);
                    let wrong_sequence = !adding
                        && api_error(&e).is_some_and(|j| sequence_check_failed(j.error_code().0));
                    if !wrong_sequence {
                        return Err(batch_error(p, op, adding, e));
                    }
                    // The checkpoint's fence, or an entity's chain check?
                    // The checkpoint says.
                    if let Some(commit) = fenced {
                        let now = self.checkpoint(p, &commit.reactor)?;
                        // This very commit is stored: a copy of it whose
                        // answer was lost landed first (a leader change
                        // under load), and this refusal is of the repeat.
                        // It landed whole, ending at its checkpoint.
                        if let Some(c) = now
                            .as_ref()
                            .filter(|c| c.token.as_deref() == Some(commit.token.as_str()))
                        {
                            let n = built.ids.len() as u64;
                            let (first, outboxed) = stored_at(n, &foreign, c.sequence, true);
                            return Ok((
                                built.ids.into_iter().zip(first..).collect(),
                                outboxed,
                                c.sequence,
                            ));
                        }
                        if now.map_or(0, |c| c.sequence) != commit.expected {
                            return Err(LogError::Fenced {
                                partition: p,
                                reactor: commit.reactor.clone(),
                                expected: commit.expected,
                            });
                        }
                    }
                    std::thread::sleep(backoff(attempt + 1));
                }
            }
        }
        Err(LogError::Contended { tries: MAX_TRIES })
    }

    /// Learns whether `commit` is stored, after it ended in
    /// [`LogError::Unknown`]: reads the reactor's
    /// checkpoint from the stream leader and compares its token.
    ///
    /// The answer is final. A commit whose answer was lost may still be in
    /// flight (a paused server resumes and stores it later), so when the
    /// checkpoint is still where the commit's fence expects it, this call
    /// seals the fence: it re-writes the same checkpoint, fenced on the
    /// same sequence. Exactly one of the two lands — the commit (then this
    /// says `Landed`) or the seal (then the commit can never land:
    /// `NotLanded { sealed: true }`).
    ///
    /// # Errors
    /// Reads and the seal retry through a settling cluster; `Unavailable`
    /// or `Contended` when it does not settle.
    pub fn resolve_commit(&self, commit: &Commit) -> Result<Resolution, LogError> {
        let p = commit.partition;
        let seal_token = format!("{SEAL_PREFIX}{}", commit.token);
        for attempt in 0..MAX_TRIES * 4 {
            let now = self.checkpoint(p, &commit.reactor)?;
            let current = now.as_ref().map_or(0, |c| c.sequence);
            match now.as_ref().and_then(|c| c.token.as_deref()) {
                Some(t) if t == commit.token => return Ok(Resolution::Landed(current)),
                Some(t) if t == seal_token => {
                    // The seal passed its check, but a copy of the commit
                    // that a killed leader had already replicated can be
                    // committed by the new leader ahead of the seal, both
                    // checked against the same last sequence: then the
                    // commit's records are stored and the seal put the
                    // checkpoint back. Decide by content too.
                    if self.records_stored(commit)? {
                        return self.restore_checkpoint(commit, current);
                    }
                    return Ok(Resolution::NotLanded {
                        checkpoint: now,
                        sealed: true,
                    });
                }
                _ if current != commit.expected => {
                    return Ok(Resolution::NotLanded {
                        checkpoint: now,
                        sealed: false,
                    })
                }
                _ => {}
            }
            // Still at the commit's fence: seal it. Whatever the seal's
            // outcome, the next round reads the checkpoint again and
            // decides from what is there.
            let payload = now.map(|c| c.payload).unwrap_or_default();
            self.write_checkpoint(p, &commit.reactor, current, &seal_token, payload)?;
            std::thread::sleep(backoff(attempt));
        }
        Err(LogError::Contended {
            tries: MAX_TRIES * 4,
        })
    }

    /// The ids and sequences of `records` when the first of them is stored
    /// in partition `p` (a batch lands whole: then all of them are), `None`
    /// when it is not. Leader-served look-ups.
    fn stored_batch(
        &self,
        p: u32,
        records: &[Proposal],
    ) -> Result<Option<Vec<(EventId, u64)>>, LogError> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let id = r.id.expect("ids fixed before sending");
            match self.lookup_in(p, id)? {
                Some(e) => out.push((id, e.header.sequence)),
                None if out.is_empty() => return Ok(None),
                None => {
                    return Err(LogError::Damaged {
                        partition: p,
                        sequence: out.last().map_or(0, |(_, s)| *s),
                        reason: format!(
                            "record {id} of a batch whose first record is stored is missing                              (a batch lands whole)"
                        ),
                    })
                }
            }
        }
        Ok(Some(out))
    }

    /// True when the first of the commit's records that has an id is
    /// stored (in this partition, or in its outbox for another one): the
    /// commit landed whatever its checkpoint says now.
    fn records_stored(&self, commit: &Commit) -> Result<bool, LogError> {
        let p = commit.partition;
        let Some(r) = commit.reactions.iter().find(|r| r.id.is_some()) else {
            return Ok(false);
        };
        let hex = codec::id_hex(r.id.expect("found with an id"));
        let q = self.partition_of(r.coordinate.entity.as_str());
        let subject = if q == p {
            partition::id_filter(p, &hex)
        } else {
            partition::outbox_subject(p, q, &hex)
        };
        Ok(self.last_by_subject(p, subject)?.is_some())
    }

    /// A commit found stored behind its own seal: writes its checkpoint
    /// again, fenced on the seal, so the cursor is where the commit put it
    /// (a takeover reading the sealed copy would redo the batch). Landed
    /// either way. When another instance moved the checkpoint first, the
    /// sequence returned is the seal's, not that instance's: the caller
    /// carries it as its fence, so its next commit is refused (it must not
    /// go on from its own position fenced on another instance's
    /// checkpoint, which could be further on).
    fn restore_checkpoint(&self, commit: &Commit, sealed_at: u64) -> Result<Resolution, LogError> {
        let p = commit.partition;
        for attempt in 0..MAX_TRIES * 4 {
            self.write_checkpoint(
                p,
                &commit.reactor,
                sealed_at,
                &commit.token,
                commit.checkpoint.clone(),
            )?;
            if let Some(now) = self.checkpoint(p, &commit.reactor)? {
                if now.token.as_deref() == Some(commit.token.as_str()) {
                    return Ok(Resolution::Landed(now.sequence));
                }
                if now.sequence != sealed_at {
                    return Ok(Resolution::Landed(sealed_at));
                }
            }
            std::thread::sleep(backoff(attempt));
        }
        Err(LogError::Contended {
            tries: MAX_TRIES * 4,
        })
    }

    /// Publishes `payload` on `reactor`'s checkpoint subject of partition
    /// `p` with `token`, fenced on `expected` (the subject's last
    /// sequence). The outcome is not returned: callers read the
    /// checkpoint again and decide from what is there.
    fn write_checkpoint(
        &self,
        p: u32,
        reactor: &str,
        expected: u64,
        token: &str,
        payload: Vec<u8>,
    ) -> Result<(), LogError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            expected.to_string().as_str(),
        );
        headers.insert(COMMIT_HEADER, token);
        let subject = partition::checkpoint_subject(p, reactor);
        let js = self.conn.js.clone();
        self.conn.run(self.conn.timeout, async move {
            let ack = js
                .publish_with_headers(subject, headers, payload.into())
                .await
                .ok()?;
            ack.await.ok()
        })?;
        Ok(())
    }

    /// The reactor's last checkpoint in partition `p`, read from the stream
    /// leader (not a possibly lagging replica); `None` when it never
    /// committed there.
    pub fn checkpoint(&self, p: u32, reactor: &str) -> Result<Option<Checkpoint>, LogError> {
        self.check_partition(p)?;
        let subject = partition::checkpoint_subject(p, reactor);
        match self.last_by_subject(p, subject)? {
            None => Ok(None),
            Some(m) => Ok(Some(Checkpoint {
                sequence: m.sequence,
                token: m.headers.get(COMMIT_HEADER).map(|v| v.as_str().to_string()),
                payload: m.payload.to_vec(),
            })),
        }
    }

    /// The event with `id` and its partition, looked for in every
    /// partition (one leader-served request each); `None` when no
    /// partition has it.
    pub fn lookup(&self, id: EventId) -> Result<Option<(u32, Event)>, LogError> {
        for p in 0..self.layout.partitions {
            if let Some(e) = self.lookup_in(p, id)? {
                return Ok(Some((p, e)));
            }
        }
        Ok(None)
    }

    /// The event with `id` in partition `p` (one leader-served request);
    /// `None` when that partition does not have it.
    pub fn lookup_in(&self, p: u32, id: EventId) -> Result<Option<Event>, LogError> {
        self.check_partition(p)?;
        let hex = codec::id_hex(id);
        match self.last_by_subject(p, partition::id_filter(p, &hex))? {
            Some(m) => codec::decode(p, m.sequence, &m.payload).map(Some),
            None => Ok(None),
        }
    }

    /// The event at stream sequence `sequence` of partition `p` (leader
    /// served); `None` when there is none or it is a checkpoint.
    pub fn get_by_sequence(&self, p: u32, sequence: u64) -> Result<Option<Event>, LogError> {
        match self.raw_message_at(p, sequence)? {
            Some(m) if m.subject.starts_with(&format!("batpak.p{p}.e.")) => {
                codec::decode(p, m.sequence, &m.payload).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The message at stream sequence `sequence` of partition `p`, whatever
    /// it is (event, checkpoint, outbox message), leader served: its
    /// subject, its commit token when it has one, and its bytes; `None`
    /// when there is none. For diagnosis: it tells what a stream really
    /// holds where a replica's view is in doubt.
    pub fn message_at(&self, p: u32, sequence: u64) -> Result<Option<StoredMessage>, LogError> {
        Ok(self.raw_message_at(p, sequence)?.map(|m| {
            let token = m.headers.get(COMMIT_HEADER).map(|v| v.as_str().to_string());
            StoredMessage {
                subject: m.subject.to_string(),
                token,
                bytes: m.payload.to_vec(),
            }
        }))
    }

    /// The raw message at stream sequence `sequence` of partition `p`, one
    /// leader-served direct get; `None` when the stream has no message
    /// there. Shared by [`Self::get_by_sequence`] and [`Self::message_at`],
    /// which differ only in what they make of the message.
    fn raw_message_at(
        &self,
        p: u32,
        sequence: u64,
    ) -> Result<Option<jetstream::message::StreamMessage>, LogError> {
        use async_nats::jetstream::stream::RawMessageErrorKind as K;
        self.check_partition(p)?;
        let js = self.conn.js.clone();
        let name = stream_name(p);
        let out = self.conn.run(self.conn.timeout, async move {
            let stream = js
                .get_stream_no_info(&name)
                .await
                .map_err(|e| e.to_string())?;
            match stream.get_raw_message(sequence).await {
                Ok(m) => Ok(Some(m)),
                Err(e) if e.kind() == K::NoMessageFound => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })?;
        unavailable_if_none(p, out)
    }

    fn last_by_subject(
        &self,
        p: u32,
        subject: String,
    ) -> Result<Option<jetstream::message::StreamMessage>, LogError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind as K;
        let js = self.conn.js.clone();
        let name = stream_name(p);
        let out = self.conn.run(self.conn.timeout, async move {
            let stream = js
                .get_stream_no_info(&name)
                .await
                .map_err(|e| e.to_string())?;
            match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => Ok(Some(m)),
                Err(e) if e.kind() == K::NoMessageFound => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })?;
        unavailable_if_none(p, out)
    }

    /// Up to `max` (at most [`MAX_READ`]) events of partition `p` with a
    /// stream sequence greater than `after`, in order (checkpoints left
    /// out). Served by any replica (direct get): a replica may lag the
    /// leader by a few writes, never reorder them.
    pub fn read(&self, p: u32, after: u64, max: usize) -> Result<ReadBatch, LogError> {
        self.read_filtered(p, partition::events_filter(p), after, max, |_| true)
    }

    /// Like [`read`](Self::read), keeping only events `region` matches;
    /// [`ReadBatch::scanned`] says how far it looked.
    pub fn read_region(
        &self,
        p: u32,
        region: &Region,
        after: u64,
        max: usize,
    ) -> Result<ReadBatch, LogError> {
        self.read_filtered(p, partition::events_filter(p), after, max, |e| {
            region.matches(&e.header)
        })
    }

    /// Up to `max` events of `entity` with an entity sequence greater than
    /// `after`, oldest first.
    pub fn entity_events(
        &self,
        entity: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<Event>, LogError> {
        let p = self.partition_of(entity);
        let filter = partition::entity_filter(p, entity);
        let mut out = Vec::new();
        let mut from = 0;
        while out.len() < max {
            let b = self.read_filtered(p, filter.clone(), from, MAX_READ, |e| {
                e.header.entity_sequence > after
            })?;
            if b.scanned == from {
                break;
            }
            from = b.scanned;
            out.extend(b.events);
        }
        out.truncate(max);
        Ok(out)
    }

    fn read_filtered(
        &self,
        p: u32,
        filter: String,
        after: u64,
        max: usize,
        keep: impl Fn(&Event) -> bool,
    ) -> Result<ReadBatch, LogError> {
        let messages = self.fetch(p, filter, after, max)?;
        let mut batch = ReadBatch {
            events: Vec::with_capacity(messages.len()),
            scanned: after,
        };
        for m in messages {
            self.saw(p, m.sequence);
            batch.scanned = m.sequence;
            let e = codec::decode(p, m.sequence, &m.payload)?;
            if keep(&e) {
                batch.events.push(e);
            }
        }
        Ok(batch)
    }

    /// Up to `max` (at most [`MAX_READ`]) messages of partition `p` on
    /// `filter` after sequence `after`, in order (direct get: any replica).
    fn fetch(
        &self,
        p: u32,
        filter: String,
        after: u64,
        max: usize,
    ) -> Result<Vec<jetstream::message::StreamMessage>, LogError> {
        self.check_partition(p)?;
        let max = max.clamp(1, MAX_READ);
        let js = self.conn.js.clone();
        let name = stream_name(p);
        let out = self.conn.run(self.conn.timeout, async move {
            let mut stream = match js
                .get_batch(&name, max)
                .sequence(after + 1)
                .subject(filter)
                .send()
                .await
            {
                Ok(s) => s,
                Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => return Ok(Vec::new()),
                Err(e) => return Err(e.to_string()),
            };
            let mut got = Vec::new();
            while let Some(m) = stream.next().await {
                match m {
                    Ok(m) => got.push(m),
                    Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(got)
        })?;
        unavailable_if_none(p, out)
    }

    /// Up to `max` (at most [`MAX_READ`]) outbox messages in partition `p`
    /// for partition `q` with a sequence in `p` greater than `after`, in
    /// order: each one's sequence in `p` and the proposal it carries (ids
    /// fixed). Served by any replica of `p` (a replica may lag, never
    /// reorder). An undecodable message is [`LogError::Damaged`], never
    /// skipped.
    pub fn read_outbox(
        &self,
        p: u32,
        q: u32,
        after: u64,
        max: usize,
    ) -> Result<Vec<(u64, Proposal)>, LogError> {
        self.check_partition(q)?;
        let messages = self.fetch(p, partition::outbox_filter(p, q), after, max)?;
        messages
            .into_iter()
            .map(|m| Ok((m.sequence, codec::decode_outbox(p, m.sequence, &m.payload)?)))
            .collect()
    }

    /// The sequence in partition `p` of its last outbox message for
    /// partition `q` (0 when there is none), from the stream leader.
    pub fn outbox_head(&self, p: u32, q: u32) -> Result<u64, LogError> {
        self.check_partition(p)?;
        self.check_partition(q)?;
        Ok(self
            .last_by_subject(p, partition::outbox_filter(p, q))?
            .map_or(0, |m| m.sequence))
    }

    /// Waits until partition `p` holds an event with a sequence greater
    /// than `after`, at most `timeout`; true when there is one. A core
    /// subscription wakes the wait; the answer comes from the stream leader.
    pub fn wait(&self, p: u32, after: u64, timeout: Duration) -> Result<bool, LogError> {
        self.check_partition(p)?;
        let js = self.conn.js.clone();
        let client = self.conn.client.clone();
        let name = stream_name(p);
        let filter = partition::events_filter(p);
        let deadline = Instant::now() + timeout;
        let sources = vec![(name, filter.clone(), after)];
        let out = self.conn.run(timeout + self.conn.timeout, async move {
            first_new(js, client, filter, sources, deadline).await
        })?;
        match out {
            None => Ok(false),
            Some(r) => r.map_err(|reason: String| LogError::Unavailable {
                partition: p,
                reason,
            }),
        }
    }

    /// Waits until some source partition `p` of `from` (`(p, after)`
    /// pairs) holds an outbox message for partition `q` with a sequence
    /// greater than its `after`, at most `timeout`; true when there is one.
    /// One core subscription on every partition's outbox for `q` wakes the
    /// wait (a relay's idle wait, no polling loop); each source is then
    /// asked its stream leader.
    pub fn wait_outbox(
        &self,
        q: u32,
        from: &[(u32, u64)],
        timeout: Duration,
    ) -> Result<bool, LogError> {
        self.check_partition(q)?;
        for (p, _) in from {
            self.check_partition(*p)?;
        }
        let js = self.conn.js.clone();
        let client = self.conn.client.clone();
        let deadline = Instant::now() + timeout;
        let sources = from
            .iter()
            .map(|(p, after)| (stream_name(*p), partition::outbox_filter(*p, q), *after))
            .collect();
        let out = self.conn.run(timeout + self.conn.timeout, async move {
            first_new(js, client, partition::outbox_wake(q), sources, deadline).await
        })?;
        match out {
            None => Ok(false),
            Some(r) => r.map_err(|reason: String| LogError::Unavailable {
                partition: q,
                reason,
            }),
        }
    }

    /// A lossy live feed of the events of partition `p` matching `region`,
    /// stored from now on, buffering at most `capacity` (at least 1): a
    /// subscriber that falls behind is cut off with
    /// [`CloseReason::Lagged`](batpak_store::CloseReason::Lagged).
    pub fn subscribe(
        &self,
        p: u32,
        region: &Region,
        capacity: usize,
    ) -> Result<crate::LiveFeed, LogError> {
        use async_nats::jetstream::consumer::{push, DeliverPolicy};
        self.check_partition(p)?;
        let js = self.conn.js.clone();
        let client = self.conn.client.clone();
        let name = stream_name(p);
        let filter = partition::events_filter(p);
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        let end = std::sync::Arc::new(crate::live_feed::FeedEnd::default());
        let region = region.clone();
        let task_end = end.clone();
        let out = self.conn.run(self.conn.timeout, async move {
            let stream = js
                .get_stream_no_info(&name)
                .await
                .map_err(|e| e.to_string())?;
            let consumer = stream
                .create_consumer(push::OrderedConfig {
                    deliver_subject: client.new_inbox(),
                    filter_subject: filter,
                    deliver_policy: DeliverPolicy::New,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let messages = consumer.messages().await.map_err(|e| e.to_string())?;
            let task = tokio::spawn(crate::live_feed::forward(p, region, messages, tx, task_end));
            Ok::<_, String>(task.abort_handle())
        })?;
        let task = unavailable_if_none(p, out)?;
        Ok(crate::LiveFeed::new(rx, end, task))
    }

    /// The last sequence of partition `p`'s stream (events and checkpoints),
    /// from the leader; 0 when empty.
    pub fn last_sequence(&self, p: u32) -> Result<u64, LogError> {
        self.check_partition(p)?;
        let js = self.conn.js.clone();
        let name = stream_name(p);
        let out = self.conn.run(self.conn.timeout, async move {
            let mut s = js.get_stream(&name).await.map_err(|e| e.to_string())?;
            let info = s.info().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(info.state.last_sequence)
        })?;
        let last = unavailable_if_none(p, out)?;
        self.saw(p, last);
        Ok(last)
    }
}

/// True once any of `sources` (stream, subject filter, after) holds a
/// message after its sequence; false at `deadline`. Woken by a publish on
/// `wake`, and re-checked every 250 ms in case a wake-up was missed
/// (reconnects).
async fn first_new(
    js: jetstream::Context,
    client: async_nats::Client,
    wake: String,
    sources: Vec<(String, String, u64)>,
    deadline: Instant,
) -> Result<bool, String> {
    let mut wake = client.subscribe(wake).await.map_err(|e| e.to_string())?;
    let mut streams = Vec::with_capacity(sources.len());
    for (name, filter, after) in sources {
        let stream = js
            .get_stream_no_info(&name)
            .await
            .map_err(|e| e.to_string())?;
        streams.push((stream, filter, after));
    }
    loop {
        for (stream, filter, after) in &streams {
            let found = stream
                .raw_message_builder()
                .sequence(after + 1)
                .next_by_subject(filter.clone())
                .send()
                .await;
            if found.is_ok() {
                return Ok(true);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        let nap = (deadline - now).min(Duration::from_millis(250));
        let _ = tokio::time::timeout(nap, wake.next()).await;
    }
}

/// A read's outcome: no answer in time or an error is `Unavailable`.
fn unavailable_if_none<T>(p: u32, out: Option<Result<T, String>>) -> Result<T, LogError> {
    match out {
        None => Err(LogError::Unavailable {
            partition: p,
            reason: "no answer in time".into(),
        }),
        Some(r) => r.map_err(|reason| LogError::Unavailable {
            partition: p,
            reason,
        }),
    }
}

fn unknown(op: &'static str, reason: String) -> LogError {
    LogError::Unknown {
        op,
        reason,
        resolve: if op == "commit" {
            "resolve it with resolve_commit (re-reads the reactor's checkpoint subject)"
        } else if op == "append_batch" {
            "look one of its records up by id: the batch landed whole or not at all"
        } else {
            "append the same proposal (same id or idempotency key) again: the server \
             de-duplicates it within its window"
        },
    }
}

/// The JetStream API error behind a client error, when the server sent one.
fn api_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a jetstream::Error> {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(j) = x.downcast_ref::<jetstream::Error>() {
            return Some(j);
        }
        cur = x.source();
    }
    None
}

fn publish_error(p: u32, sending: bool, e: jetstream::context::PublishError) -> LogError {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        // The message never left: nothing stored.
        _ if sending => LogError::Unavailable {
            partition: p,
            reason: e.to_string(),
        },
        K::StreamNotFound => LogError::Unavailable {
            partition: p,
            reason: "no server answered for the stream (no responders)".into(),
        },
        K::TimedOut | K::BrokenPipe => unknown("append", e.to_string()),
        _ => match api_error(&e) {
            Some(j) if j.error_code().0 == MSG_ID_IN_PROCESS => unknown("append", j.to_string()),
            Some(j) => LogError::Refused {
                op: "append",
                code: j.error_code().0,
                description: j.to_string(),
            },
            None => unknown("append", e.to_string()),
        },
    }
}

fn batch_error(
    p: u32,
    op: &'static str,
    adding: bool,
    e: jetstream_extra::batch_publish::BatchPublishError,
) -> LogError {
    use BatchPublishErrorKind as K;
    if adding {
        // The commit message was never sent: the server stores nothing of
        // an uncommitted batch (it abandons it after 10 s).
        return LogError::Unavailable {
            partition: p,
            reason: format!("sending the batch: {e}"),
        };
    }
    match e.kind() {
        K::BatchPublishIncomplete => LogError::Unavailable {
            partition: p,
            reason: format!("the server abandoned the batch: {e}"),
        },
        K::Request => {
            let no_responders = e
                .source()
                .and_then(|s| s.downcast_ref::<async_nats::RequestError>())
                .is_some_and(|r| r.kind() == async_nats::RequestErrorKind::NoResponders);
            if no_responders {
                LogError::Unavailable {
                    partition: p,
                    reason: "no server answered for the stream (no responders)".into(),
                }
            } else {
                unknown(op, e.to_string())
            }
        }
        K::Serialization | K::InvalidAck | K::Other if api_error(&e).is_none() => {
            unknown(op, e.to_string())
        }
        _ => {
            let (code, description) = api_error(&e)
                .map(|j| (j.error_code().0, j.to_string()))
                .unwrap_or((0, e.to_string()));
            LogError::Refused {
                op,
                code,
                description,
            }
        }
    }
}

/// Where a batch of `n` events, then `foreign`'s outbox messages, then
/// (when `checkpointed`) its checkpoint was stored, given the stream
/// sequence of its last message: a batch lands whole and in order. The
/// first event's sequence, and each outbox message's id, partition and
/// sequence.
fn stored_at(
    n: u64,
    foreign: &[(u32, Proposal)],
    last: u64,
    checkpointed: bool,
) -> (u64, Vec<(EventId, u32, u64)>) {
    let first = last + 1 - n - foreign.len() as u64 - u64::from(checkpointed);
    let outboxed = foreign
        .iter()
        .zip(first + n..)
        .map(|((q, r), s)| (r.id.expect("ids fixed before sending"), *q, s))
        .collect();
    (first, outboxed)
}
