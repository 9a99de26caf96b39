//! The one trait every store command works over, [`StoreAccess`], and its
//! two implementations: the store itself, opened by this process
//! ([`LocalStore`]), and the host running on it, through its control socket
//! ([`batpak_service::Client`]). A command is written once against the
//! trait, so its output cannot differ between the two.
//!
//! Both sides answer with the same functions of the service crate
//! ([`batpak_service::append`], [`batpak_service::read`],
//! [`batpak_service::verify_json`]): the host runs them for a client, a
//! local store runs them here.

use crate::views::{ParkedLine, ReplayRequestedLine};
use anyhow::Context;
use batpak_service::{Client, ClientError, NewEvent, Page, Query};
use batpak_store::{BulkAppend, EventId, Proposal, Store, StoreError};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A part of a bulk append was refused; nothing of the append is kept.
#[derive(Debug, thiserror::Error)]
pub enum PartRefused {
    /// The store or host refused it, saying why (naming the event by its
    /// index in the part as `proposal N: …` or `event N: …`).
    #[error("{0}")]
    Refused(String),
    /// The part could not be sent or written (a connection or I/O failure).
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// Checks one proposal (see [`StoreAccess::check_all`]).
pub type Checker<'a> = dyn FnMut(&Proposal) -> anyhow::Result<()> + 'a;

/// Where a store command reads and writes: the store itself or the host
/// running on it. The outputs are the same JSON values either way.
pub trait StoreAccess {
    /// Who answers, in words for messages (`None` for a local store).
    fn served_by(&self) -> Option<&'static str>;

    /// Appends `events` atomically; their receipts once durable.
    ///
    /// # Errors
    /// A bad event (nothing appended), a conflict, a store or connection
    /// failure.
    fn append(&mut self, events: Vec<NewEvent>) -> anyhow::Result<Vec<Value>>;

    /// Runs `pass` with a checker for the proposals of a bulk append,
    /// before anything is written: a local store checks each against the
    /// store and the proposals checked before it (causation, ids, expected
    /// sequences); a running host checks each part as it arrives instead,
    /// so its checker accepts.
    ///
    /// # Errors
    /// What `pass` returns.
    fn check_all(
        &mut self,
        pass: &mut dyn FnMut(&mut Checker<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()>;

    /// Appends `events` as the next part of one bulk transaction (the first
    /// part opens it); their receipts as JSON lines (without the newline),
    /// final once [`bulk_commit`] succeeds.
    ///
    /// [`bulk_commit`]: StoreAccess::bulk_commit
    ///
    /// # Errors
    /// [`PartRefused`]; the transaction is abandoned.
    fn bulk_part(&mut self, events: Vec<NewEvent>) -> Result<Vec<String>, PartRefused>;

    /// Commits the bulk transaction; how many events it appended, once
    /// durable.
    ///
    /// # Errors
    /// The commit failed (all or none of it is kept; reopening tells).
    fn bulk_commit(&mut self) -> anyhow::Result<u64>;

    /// Abandons the bulk transaction: nothing of it counts.
    fn bulk_abort(&mut self);

    /// One page of durable events matching `q`.
    ///
    /// # Errors
    /// A bad filter, a store or connection failure.
    fn read(&mut self, q: &Query) -> anyhow::Result<Page>;

    /// The verify report (`batpak_service::verify_json`'s shape).
    ///
    /// # Errors
    /// The check could not run.
    fn verify(&mut self) -> anyhow::Result<Value>;

    /// Unresolved parked events, as `parked` prints them.
    ///
    /// # Errors
    /// A store or connection failure.
    fn parked(&mut self, plugin: Option<&str>) -> anyhow::Result<Vec<Value>>;

    /// Records replay requests for parked events; one line per request.
    ///
    /// # Errors
    /// A store or connection failure.
    fn parked_replay(
        &mut self,
        plugin: Option<&str>,
        event: Option<EventId>,
    ) -> anyhow::Result<Vec<Value>>;

    /// Ends the access (a local store is closed).
    ///
    /// # Errors
    /// Closing the store failed.
    fn close(self: Box<Self>) -> anyhow::Result<()>;
}

/// The store in a data directory, opened by this process for one command
/// — or, read-only, not opened at all (`verify`, and `parked` while a `run`
/// that serves no socket holds the store): never repaired, no lock taken.
pub struct LocalStore {
    store: Option<Store>,
    dir: PathBuf,
    bulk: Option<BulkAppend>,
}

impl LocalStore {
    /// Opens the store in `data` (creating it when missing), telling on
    /// stderr what opening it had to cut.
    ///
    /// # Errors
    /// The store does not open (held by another process, damaged).
    pub fn open(data: &Path) -> anyhow::Result<LocalStore> {
        let store = Store::open(data)?;
        for n in crate::store_commands::recovery_notes(&store) {
            eprintln!("{n}");
        }
        Ok(LocalStore {
            store: Some(store),
            dir: data.to_path_buf(),
            bulk: None,
        })
    }

    /// The store in `data` read without opening it: its segments are read
    /// lock-free, nothing is written or repaired; appends are refused.
    pub fn read_only(data: &Path) -> LocalStore {
        LocalStore {
            store: None,
            dir: data.to_path_buf(),
            bulk: None,
        }
    }

    fn store(&self) -> anyhow::Result<&Store> {
        self.store.as_ref().with_context(|| {
            format!(
                "the store in {} is read without opening it here; this needs it open",
                self.dir.display()
            )
        })
    }
}

impl StoreAccess for LocalStore {
    fn served_by(&self) -> Option<&'static str> {
        None
    }

    fn append(&mut self, events: Vec<NewEvent>) -> anyhow::Result<Vec<Value>> {
        let r = batpak_service::append(self.store()?, events)
            .map_err(|e| anyhow::anyhow!(e.message))?;
        Ok(receipts(r))
    }

    fn check_all(
        &mut self,
        pass: &mut dyn FnMut(&mut Checker<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        // Only ids and counters are kept; nothing is written.
        let mut plan = self.store()?.plan();
        pass(&mut |p: &Proposal| {
            plan.check(p).map_err(|e| match e {
                StoreError::Invalid { source, .. } => anyhow::anyhow!("{source}"),
                StoreError::UnknownCausation { id, .. } => anyhow::anyhow!(
                    "causation {id} is neither an event in this store nor the \"id\" of an earlier line"
                ),
                e => e.into(),
            })
        })
    }

    fn bulk_part(&mut self, events: Vec<NewEvent>) -> Result<Vec<String>, PartRefused> {
        // The host's own steps for a part (batpak_service), run here.
        let props = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| batpak_service::proposal(i, e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PartRefused::Refused(e.message))?;
        let meta: Vec<_> = props
            .iter()
            .map(|p| (p.coordinate.clone(), p.kind.clone()))
            .collect();
        let bulk = match &mut self.bulk {
            Some(b) => b,
            None => {
                let store = self.store().map_err(PartRefused::Failed)?;
                let b = store
                    .begin_bulk()
                    .map_err(|e| PartRefused::Failed(e.into()))?;
                self.bulk.insert(b)
            }
        };
        let rs = bulk.append(props).map_err(|e| match e {
            StoreError::Io { .. } | StoreError::Closed => PartRefused::Failed(e.into()),
            e => PartRefused::Refused(e.to_string()),
        })?;
        Ok(rs
            .iter()
            .zip(&meta)
            .map(|(r, (c, k))| {
                serde_json::to_string(&batpak_service::ReceiptLine::new(r, c, k))
                    .expect("a receipt encodes")
            })
            .collect())
    }

    fn bulk_commit(&mut self) -> anyhow::Result<u64> {
        let bulk = self.bulk.take().context("no bulk append to commit")?;
        Ok(bulk.commit()?)
    }

    fn bulk_abort(&mut self) {
        // The abort frame makes the parts written so far dead.
        if let Some(b) = self.bulk.take() {
            b.abort();
        }
    }

    fn read(&mut self, q: &Query) -> anyhow::Result<Page> {
        batpak_service::read(self.store()?, q, &|| false).map_err(|e| anyhow::anyhow!(e.message))
    }

    fn verify(&mut self) -> anyhow::Result<Value> {
        // Read-only, as without an open store: the report says what an
        // open would do.
        let report = batpak_store::verify_dir(&self.dir)?;
        Ok(batpak_service::verify_json(&report))
    }

    fn parked(&mut self, plugin: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let list = match &self.store {
            Some(store) => batpak_runtime::parked_events(store, plugin)?,
            // Held by a `run` that serves no socket: the segments, lock-free.
            None => {
                let mut reader = batpak_store::LogReader::open(&self.dir)?;
                let mut set = batpak_runtime::ParkedSet::new(plugin);
                loop {
                    let events = reader.poll(64 << 20)?;
                    if events.is_empty() {
                        break;
                    }
                    events.iter().for_each(|e| set.add(e));
                }
                set.into_vec()
            }
        };
        Ok(list
            .iter()
            .map(|p| serde_json::to_value(ParkedLine::from(p)).unwrap_or(Value::Null))
            .collect())
    }

    fn parked_replay(
        &mut self,
        plugin: Option<&str>,
        event: Option<EventId>,
    ) -> anyhow::Result<Vec<Value>> {
        let made = batpak_runtime::request_replay(self.store()?, plugin, event)?;
        Ok(made
            .iter()
            .map(|(id, p)| {
                serde_json::to_value(ReplayRequestedLine::new(*id, p)).unwrap_or(Value::Null)
            })
            .collect())
    }

    fn close(mut self: Box<Self>) -> anyhow::Result<()> {
        self.bulk_abort();
        match self.store.take() {
            Some(s) => Ok(s.close()?),
            None => Ok(()),
        }
    }
}

/// The receipts of an append reply (`{"receipts": [...]}`).
fn receipts(mut reply: Value) -> Vec<Value> {
    match reply.get_mut("receipts").map(Value::take) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

/// A host's refusal as the same message a local store gives (the host ran
/// the same function); other failures say they were the connection's.
fn remote(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Remote(w) => anyhow::anyhow!(w.message),
        e => e.into(),
    }
}

impl StoreAccess for Client {
    fn served_by(&self) -> Option<&'static str> {
        Some("the running host")
    }

    fn append(&mut self, events: Vec<NewEvent>) -> anyhow::Result<Vec<Value>> {
        Client::append(self, events).map_err(remote)
    }

    fn check_all(
        &mut self,
        pass: &mut dyn FnMut(&mut Checker<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        pass(&mut |_: &Proposal| Ok(()))
    }

    fn bulk_part(&mut self, events: Vec<NewEvent>) -> Result<Vec<String>, PartRefused> {
        Client::bulk_part(self, events)
            .map(|rs| rs.iter().map(Value::to_string).collect())
            .map_err(|e| match e {
                ClientError::Remote(w) => PartRefused::Refused(w.message),
                e => PartRefused::Failed(e.into()),
            })
    }

    fn bulk_commit(&mut self) -> anyhow::Result<u64> {
        Client::bulk_commit(self).map_err(|e| anyhow::anyhow!("committing: {e}"))
    }

    fn bulk_abort(&mut self) {
        // The host abandons a transaction whose connection closes: the
        // caller closes (drops) this client next.
    }

    fn read(&mut self, q: &Query) -> anyhow::Result<Page> {
        Client::read(self, q).map_err(remote)
    }

    fn verify(&mut self) -> anyhow::Result<Value> {
        Client::verify(self).map_err(remote)
    }

    fn parked(&mut self, plugin: Option<&str>) -> anyhow::Result<Vec<Value>> {
        Client::parked(self, plugin).map_err(remote)
    }

    fn parked_replay(
        &mut self,
        plugin: Option<&str>,
        event: Option<EventId>,
    ) -> anyhow::Result<Vec<Value>> {
        let event = event.map(|e| e.to_string());
        Client::parked_replay(self, plugin, event.as_deref()).map_err(remote)
    }

    fn close(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}
