// inventory-js: the demo's inventory rule (plugins/inventory) in JavaScript,
// on the SDK; built with both engines (QuickJS and SpiderMonkey).
//
// Consumes `order.placed` (`{"sku", "qty"}`); emits `inventory.reserved` on
// `sku:<sku>` when enough stock is left, else `inventory.rejected` on the
// order's entity. Remaining stock = config stock minus the reservations in
// the log (read once per sku, then cached). The languages test compares its
// reactions with the Rust reactor's.

import { defineReactor, entityEvents, utf8Encode } from "../../guest-sdk/js/index.js";

const RESERVED = "inventory.reserved", REJECTED = "inventory.rejected";

// {sku, qty} of a well-formed order, else undefined.
function orderOf(event) {
  let order;
  try { order = event.json(); } catch { return undefined; }
  const { sku, qty } = order ?? {};
  const validSku = typeof sku === "string" && sku.length > 0 && utf8Encode(sku).length <= 64 &&
    sku.trim() === sku && !/[\u0000-\u001f\u007f-\u009f]/.test(sku);
  return validSku && Number.isSafeInteger(qty) && qty > 0 ? { sku, qty } : undefined;
}

// Remaining stock of `sku`: cached, or rebuilt from the log.
function left(state, sku) {
  if (!state.remaining.has(sku)) {
    let reserved = 0;
    for (const e of entityEvents(`sku:${sku}`)) if (e.kind === RESERVED) reserved += e.json().qty;
    state.remaining.set(sku, Math.max(state.stock[sku] - reserved, 0));
  }
  return state.remaining.get(sku);
}

export const reactor = defineReactor({
  describe: { name: "inventory-js", consumes: ["order.placed"], emits: [RESERVED, REJECTED] },

  init(config) {
    const stock = config.stock ?? { widget: 10, gadget: 5, gizmo: 2 };
    return { stock, remaining: new Map(), lastSequence: 0n };
  },

  react(batch, out, state) {
    // A redelivered batch: its reservations were never appended.
    if (batch.length && batch.get(0).sequence <= state.lastSequence) state.remaining.clear();
    for (const event of batch) {
      state.lastSequence = event.sequence;
      const order = orderOf(event);
      if (!order) {
        const payload = { order: event.entity, sku: null, qty: null, available: 0, reason: "malformed order" };
        out.propose(event, { kind: REJECTED, payload });
        continue;
      }
      const { sku, qty } = order;
      const known = Object.prototype.hasOwnProperty.call(state.stock, sku);
      const available = known ? left(state, sku) : 0;
      if (!known || available < qty) {
        const reason = known ? "insufficient stock" : "unknown sku";
        out.propose(event, { kind: REJECTED, payload: { order: event.entity, sku, qty, available, reason } });
        continue;
      }
      state.remaining.set(sku, available - qty);
      const payload = { order: event.entity, sku, qty, remaining: available - qty };
      out.propose(event, { kind: RESERVED, payload, entity: `sku:${sku}` });
    }
  },
});
