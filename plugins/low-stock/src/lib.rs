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

#[cfg(test)]
mod tests {
    use super::*;
    use batpak_guest::{testing, Denial, Level, Verdict};
    use serde_json::json;

    fn reserved(sku: &str, remaining: u64) -> batpak_guest::StoredEvent {
        let payload = json!({"order": "order:1", "sku": sku, "qty": 1, "remaining": remaining});
        testing::append(
            &format!("sku:{sku}"),
            "shop",
            "inventory.reserved",
            payload.to_string(),
        )
    }

    #[test]
    fn alerts_at_threshold_and_requests_restock_at_zero() {
        let mut r = LowStock::init(r#"{"threshold": 2}"#).unwrap();
        let batch = testing::batch(&[reserved("a", 3), reserved("a", 2), reserved("b", 0)]);
        let out = testing::react(&mut r, &batch).unwrap();
        let kinds: Vec<_> = out.iter().map(|p| (p.source, p.kind.as_str())).collect();
        assert_eq!(kinds, vec![(1, ALERT), (2, ALERT), (2, RESTOCK)]);
        assert_eq!(out[2].coordinate.entity, "sku:b");
        let restock: serde_json::Value = serde_json::from_slice(&out[2].payload).unwrap();
        assert_eq!(restock, json!({"sku": "b", "qty": 10}));
    }

    #[test]
    fn logs_the_denial_of_its_previous_output() {
        let mut r = LowStock::init("{}").unwrap();
        testing::set_gate(|p| {
            if p.kind == RESTOCK {
                Verdict::Denied(Denial {
                    gate: "capability".into(),
                    code: "kind-not-granted".into(),
                    message: "not granted".into(),
                })
            } else {
                Verdict::Allowed
            }
        });
        let batch = testing::batch(&[reserved("a", 0)]);
        let out = testing::react(&mut r, &batch).unwrap();
        assert_eq!(testing::commit(&batch, &out).len(), 1);
        let batch = testing::batch(&[reserved("c", 9)]);
        testing::react(&mut r, &batch).unwrap();
        let warns: Vec<_> = testing::logs()
            .into_iter()
            .filter(|(l, _)| *l == Level::Warn)
            .collect();
        assert_eq!(warns.len(), 1);
        assert!(warns[0].1.contains("kind-not-granted"), "{warns:?}");
    }
}
