//! `inventory`: reserves stock for placed orders.
//!
//! Consumes `order.placed` (entity `order:<id>`, JSON `{"sku", "qty"}`).
//! When enough stock is left it emits `inventory.reserved` on entity
//! `sku:<sku>` with `{"order", "sku", "qty", "remaining"}`; otherwise (and for
//! malformed orders) `inventory.rejected` on the order's entity with
//! `{"order", "sku", "qty", "available", "reason"}`.
//!
//! Config: `{"stock": {"widget": 10, ...}}` is the total stock ever received
//! per sku (default widget 10, gadget 5, gizmo 2). What remains is that
//! minus every `inventory.reserved` already in the log for the sku, read once
//! per instance with `host::entity_events` and cached in memory after that,
//! so the count survives restarts.

use batpak_guest::{host, Batch, Descriptor, EventRef, Output, ReactError, Reactor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const RESERVED: &str = "inventory.reserved";
const REJECTED: &str = "inventory.rejected";

#[derive(Deserialize, Default)]
struct Config {
    stock: Option<BTreeMap<String, u64>>,
}

/// The payload of `order.placed`.
#[derive(Deserialize)]
struct Order {
    sku: String,
    qty: u64,
}

/// The payload of `inventory.reserved` (also read back from the log).
#[derive(Serialize, Deserialize)]
struct Reserved {
    order: String,
    sku: String,
    qty: u64,
    remaining: u64,
}

#[derive(Serialize)]
struct Rejected<'a> {
    order: &'a str,
    sku: Option<&'a str>,
    qty: Option<u64>,
    available: u64,
    reason: &'a str,
}

struct Inventory {
    /// Total stock per sku, from config.
    stock: BTreeMap<String, u64>,
    /// Remaining stock per sku seen by this instance, including reservations
    /// proposed earlier in the current batch.
    remaining: BTreeMap<String, u64>,
    /// Sequence of the last event handled, to spot a redelivered batch.
    last_sequence: u64,
}

impl Inventory {
    /// Remaining stock of `sku`: from the cache, or rebuilt from the log.
    fn remaining(&mut self, sku: &str) -> u64 {
        if let Some(&left) = self.remaining.get(sku) {
            return left;
        }
        let total = self.stock.get(sku).copied().unwrap_or(0);
        let reserved: u64 = host::entity_events(&sku_entity(sku), 0)
            .filter(|e| e.kind == RESERVED)
            .filter_map(|e| match e.json::<Reserved>() {
                Ok(r) => Some(r.qty),
                Err(err) => {
                    batpak_guest::warn!("unreadable {RESERVED} event {}: {err}", e.id);
                    None
                }
            })
            .sum();
        let left = total.saturating_sub(reserved);
        batpak_guest::debug!("sku {sku}: stock {total}, reserved {reserved}, remaining {left}");
        self.remaining.insert(sku.to_owned(), left);
        left
    }

    fn handle(&mut self, event: &EventRef<'_>, out: &mut Output) -> Result<(), ReactError> {
        let order_entity = event.entity();
        let order = match event.json::<Order>() {
            Ok(order) if order.qty > 0 && valid_sku(&order.sku) => order,
            Ok(_) | Err(_) => {
                batpak_guest::warn!("malformed order on {order_entity} (event {})", event.id());
                let rejected = Rejected {
                    order: order_entity,
                    sku: None,
                    qty: None,
                    available: 0,
                    reason: "malformed order",
                };
                out.emit_json(event, order_entity, event.scope(), REJECTED, &rejected)?;
                return Ok(());
            }
        };

        let known = self.stock.contains_key(&order.sku);
        let available = if known { self.remaining(&order.sku) } else { 0 };
        if !known || available < order.qty {
            let rejected = Rejected {
                order: order_entity,
                sku: Some(&order.sku),
                qty: Some(order.qty),
                available,
                reason: if known {
                    "insufficient stock"
                } else {
                    "unknown sku"
                },
            };
            out.emit_json(event, order_entity, event.scope(), REJECTED, &rejected)?;
            return Ok(());
        }

        let remaining = available - order.qty;
        self.remaining.insert(order.sku.clone(), remaining);
        let reserved = Reserved {
            order: order_entity.to_owned(),
            sku: order.sku.clone(),
            qty: order.qty,
            remaining,
        };
        out.emit_json(
            event,
            sku_entity(&order.sku),
            event.scope(),
            RESERVED,
            &reserved,
        )?;
        Ok(())
    }
}

fn sku_entity(sku: &str) -> String {
    format!("sku:{sku}")
}

/// A sku must make a valid entity name `sku:<sku>`.
fn valid_sku(sku: &str) -> bool {
    sku.len() <= 64 && batpak_guest::is_valid_coordinate_part(sku)
}

impl Reactor for Inventory {
    fn describe() -> Descriptor {
        Descriptor::new("inventory", env!("CARGO_PKG_VERSION"))
            .consumes(["order.placed"])
            .emits([RESERVED, REJECTED])
    }

    fn init(config: &str) -> Result<Self, String> {
        let config: Config = batpak_guest::parse_config(config)?;
        let stock = config.stock.unwrap_or_else(|| {
            [("widget", 10), ("gadget", 5), ("gizmo", 2)]
                .into_iter()
                .map(|(sku, n)| (sku.to_owned(), n))
                .collect()
        });
        Ok(Inventory {
            stock,
            remaining: BTreeMap::new(),
            last_sequence: 0,
        })
    }

    fn react(&mut self, batch: &Batch, out: &mut Output) -> Result<(), ReactError> {
        // The cache assumes every reservation proposed so far was appended.
        // If the gates denied one, or this batch is a redelivery (its output
        // was never committed), rebuild the cache from the log.
        let denied = host::last_denials();
        let redelivered = batch
            .events()
            .next()
            .is_some_and(|first| first.sequence() <= self.last_sequence);
        if !denied.is_empty() || redelivered {
            for (index, denial) in &denied {
                batpak_guest::warn!("proposal {index} of the previous batch was denied: {denial}");
            }
            self.remaining.clear();
        }

        for event in batch.events() {
            if let Err(err) = self.handle(&event, out) {
                // The output is discarded: forget what it assumed.
                self.remaining.clear();
                return Err(err);
            }
            self.last_sequence = event.sequence();
        }
        Ok(())
    }
}

batpak_guest::export_reactor!(Inventory);

#[cfg(test)]
mod tests {
    use super::*;
    use batpak_guest::testing;
    use serde_json::{json, Value};

    fn order(id: u32, sku: &str, qty: u64) -> batpak_guest::StoredEvent {
        let payload = json!({"sku": sku, "qty": qty}).to_string();
        testing::append(&format!("order:{id}"), "shop", "order.placed", payload)
    }

    fn payload(p: &batpak_guest::Proposal) -> Value {
        serde_json::from_slice(&p.payload).unwrap()
    }

    #[test]
    fn reserves_until_stock_runs_out_within_one_batch() {
        let mut inv = Inventory::init(r#"{"stock": {"gadget": 3}}"#).unwrap();
        let batch = testing::batch(&[
            order(1, "gadget", 2),
            order(2, "gadget", 2),
            order(3, "gadget", 1),
        ]);
        let out = testing::react(&mut inv, &batch).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(
            (out[0].kind.as_str(), out[0].coordinate.entity.as_str()),
            (RESERVED, "sku:gadget")
        );
        assert_eq!(payload(&out[0])["remaining"], 1);
        assert_eq!(payload(&out[0])["order"], "order:1");
        assert_eq!(
            (out[1].kind.as_str(), out[1].coordinate.entity.as_str()),
            (REJECTED, "order:2")
        );
        assert_eq!(payload(&out[1])["available"], 1);
        assert_eq!(payload(&out[1])["reason"], "insufficient stock");
        assert_eq!(payload(&out[2])["remaining"], 0);
        assert_eq!(
            out.iter().map(|p| p.source).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn rebuilds_remaining_stock_from_the_log_after_a_restart() {
        let mut inv = Inventory::init("{}").unwrap();
        let batch = testing::batch(&[order(1, "widget", 4)]);
        let out = testing::react(&mut inv, &batch).unwrap();
        testing::commit(&batch, &out);
        // Someone else's event on the same entity is ignored.
        testing::append(
            "sku:widget",
            "shop",
            "alert.low-stock",
            r#"{"sku":"widget","remaining":6}"#,
        );

        let mut restarted = Inventory::init("{}").unwrap();
        let batch = testing::batch(&[order(2, "widget", 5)]);
        let out = testing::react(&mut restarted, &batch).unwrap();
        assert_eq!(payload(&out[0])["remaining"], 1);
    }

    #[test]
    fn rejects_malformed_and_unknown_orders() {
        let mut inv = Inventory::init("").unwrap();
        let bad = testing::append("order:9", "shop", "order.placed", "not json");
        let zero = order(10, "widget", 0);
        let unknown = order(11, "sprocket", 1);
        let batch = testing::batch(&[bad, zero, unknown]);
        let out = testing::react(&mut inv, &batch).unwrap();
        assert!(out.iter().all(|p| p.kind == REJECTED));
        assert_eq!(payload(&out[0])["reason"], "malformed order");
        assert_eq!(payload(&out[0])["order"], "order:9");
        assert_eq!(payload(&out[1])["reason"], "malformed order");
        assert_eq!(payload(&out[2])["reason"], "unknown sku");
    }

    #[test]
    fn a_denied_reservation_is_forgotten() {
        let mut inv = Inventory::init("{}").unwrap();
        testing::set_gate(|_| {
            batpak_guest::Verdict::Denied(batpak_guest::Denial {
                gate: "capability".into(),
                code: "kind-not-granted".into(),
                message: "no".into(),
            })
        });
        let batch = testing::batch(&[order(1, "gizmo", 2)]);
        let out = testing::react(&mut inv, &batch).unwrap();
        assert_eq!(payload(&out[0])["remaining"], 0);
        testing::commit(&batch, &out);
        let batch = testing::batch(&[order(2, "gizmo", 2)]);
        let out = testing::react(&mut inv, &batch).unwrap();
        assert_eq!(out[0].kind, RESERVED, "stock rebuilt from the log");
    }
}
