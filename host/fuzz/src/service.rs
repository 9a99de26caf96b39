//! One running service for the whole fuzz process: a store in a private
//! temporary directory (in /dev/shm when there is one, so appends cost no
//! disk flush), its control socket, and HTTP on a loopback port with a
//! known token, which the seeds carry.

use batpak_service::{
    OpError, Operator, ReactorState, ResetOutcome, ResetTo, Service, ServiceOptions,
};
use batpak_store::{EventId, Store};
use serde_json::Value;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The bearer token the fuzzed HTTP service accepts.
pub(crate) const TOKEN: &str = "fuzz-token-0123456789abcdef";

/// How long a request may take before the client gives up on it (a read
/// may legitimately wait for new events up to `MAX_WAIT_MS`; giving up is
/// not a finding, and the server must cope with the client leaving).
pub(crate) const PATIENCE: Duration = Duration::from_secs(2);

pub(crate) struct Fixture {
    pub(crate) http: SocketAddr,
    pub(crate) socket: PathBuf,
    _service: Service,
    _store: Store,
}

/// No reactors: every operation is refused the way a host without them
/// refuses it.
struct NoReactors;

impl Operator for NoReactors {
    fn status(&self) -> Vec<ReactorState> {
        Vec::new()
    }
    fn pause(&self, name: &str) -> Result<ReactorState, OpError> {
        Err(OpError::NoSuchReactor(name.into()))
    }
    fn resume(&self, name: &str) -> Result<ReactorState, OpError> {
        Err(OpError::NoSuchReactor(name.into()))
    }
    fn reset(&self, name: &str, _: ResetTo) -> Result<ResetOutcome, OpError> {
        Err(OpError::NoSuchReactor(name.into()))
    }
    fn parked(&self, _: Option<&str>) -> Result<Vec<Value>, OpError> {
        Ok(Vec::new())
    }
    fn parked_replay(&self, _: Option<&str>, _: Option<EventId>) -> Result<Vec<Value>, OpError> {
        Ok(Vec::new())
    }
}

/// The fixture's directory, removed when the process exits.
static DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_dir() {
    if let Some(dir) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Removes the directories of fuzz processes that are gone (killed before
/// their exit handler ran).
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("batpak-fuzz-")) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn private_dir(parent: &Path) -> PathBuf {
    remove_stale(parent);
    let dir = parent.join(format!("batpak-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the fuzz store's directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .expect("making the fuzz store's directory private");
    if DIR.set(dir.clone()).is_ok() {
        // SAFETY: registers a plain function to run at exit.
        unsafe {
            libc::atexit(remove_dir);
        }
    }
    dir
}

/// The process's service, started on first use.
pub(crate) fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // libFuzzer's main is not Rust's: a write to a peer that left must
        // be an error, not a SIGPIPE that ends the process.
        // SAFETY: setting a signal's disposition to ignore, before any
        // thread of ours runs.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        let shm = PathBuf::from("/dev/shm");
        let root = private_dir(&if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        });
        let token = root.join("token");
        std::fs::write(&token, TOKEN).expect("writing the token file");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))
            .expect("making the token file private");
        let data = root.join("data");
        let store = Store::open(&data).expect("opening the fuzz store");
        let service = Service::start(
            &store,
            std::sync::Arc::new(NoReactors),
            ServiceOptions {
                listen: Some("127.0.0.1:0".parse().expect("an address")),
                token_file: Some(token),
            },
        )
        .expect("starting the fuzz service");
        Fixture {
            http: service.http_addr().expect("HTTP is on"),
            socket: service
                .socket_path()
                .expect("a service over a store has a socket")
                .to_path_buf(),
            _service: service,
            _store: store,
        }
    })
}
