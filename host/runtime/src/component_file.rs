//! Reading a plugin file: only a regular file, only up to a size limit —
//! both checked before the first byte is read, so `/dev/zero` or a FIFO is
//! refused at once instead of being read until the kernel kills the host —
//! then a binary component or component text (`.wat`), and a scan of its
//! structure for what the host refuses before compiling it (too many
//! memories or tables, component-model async).

use super::load_error::LoadError;
use std::io::Read;
use std::path::Path;

/// Reads `path` as a component: a binary, or component text (`.wat`).
pub(crate) fn read_component(path: &Path, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
    let p = || path.to_path_buf();
    // `metadata` (not `open`) first: opening a FIFO blocks until a writer
    // appears.
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound { path: p() },
        _ => LoadError::Unreadable {
            path: p(),
            source: e,
        },
    })?;
    check_regular(path, &meta, max_bytes)?;
    let file = std::fs::File::open(path).map_err(|e| LoadError::Unreadable {
        path: p(),
        source: e,
    })?;
    // The path may have been replaced between the two calls: check what was
    // opened, and never read past the limit whatever it claims.
    let meta = file.metadata().map_err(|e| LoadError::Unreadable {
        path: p(),
        source: e,
    })?;
    check_regular(path, &meta, max_bytes)?;
    let mut raw = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|e| LoadError::Unreadable {
            path: p(),
            source: e,
        })?;
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

fn check_regular(path: &Path, meta: &std::fs::Metadata, max: u64) -> Result<(), LoadError> {
    let ft = meta.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(LoadError::NotRegularFile {
            path: path.to_path_buf(),
            what,
        });
    }
    if meta.len() > max {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit: max,
        });
    }
    Ok(())
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
