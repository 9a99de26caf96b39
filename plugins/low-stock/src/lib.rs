//! `low-stock`: raises alerts when a reservation leaves little stock.
//!
//! Consumes `inventory.reserved` (`{"order", "sku", "qty", "remaining"}`).
//! When `remaining <= threshold` it emits `alert.low-stock` on entity
//! `sku:<sku>` with `{"sku", "remaining"}`; when `remaining == 0` it also
//! proposes `inventory.restock-requested` with `{"sku", "qty"}`. The demo's
//! operator config does not grant that kind, so the host's capability gate
//! denies it; the next `react` call reads the denial back through
//! `host::last_verdicts` and logs it.
//!
//! Config: `{"threshold": 3, "restock_qty": 10}` (both optional).

use batpak_guest::{host, Batch, Descriptor, Output, ReactError, Reactor};
use serde::{Deserialize, Serialize};

const ALERT: &str = "alert.low-stock";
const RESTOCK: &str = "inventory.restock-requested";

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    threshold: u64,
    restock_qty: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threshold: 3,
            restock_qty: 10,
        }
    }
}

#[derive(Deserialize)]
struct Reserved {
    sku: String,
    remaining: u64,
}

#[derive(Serialize)]
struct Alert<'a> {
    sku: &'a str,
    remaining: u64,
}

#[derive(Serialize)]
struct Restock<'a> {
    sku: &'a str,
    qty: u64,
}

struct LowStock {
    config: Config,
}

impl Reactor for LowStock {
    fn describe() -> Descriptor {
        Descriptor::new("low-stock", env!("CARGO_PKG_VERSION"))
            .consumes(["inventory.reserved"])
            .emits([ALERT, RESTOCK])
    }

    fn init(config: &str) -> Result<Self, String> {
        Ok(LowStock {
            config: batpak_guest::parse_config(config)?,
        })
    }

    fn react(&mut self, batch: &Batch, out: &mut Output) -> Result<(), ReactError> {
        for verdict in host::last_verdicts() {
            if let Some(denial) = verdict.verdict.denial() {
                batpak_guest::warn!(
                    "my proposal {} was denied by the {} gate ({}): {}",
                    verdict.proposal,
                    denial.gate,
                    denial.code,
                    denial.message
                );
            }
        }

        for event in batch.events() {
            let reserved: Reserved = event.json().map_err(|e| {
                ReactError::at(&event, format!("unreadable inventory.reserved: {e}"))
            })?;
            if reserved.remaining > self.config.threshold {
                continue;
            }
            let entity = format!("sku:{}", reserved.sku);
            let alert = Alert {
                sku: &reserved.sku,
                remaining: reserved.remaining,
            };
            out.emit_json(&event, entity.as_str(), event.scope(), ALERT, &alert)?;
            if reserved.remaining == 0 {
                let restock = Restock {
                    sku: &reserved.sku,
                    qty: self.config.restock_qty,
                };
                out.emit_json(&event, entity, event.scope(), RESTOCK, &restock)?;
            }
        }
        Ok(())
    }
}

batpak_guest::export_reactor!(LowStock);
