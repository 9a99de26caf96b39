//! `verify`, once for a local store and a running host: the report (as
//! [`batpak_service::verify_json`] shapes it) printed as one JSON line,
//! what the next open would cut or drop, and the verdict, over
//! [`StoreAccess`]. Without a host the store is read without being opened:
//! no lock, nothing written or repaired.

use crate::store_commands::access::{LocalStore, StoreAccess};
use batpak_service::Client;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// `verify` on the store in `data` (by the host running on it when there
/// is one): the report as one JSON line on `out`, what it means on
/// stderr. Exit 1 when it is not sound.
///
/// # Errors
/// No store in `data`, or the check could not run.
pub fn verify(data: &Path, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut access: Box<dyn StoreAccess> = match Client::connect(data)? {
        Some(c) => Box::new(c),
        None => {
            if !data.join("segments").is_dir() {
                anyhow::bail!(
                    "{} holds no store (no segments directory); check --data",
                    data.display()
                );
            }
            Box::new(LocalStore::read_only(data))
        }
    };
    let by = access
        .served_by()
        .map(|h| format!(" (checked by {h})"))
        .unwrap_or_default();
    let r = access.verify()?;
    access.close()?;
    writeln!(out, "{r}")?;
    let at = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let tail = &r["torn_tail_to_cut"];
    if tail.is_object() {
        eprintln!(
            "verify: the log ends with a torn write of {} byte(s) at segment {:08} offset {}, never acknowledged as durable; the next open cuts it and records a {} event",
            at(tail, "bytes"),
            at(tail, "segment"),
            at(tail, "offset"),
            batpak_store::RECOVERED_KIND
        );
    }
    let txn = &r["uncommitted_transaction_to_drop"];
    if txn.is_object() {
        eprintln!(
            "verify: the log ends with a bulk append of {} event(s) at segment {:08} offset {} that never committed (its writer stopped); the next open drops all of it and records a {} event",
            at(txn, "events"),
            at(txn, "segment"),
            at(txn, "offset"),
            batpak_store::RECOVERED_KIND
        );
    }
    if r["sound"].as_bool() == Some(true) {
        eprintln!(
            "verify: sound — {} events in {} frames across {} segment(s){by}",
            r["events"], r["frames"], r["segments"]
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in r["problems"].as_array().into_iter().flatten() {
            eprintln!("verify: {}", p.as_str().unwrap_or_default());
        }
        Ok(ExitCode::FAILURE)
    }
}
