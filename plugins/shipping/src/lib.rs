//! `shipping`: requests a shipment for every reserved order.
//!
//! Consumes `inventory.reserved` (`{"order", "sku", "qty", "remaining"}`) and
//! emits `shipment.requested` on the order's entity with
//! `{"order", "sku", "qty"}`. Stateless; needs no config.

use batpak_guest::{Batch, Descriptor, Output, ReactError, Reactor};
use serde::{Deserialize, Serialize};

const SHIPMENT: &str = "shipment.requested";

#[derive(Deserialize, Serialize)]
struct Shipment {
    order: String,
    sku: String,
    qty: u64,
}

struct Shipping;

impl Reactor for Shipping {
    fn describe() -> Descriptor {
        Descriptor::new("shipping", env!("CARGO_PKG_VERSION"))
            .consumes(["inventory.reserved"])
            .emits([SHIPMENT])
    }

    fn init(_config: &str) -> Result<Self, String> {
        Ok(Shipping)
    }

    fn react(&mut self, batch: &Batch, out: &mut Output) -> Result<(), ReactError> {
        for event in batch.events() {
            // Unknown fields (`remaining`) are ignored.
            let shipment: Shipment = event.json().map_err(|e| {
                ReactError::at(&event, format!("unreadable inventory.reserved: {e}"))
            })?;
            if !batpak_guest::is_valid_coordinate_part(&shipment.order) {
                return Err(ReactError::at(
                    &event,
                    "inventory.reserved names no valid order entity",
                ));
            }
            batpak_guest::info!(
                "shipping {} x {} for {}",
                shipment.qty,
                shipment.sku,
                shipment.order
            );
            out.emit_json(
                &event,
                shipment.order.as_str(),
                event.scope(),
                SHIPMENT,
                &shipment,
            )?;
        }
        Ok(())
    }
}

batpak_guest::export_reactor!(Shipping);

#[cfg(test)]
mod tests {
    use super::*;
    use batpak_guest::testing;

    #[test]
    fn requests_a_shipment_on_the_order_entity() {
        let mut r = Shipping::init("{}").unwrap();
        let e = testing::append(
            "sku:widget",
            "shop",
            "inventory.reserved",
            r#"{"order":"order:7","sku":"widget","qty":2,"remaining":8}"#,
        );
        let bad = testing::append("sku:widget", "shop", "inventory.reserved", "{}");
        let out = testing::react(&mut r, &testing::batch(std::slice::from_ref(&e))).unwrap();
        assert_eq!(out[0].coordinate.entity, "order:7");
        assert_eq!(out[0].kind, SHIPMENT);
        assert_eq!(
            out[0].payload,
            br#"{"order":"order:7","sku":"widget","qty":2}"#
        );
        let err = testing::react(&mut r, &testing::batch(&[e, bad])).unwrap_err();
        assert_eq!(err.event, Some(1));
    }
}
