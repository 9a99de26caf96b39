//! Reading a plugin file: only a regular file, only up to a size limit —
//! both checked before the first byte is read, so `/dev/zero` or a FIFO is
//! refused at once instead of being read until the kernel kills the host —
//! then a binary component or component text (`.wat`), and a scan of its
//! structure for what the host refuses before compiling it (too many
//! memories or tables, component-model async).

use super::load_error::LoadError;
use super::regular_file::{open_regular, FileRefusal};
use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

/// A plugin file opened and checked (a regular file within the size
/// limit), nothing read yet: its metadata is what the file records
/// ([`super::file_record`]) compare, and its bytes, when they are needed,
/// are read from this very descriptor.
pub(crate) struct OpenedComponent {
    pub(crate) file: File,
    pub(crate) meta: Metadata,
}

fn refusal(path: &Path, e: FileRefusal) -> LoadError {
    let p = || path.to_path_buf();
    match e {
        FileRefusal::NotFound { .. } => LoadError::NotFound { path: p() },
        FileRefusal::Unreadable { source, .. } => LoadError::Unreadable { path: p(), source },
        FileRefusal::NotRegular { what, .. } => LoadError::NotRegularFile { path: p(), what },
        FileRefusal::TooLarge { size, limit, .. } => LoadError::TooLarge {
            path: p(),
            size,
            limit,
        },
    }
}

/// Opens `path` once and checks it on the descriptor ([`open_regular`]),
/// so a path renamed meanwhile cannot slip a FIFO or a device past the
/// check.
pub(crate) fn open_component(path: &Path, max_bytes: u64) -> Result<OpenedComponent, LoadError> {
    let (file, _) = open_regular(path, max_bytes).map_err(|e| refusal(path, e))?;
    let meta = file.metadata().map_err(|source| LoadError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(OpenedComponent { file, meta })
}

/// Reads an opened file as a component: a binary, or component text
/// (`.wat`). Never reads more than `max_bytes + 1` bytes, even from a
/// file that grows meanwhile.
pub(crate) fn read_opened(
    opened: &OpenedComponent,
    path: &Path,
    max_bytes: u64,
) -> Result<Vec<u8>, LoadError> {
    let p = || path.to_path_buf();
    let mut raw = Vec::with_capacity(opened.meta.len() as usize);
    (&opened.file)
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|source| LoadError::Unreadable { path: p(), source })?;
    if raw.len() as u64 > max_bytes {
        return Err(LoadError::TooLarge {
            path: p(),
            size: raw.len() as u64,
            limit: max_bytes,
        });
    }
    let bytes = if raw.starts_with(b"\0asm") {
        raw
    } else {
        match std::str::from_utf8(&raw) {
            Ok(text)
                if text.trim_start().starts_with('(') || text.trim_start().starts_with(";;") =>
            {
                wat::parse_str(text).map_err(|e| LoadError::BadText {
                    path: p(),
                    message: e.to_string(),
                })?
            }
            _ => return Err(LoadError::NotWasm { path: p() }),
        }
    };
    if bytes.len() < 8 {
        return Err(LoadError::Truncated {
            path: p(),
            len: bytes.len(),
        });
    }
    match [bytes[4], bytes[5], bytes[6], bytes[7]] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(bytes),
        [0x01, 0x00, 0x00, 0x00] => Err(LoadError::CoreModule { path: p() }),
        v => Err(LoadError::UnsupportedLayer {
            path: p(),
            bytes: v,
        }),
    }
}

/// `batpak:reactor@<version>` as named by the first `batpak:reactor/...@`
/// interface name in a component's bytes (binary or text): how a file
/// that wasmtime cannot compile still says which contract it was built for.
pub(crate) fn targeted_wit(bytes: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = b"batpak:reactor/";
    let at = bytes.windows(NEEDLE.len()).position(|w| w == NEEDLE)?;
    let rest = &bytes[at + NEEDLE.len()..];
    let name_end = rest.iter().position(|&b| b == b'@')?;
    if name_end > 64
        || !rest[..name_end]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    {
        return None;
    }
    let version: Vec<u8> = rest[name_end + 1..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b'-' || **b == b'+')
        .copied()
        .take(64)
        .collect();
    if version.is_empty() {
        return None;
    }
    Some(format!(
        "batpak:reactor@{}",
        String::from_utf8_lossy(&version)
    ))
}

/// What the structure scan found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Structure {
    /// Linear memories defined (not imported) by all core modules.
    pub(crate) memories: usize,
    /// Tables defined (not imported) by all core modules.
    pub(crate) tables: usize,
    /// The first component-model async feature used, if any.
    pub(crate) async_feature: Option<String>,
}

/// Scans a component's sections (without validating or compiling it).
/// A malformed binary scans as far as it parses; wasmtime reports the rest.
pub(crate) fn scan(bytes: &[u8]) -> Structure {
    use wasmparser::{CanonicalFunction, CanonicalOption, Payload};
    let mut s = Structure::default();
    let async_opt = |opts: &[CanonicalOption]| {
        opts.iter()
            .any(|o| matches!(o, CanonicalOption::Async | CanonicalOption::Callback(_)))
    };
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        match payload {
            Payload::MemorySection(r) => s.memories += r.count() as usize,
            Payload::TableSection(r) => s.tables += r.count() as usize,
            Payload::ComponentCanonicalSection(r) if s.async_feature.is_none() => {
                for f in r.into_iter().flatten() {
                    let feature = match &f {
                        CanonicalFunction::Lift { options, .. }
                        | CanonicalFunction::Lower { options, .. } => {
                            async_opt(options).then(|| "an async lift or lower".to_string())
                        }
                        CanonicalFunction::ResourceNew { .. }
                        | CanonicalFunction::ResourceDrop { .. }
                        | CanonicalFunction::ResourceRep { .. } => None,
                        other => Some(canon_name(other)),
                    };
                    if feature.is_some() {
                        s.async_feature = feature;
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    s
}

/// `TaskCancel` → `task.cancel`, the name the component model spec uses.
fn canon_name(f: &wasmparser::CanonicalFunction) -> String {
    let dbg = format!("{f:?}");
    let head = dbg.split([' ', '{', '(']).next().unwrap_or("");
    let mut out = String::new();
    for (i, c) in head.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('.');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Opens and reads `path` as a component ([`open_component`], then
/// [`read_opened`]).
#[cfg(test)]
pub(crate) fn read_component(path: &Path, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
    read_opened(&open_component(path, max_bytes)?, path, max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_counts_memories_and_tables_of_nested_modules() {
        let bytes = wat::parse_str(
            r#"(component
                 (core module $a (memory 1) (memory 1) (table 1 funcref))
                 (core module $b (import "x" "m" (memory 1)) (table 2 funcref) (table 2 funcref)))"#,
        )
        .unwrap();
        let s = scan(&bytes);
        assert_eq!((s.memories, s.tables), (2, 3));
        assert_eq!(s.async_feature, None);
    }

    #[test]
    fn the_targeted_wit_version_is_read_from_the_interface_names() {
        assert_eq!(
            targeted_wit(b"..\x1abatpak:reactor/reactor@0.9.0\x00.."),
            Some("batpak:reactor@0.9.0".into())
        );
        assert_eq!(
            targeted_wit(b"(import \"batpak:reactor/types@0.1.0\" (instance"),
            Some("batpak:reactor@0.1.0".to_string())
        );
        assert_eq!(targeted_wit(b"\0asm garbage"), None);
    }

    #[test]
    fn files_over_the_limit_are_refused_before_reading() {
        let dir = std::env::temp_dir().join(format!("bpk-cf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("big.wasm");
        // Sparse: the size is checked from metadata, nothing is read.
        std::fs::File::create(&f).unwrap().set_len(1 << 30).unwrap();
        let e = read_component(&f, 1 << 20).unwrap_err();
        assert!(
            matches!(e, LoadError::TooLarge { size, limit, .. } if size == 1 << 30 && limit == 1 << 20)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn async_builtins_are_found_and_named() {
        let bytes = wat::parse_str("(component (core func (canon task.cancel)))").unwrap();
        assert_eq!(scan(&bytes).async_feature.as_deref(), Some("task.cancel"));
    }

    #[test]
    fn fifo_and_devices_are_refused_before_reading() {
        let e = read_component(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(matches!(
            e,
            LoadError::NotRegularFile {
                what: "a character device",
                ..
            }
        ));
        let dir = std::env::temp_dir();
        let e = read_component(&dir, 1 << 20).unwrap_err();
        assert!(matches!(
            e,
            LoadError::NotRegularFile {
                what: "a directory",
                ..
            }
        ));
    }
}
