// inventory-c: the demo's inventory rule (plugins/inventory) in C, on the
// batpak.h SDK.
//
// Consumes `order.placed` (`{"sku", "qty"}`); emits `inventory.reserved` on
// `sku:<sku>` when enough stock is left, else `inventory.rejected` on the
// order's entity. Remaining stock = the stock below minus the reservations in
// the log (read once per sku, then cached). The languages test compares its
// reactions with the Rust reactor's. Unlike Rust's, it reads no config, and
// a sku written with JSON escapes counts as malformed (batpak_json_str reads
// strings in place).

#include "reactor_plugin.h"
#include "batpak.h"

enum { RESERVED, REJECTED };  // indexes in emits
static const batpak_declaration DECLARATION = {
    .name = "inventory-c", .version = "0.1.0", .consumes = BATPAK_LIST("order.placed"),
    .emits = BATPAK_LIST("inventory.reserved", "inventory.rejected")};

static const char *SKUS[] = {"widget", "gadget", "gizmo"};
static uint64_t stock[] = {10, 5, 2}, remaining[3], last_sequence;
static bool known[3];  // remaining[i] read from the store yet

static bool add_reserved(const batpak_stored *e, void *sum) {
  uint64_t qty;
  if (batpak_eq(e->kind, "inventory.reserved") && batpak_json_u64(e->payload, "qty", &qty))
    *(uint64_t *)sum += qty;
  return true;
}

// A sku makes a valid entity `sku:<sku>`: 1 to 64 bytes, no control
// characters, no leading or trailing space.
static bool valid_sku(batpak_bytes s) {
  if (s.len == 0 || s.len > 64 || s.ptr[0] == ' ' || s.ptr[s.len - 1] == ' ') return false;
  for (size_t k = 0; k < s.len; k++)
    if (s.ptr[k] < 0x20 || s.ptr[k] == 0x7f) return false;
  return true;
}

static bool on_batch(const batpak_batch *batch, batpak_out *out, batpak_error *err) {
  (void)err;
  if (batch->count > 0) {
    batpak_event first = batpak_batch_event(batch, 0);
    if (batpak_event_sequence(&first) <= last_sequence)  // redelivered: forget its reservations
      memset(known, 0, sizeof known);
  }
  BATPAK_FOR_EACH(batch, e) {
    batpak_bytes order = batpak_event_entity(&e), sku;
    uint64_t qty, available = 0;
    int i = -1;
    char json[512], entity[80];
    last_sequence = batpak_event_sequence(&e);
    if (!batpak_json_str(batpak_event_payload(&e), "sku", &sku) || !valid_sku(sku) ||
        !batpak_json_u64(batpak_event_payload(&e), "qty", &qty) || qty == 0) {
      int n = snprintf(json, sizeof json, "{\"order\":\"%.*s\",\"sku\":null,\"qty\":null,\"available\":0,"
                       "\"reason\":\"malformed order\"}", (int)order.len, (const char *)order.ptr);
      batpak_propose(out, &e, .kind = REJECTED, .payload = {(const uint8_t *)json, (size_t)n});
      continue;
    }
    for (int k = 0; k < 3; k++) if (batpak_eq(sku, SKUS[k])) i = k;
    snprintf(entity, sizeof entity, "sku:%.*s", (int)sku.len, (const char *)sku.ptr);
    if (i >= 0 && !known[i]) {
      uint64_t reserved = 0;
      batpak_entity_events(batpak_str(entity), 0, add_reserved, &reserved);
      remaining[i] = stock[i] > reserved ? stock[i] - reserved : 0;
      known[i] = true;
    }
    if (i >= 0) available = remaining[i];
    if (i < 0 || available < qty) {
      int n = snprintf(json, sizeof json, "{\"order\":\"%.*s\",\"sku\":\"%.*s\",\"qty\":%llu,\"available\":%llu,"
                       "\"reason\":\"%s\"}", (int)order.len, (const char *)order.ptr, (int)sku.len,
                       (const char *)sku.ptr, (unsigned long long)qty, (unsigned long long)available,
                       i < 0 ? "unknown sku" : "insufficient stock");
      batpak_propose(out, &e, .kind = REJECTED, .payload = {(const uint8_t *)json, (size_t)n});
      continue;
    }
    remaining[i] -= qty;
    int n = snprintf(json, sizeof json, "{\"order\":\"%.*s\",\"sku\":\"%.*s\",\"qty\":%llu,\"remaining\":%llu}",
                     (int)order.len, (const char *)order.ptr, (int)sku.len, (const char *)sku.ptr,
                     (unsigned long long)qty, (unsigned long long)remaining[i]);
    batpak_propose(out, &e, .kind = RESERVED, .payload = {(const uint8_t *)json, (size_t)n},
                   .entity = batpak_str(entity));
  }
  return true;
}

BATPAK_REACTOR(DECLARATION, on_batch)
