//! A simulated disk for crash and fault tests: it remembers what was synced
//! and can lose power (un-synced writes dropped or torn at a random byte,
//! un-synced directory changes undone) or fail one chosen operation with
//! EIO or ENOSPC.

use super::disk::{Disk, DiskFile};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An operation a [`SimDisk`] can be told to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimOp {
    /// [`DiskFile::write_all_at`] (a random prefix of the bytes is written).
    Write,
    /// [`DiskFile::sync`].
    Sync,
    /// [`Disk::rename`].
    Rename,
    /// [`Disk::sync_dir`].
    SyncDir,
    /// [`DiskFile::read_exact_at`] (nothing is read).
    Read,
}

/// The error an injected fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// `EIO`.
    Eio,
    /// `ENOSPC`.
    Enospc,
    /// Not an error: the calling thread panics (tests the store's threads'
    /// panic safety net).
    Panic,
}

impl SimError {
    fn to_io(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            SimError::Eio => 5,
            SimError::Enospc => 28,
            SimError::Panic => panic!("simulated panic inside a disk operation"),
        })
    }
}

#[derive(Debug, Default)]
struct Node {
    current: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct World {
    /// The namespace as the running process sees it.
    names: BTreeMap<PathBuf, Arc<Mutex<Node>>>,
    /// The namespace as of the last directory sync, per entry.
    durable_names: BTreeMap<PathBuf, Arc<Mutex<Node>>>,
    dirs: std::collections::BTreeSet<PathBuf>,
    /// (operation, how many more of them succeed, error)
    fault: Option<(SimOp, u64, SimError)>,
    faults_fired: u64,
    rng: u64,
}

/// A disk in memory that knows what is durable. Cheap to clone (clones share
/// the disk). Handles opened before a [`SimDisk::power_cut`] fail with EIO
/// afterwards, as a dead process's would.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    world: Arc<Mutex<World>>,
    generation: Arc<AtomicU64>,
}

#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    node: Arc<Mutex<Node>>,
    generation: u64,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl World {
    /// Counts down an armed fault for `op`; true when this call must fail.
    fn trips(&mut self, op: SimOp) -> Option<SimError> {
        match &mut self.fault {
            Some((o, left, err)) if *o == op => {
                if *left == 0 {
                    let e = *err;
                    self.fault = None;
                    self.faults_fired += 1;
                    Some(e)
                } else {
                    *left -= 1;
                    None
                }
            }
            _ => None,
        }
    }
}

impl SimDisk {
    /// An empty disk whose random choices (where a write tears) follow `seed`.
    pub fn new(seed: u64) -> SimDisk {
        let d = SimDisk::default();
        d.world.lock().rng = seed;
        d
    }

    /// Makes the `after`-th next `op` (0 = the very next) fail with `error`.
    pub fn fail(&self, op: SimOp, after: u64, error: SimError) {
        self.world.lock().fault = Some((op, after, error));
    }

    /// How many injected faults have fired so far.
    pub fn faults_fired(&self) -> u64 {
        self.world.lock().faults_fired
    }

    /// Loses power: every file keeps what was synced, and of what was
    /// written since, a random prefix survives (dropped, torn at a random
    /// byte, or kept whole); directory changes not synced are undone. Every
    /// handle opened before fails from now on.
    pub fn power_cut(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut w = self.world.lock();
        w.fault = None;
        let durable = w.durable_names.clone();
        let mut rng = w.rng;
        for node in durable.values() {
            let mut n = node.lock();
            let common = n
                .current
                .iter()
                .zip(n.durable.iter())
                .take_while(|(a, b)| a == b)
                .count();
            let len = n.current.len();
            let keep = if len > common {
                common + (splitmix(&mut rng) % (len - common + 1) as u64) as usize
            } else {
                common
            };
            let mut after = n.current[..keep].to_vec();
            if n.durable.len() > keep {
                after.extend_from_slice(&n.durable[keep..]);
            }
            n.current = after.clone();
            n.durable = after;
        }
        w.rng = rng;
        w.names = durable;
    }

    /// A file's current bytes, for tests that damage or inspect it.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let w = self.world.lock();
        w.names.get(path).map(|n| n.lock().current.clone())
    }

    /// Replaces a file's bytes durably (test damage).
    pub fn write_file(&self, path: &Path, bytes: &[u8]) {
        let mut w = self.world.lock();
        let node = w.names.entry(path.to_path_buf()).or_default().clone();
        w.durable_names.insert(path.to_path_buf(), node.clone());
        let mut n = node.lock();
        n.current = bytes.to_vec();
        n.durable = bytes.to_vec();
    }

    fn file(&self, node: Arc<Mutex<Node>>) -> Arc<dyn DiskFile> {
        Arc::new(SimFile {
            disk: self.clone(),
            node,
            generation: self.generation.load(Ordering::Acquire),
        })
    }
}

fn lost_power() -> io::Error {
    io::Error::other("simulated disk: this handle died with the power")
}

impl SimFile {
    fn alive(&self) -> io::Result<()> {
        if self.disk.generation.load(Ordering::Acquire) == self.generation {
            Ok(())
        } else {
            Err(lost_power())
        }
    }
}

impl DiskFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.alive()?;
        Ok(self.node.lock().current.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.alive()?;
        if let Some(e) = self.disk.world.lock().trips(SimOp::Read) {
            return Err(e.to_io());
        }
        let n = self.node.lock();
        let start = offset as usize;
        let src = n
            .current
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.alive()?;
        let mut w = self.disk.world.lock();
        let fault = w.trips(SimOp::Write);
        if fault == Some(SimError::Panic) {
            drop(w);
            panic!("simulated panic inside a disk write");
        }
        let take = match fault {
            Some(_) => (splitmix(&mut w.rng) % (buf.len() as u64 + 1)) as usize,
            None => buf.len(),
        };
        drop(w);
        // Liveness is checked again under the node lock: a power cut takes
        // every node lock after marking old handles dead, so a write either
        // lands before the cut (and is then un-synced) or not at all.
        let mut n = self.node.lock();
        self.alive()?;
        let end = offset as usize + take;
        if n.current.len() < end {
            n.current.resize(end, 0);
        }
        n.current[offset as usize..end].copy_from_slice(&buf[..take]);
        match fault {
            Some(e) => Err(e.to_io()),
            None => Ok(()),
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut n = self.node.lock();
        self.alive()?;
        n.current.resize(len as usize, 0);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        self.alive()?;
        if let Some(e) = self.disk.world.lock().trips(SimOp::Sync) {
            return Err(e.to_io());
        }
        let mut n = self.node.lock();
        self.alive()?;
        n.durable = n.current.clone();
        Ok(())
    }
}

impl Disk for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut w = self.world.lock();
        for a in dir.ancestors() {
            w.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let w = self.world.lock();
        if !w.dirs.contains(dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(w.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let node = self
            .world
            .lock()
            .names
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(self.file(node))
    }
    fn create(&self, path: &Path, replace: bool) -> io::Result<Arc<dyn DiskFile>> {
        let mut w = self.world.lock();
        if !replace && w.names.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let node = Arc::new(Mutex::new(Node::default()));
        w.names.insert(path.to_path_buf(), node.clone());
        drop(w);
        Ok(self.file(node))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut w = self.world.lock();
        if let Some(e) = w.trips(SimOp::Rename) {
            return Err(e.to_io());
        }
        let node = w
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        w.names.insert(to.to_path_buf(), node);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut w = self.world.lock();
        w.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut w = self.world.lock();
        if let Some(e) = w.trips(SimOp::SyncDir) {
            return Err(e.to_io());
        }
        let now: Vec<(PathBuf, Arc<Mutex<Node>>)> = w
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        w.durable_names.retain(|p, _| p.parent() != Some(dir));
        w.durable_names.extend(now);
        Ok(())
    }
}
