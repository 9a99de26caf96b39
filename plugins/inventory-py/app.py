"""inventory-py: the demo's inventory rule (plugins/inventory) in Python, on the SDK.

Consumes `order.placed` (`{"sku", "qty"}`); emits `inventory.reserved` on
`sku:<sku>` when enough stock is left, else `inventory.rejected` on the
order's entity. Remaining stock = config stock minus the reservations in the
log (read once per sku, then cached). The languages test compares its
reactions with the Rust reactor's.
"""

import json
import batpak_guest as bp

STOCK = {"widget": 10, "gadget": 5, "gizmo": 2}  # config {"stock": {...}} replaces it
remaining = {}  # module state: componentize-py may call each export on a new object
last_sequence = 0


def left(sku):
    """Remaining stock of `sku`: cached, or rebuilt from the log."""
    if sku not in remaining:
        reserved = sum(e.json()["qty"] for e in bp.entity_events(f"sku:{sku}")
                       if e.kind == "inventory.reserved")
        remaining[sku] = max(STOCK[sku] - reserved, 0)
    return remaining[sku]


def order_of(e):
    """(sku, qty) of a well-formed order, else None."""
    try:
        order = e.json()
        sku, qty = order["sku"], order["qty"]
    except (ValueError, KeyError, TypeError):
        return None
    valid_sku = (isinstance(sku, str) and 0 < len(sku.encode()) <= 64 and sku.strip() == sku
                 and not any(c < " " or "\x7f" <= c <= "\x9f" for c in sku))
    return (sku, qty) if valid_sku and type(qty) is int and 0 < qty < 2**64 else None


class Reactor(bp.Reactor):
    declaration = bp.Declaration("inventory-py", "0.1.0", consumes=["order.placed"],
                                 emits=["inventory.reserved", "inventory.rejected"])

    def on_init(self, config):
        global STOCK
        stock = json.loads(config or "{}").get("stock")
        STOCK = STOCK if stock is None else stock

    def on_batch(self, batch, out):
        global last_sequence
        if len(batch) and batch[0].sequence <= last_sequence:
            remaining.clear()  # a redelivered batch: its reservations were never appended
        for e in batch:
            last_sequence = e.sequence
            order = order_of(e)
            if order is None:
                out.propose(e, "inventory.rejected", {"order": e.entity, "sku": None, "qty": None,
                                                      "available": 0, "reason": "malformed order"})
                continue
            sku, qty = order
            available = left(sku) if sku in STOCK else 0
            if sku not in STOCK or available < qty:
                reason = "insufficient stock" if sku in STOCK else "unknown sku"
                out.propose(e, "inventory.rejected", {"order": e.entity, "sku": sku, "qty": qty,
                                                      "available": available, "reason": reason})
                continue
            remaining[sku] = available - qty
            out.propose(e, "inventory.reserved", {"order": e.entity, "sku": sku, "qty": qty,
                                                  "remaining": remaining[sku]},
                        entity=f"sku:{sku}")
