/* batpak.h against the worked example of guest-sdk/WIT.md (two
 * `order.placed` events on `order:1` and `order:2` in scope `shop`), built
 * byte for byte as that document lays it out. Compiled natively and run by
 * `cargo test` (tests/e2e/guest_sdks.rs); by hand:
 *   zig cc -std=c99 -Wall -Wextra -Werror -I guest-sdk/c guest-sdk/c/tests/worked_example.c -o t && ./t */
#include "batpak.h"

static int failures = 0;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                     \
    }                                                                 \
  } while (0)

static uint8_t buf[285];

static void record(uint8_t *r, uint64_t id_lo, uint64_t seq, int caused, uint32_t entity, uint32_t poff,
                   uint32_t plen) {
  batpak_put_u64(r, 0, 0x0102030405060708ull);
  batpak_put_u64(r, 8, id_lo);
  batpak_put_u64(r, 16, seq);
  batpak_put_u64(r, 24, 1);
  batpak_put_u64(r, 32, 0xAAAA);
  batpak_put_u64(r, 40, 0xBBBB);
  batpak_put_u64(r, 48, caused ? 7 : 0);
  batpak_put_u64(r, 56, caused ? 9 : 0);
  batpak_put_u64(r, 64, 1700000000000000ull + seq);
  batpak_put_u32(r, 72, entity);
  batpak_put_u32(r, 76, 1);
  batpak_put_u32(r, 80, 2);
  batpak_put_u32(r, 84, caused ? 1 : 0);
  batpak_put_u32(r, 88, poff);
  batpak_put_u32(r, 92, plen);
}

static size_t worked_example(void) {
  const uint32_t header[4] = {2, 4, 208, 270};
  const uint32_t table[8] = {0, 7, 7, 4, 11, 12, 23, 7};
  for (int i = 0; i < 4; i++) batpak_put_u32(buf, 4 * i, header[i]);
  record(buf + 16, 0x1112131415161718ull, 5, 0, 0, 0, 7);
  record(buf + 112, 0x1112131415161719ull, 6, 1, 3, 7, 8);
  for (int i = 0; i < 8; i++) batpak_put_u32(buf, 208 + 4 * i, table[i]);
  memcpy(buf + 240, "order:1shoporder.placedorder:2", 30);
  memcpy(buf + 270, "{\"q\":1}{\"q\":22}", 15);
  return 285;
}

static bool bytes_is(const uint8_t *p, uint32_t len, const char *s) {
  return len == strlen(s) && memcmp(p, s, len) == 0;
}

static void reads_every_field(void) {
  batpak_batch b;
  CHECK(batpak_batch_open(&b, buf, worked_example()));
  CHECK(b.count == 2);
  batpak_event e0 = batpak_batch_event(&b, 0), e1 = batpak_batch_event(&b, 1);
  CHECK(batpak_eq(batpak_event_kind(&e0), "order.placed"));
  CHECK(batpak_eq(batpak_event_entity(&e0), "order:1"));
  CHECK(batpak_eq(batpak_event_entity(&e1), "order:2"));
  CHECK(batpak_eq(batpak_event_scope(&e1), "shop"));
  CHECK(batpak_eq(batpak_event_payload(&e0), "{\"q\":1}"));
  CHECK(batpak_eq(batpak_event_payload(&e1), "{\"q\":22}"));
  CHECK(batpak_event_payload(&e1).ptr == buf + 277); /* in place, no copy */
  batpak_id id = batpak_event_id(&e1), cause, corr = batpak_event_correlation(&e0);
  CHECK(id.hi == 0x0102030405060708ull && id.lo == 0x1112131415161719ull);
  CHECK(corr.hi == 0xAAAA && corr.lo == 0xBBBB);
  CHECK(!batpak_event_causation(&e0, &cause));
  CHECK(batpak_event_causation(&e1, &cause) && cause.hi == 7 && cause.lo == 9);
  CHECK(batpak_event_sequence(&e1) == 6 && batpak_event_entity_sequence(&e1) == 1);
  CHECK(batpak_event_timestamp_us(&e0) == 1700000000000005ull);
  uint32_t seen = 0;
  BATPAK_FOR_EACH(&b, e) seen += e.index + 1;
  CHECK(seen == 3);
}

static void malformed_batches_are_refused(void) {
  batpak_batch b;
  size_t n = worked_example();
  CHECK(!batpak_batch_open(&b, buf, 200)); /* the header points past the end */
  CHECK(b.count == 0);
  batpak_put_u32(buf, 112 + 92, 9); /* event 1's payload one byte past the end */
  CHECK(!batpak_batch_open(&b, buf, n));
  worked_example();
  batpak_put_u32(buf, 112 + 80, 4); /* kind: string 4 of 4 */
  CHECK(!batpak_batch_open(&b, buf, n));
  worked_example();
  batpak_put_u32(buf, 232, 24); /* string 3 one byte into the payloads */
  CHECK(!batpak_batch_open(&b, buf, n));
  CHECK(batpak_batch_open(&b, buf, 0) && b.count == 0);
}

enum { SEEN, STOCK_LOW };

static void proposals(void) {
  batpak_batch b;
  CHECK(batpak_batch_open(&b, buf, worked_example()));
  batpak_event e0 = batpak_batch_event(&b, 0), e1 = batpak_batch_event(&b, 1);
  batpak_out out = BATPAK_OUT_INIT;
  BATPAK_FOR_EACH(&b, e) CHECK(batpak_propose(&out, &e, .kind = SEEN, .payload = batpak_event_payload(&e)));
  CHECK(batpak_propose(&out, &e0, .kind = STOCK_LOW, .payload = batpak_str("{\"sku\":1}"),
                       .entity = batpak_str("sku:1"), .scope = batpak_str("inv")));
  CHECK(batpak_propose(&out, &e1, .caused_by = BATPAK_CAUSED_BY_EVENT, .cause = batpak_event_id(&e0)));
  CHECK(batpak_propose(&out, &e1, .caused_by = BATPAK_CAUSED_BY_NONE));
  uint8_t *p;
  size_t len;
  CHECK(batpak_out_finish(&out, &p, &len));
  CHECK(out.count == 0 && out.recs == NULL);
  size_t base = 8 + 56 * 5;
  CHECK(len == base + 7 + 8 + 5 + 3 + 9);
  CHECK(batpak_u32_at(p, 0) == 5 && batpak_u32_at(p, 4) == 0);
  for (uint32_t k = 0; k < 5; k++) {
    const uint8_t *r = p + 8 + 56 * k;
    CHECK(batpak_u32_at(r, 36) == 0);
    if (k < 2) {
      CHECK(batpak_u32_at(r, 0) == k && batpak_u32_at(r, 4) == SEEN);
      CHECK(batpak_u32_at(r, 12) == 0 && batpak_u32_at(r, 20) == 0 && batpak_u32_at(r, 32) == 0);
      CHECK(bytes_is(p + batpak_u32_at(r, 24), batpak_u32_at(r, 28), k ? "{\"q\":22}" : "{\"q\":1}"));
    }
  }
  const uint8_t *r = p + 8 + 56 * 2;
  CHECK(batpak_u32_at(r, 0) == 0 && batpak_u32_at(r, 4) == STOCK_LOW);
  CHECK(bytes_is(p + batpak_u32_at(r, 8), batpak_u32_at(r, 12), "sku:1"));
  CHECK(bytes_is(p + batpak_u32_at(r, 16), batpak_u32_at(r, 20), "inv"));
  CHECK(bytes_is(p + batpak_u32_at(r, 24), batpak_u32_at(r, 28), "{\"sku\":1}"));
  r = p + 8 + 56 * 3;
  CHECK(batpak_u32_at(r, 0) == 1 && batpak_u32_at(r, 28) == 0 && batpak_u32_at(r, 32) == 1);
  CHECK(batpak_u64_at(r, 40) == 0x0102030405060708ull && batpak_u64_at(r, 48) == 0x1112131415161718ull);
  r = p + 8 + 56 * 4;
  CHECK(batpak_u32_at(r, 32) == 2 && batpak_u64_at(r, 40) == 0 && batpak_u64_at(r, 48) == 0);
  free(p);
  batpak_out empty = BATPAK_OUT_INIT;
  CHECK(batpak_out_finish(&empty, &p, &len) && p == NULL && len == 0);
}

static void errors_name_the_event(void) {
  batpak_batch b;
  CHECK(batpak_batch_open(&b, buf, worked_example()));
  batpak_event e1 = batpak_batch_event(&b, 1);
  batpak_error err;
  CHECK(!batpak_error_at(&err, &e1, "bad quantity %d", 22));
  CHECK(err.has_event && err.event == 1 && strcmp(err.message, "bad quantity 22") == 0);
  CHECK(!batpak_error_at(&err, NULL, "whole batch"));
  CHECK(!err.has_event);
}

/* At file scope, as a reactor declares it. */
static const batpak_declaration d = {
    .name = "inv", .version = "0.1.0", .consumes = BATPAK_LIST("order.placed"),
    .emits = BATPAK_LIST("order.seen", "stock.low"), .max_batch = 64};

static void declaration(void) {
  CHECK(strcmp(d.consumes[0], "order.placed") == 0 && d.consumes[1] == NULL);
  CHECK(strcmp(d.emits[STOCK_LOW], "stock.low") == 0 && d.emits[2] == NULL);
  CHECK(d.canal == 0 && d.scope == NULL && d.max_batch == 64);
}

static void json_fields(void) {
  batpak_bytes j = batpak_str(" { \"note\": \"a,}\\\"b\", \"deep\": {\"qty\": [1, {\"x\": 2}]},"
                              " \"sku\" : \"widget\", \"qty\": 3 } ");
  batpak_bytes v;
  uint64_t n = 0;
  CHECK(batpak_json_u64(j, "qty", &n) && n == 3); /* the top-level qty, not deep's */
  CHECK(batpak_json_str(j, "sku", &v) && bytes_is(v.ptr, (uint32_t)v.len, "widget"));
  CHECK(batpak_json_get(j, "deep", &v) && bytes_is(v.ptr, (uint32_t)v.len, "{\"qty\": [1, {\"x\": 2}]}"));
  CHECK(!batpak_json_str(j, "note", &v)); /* has an escape */
  CHECK(!batpak_json_get(j, "missing", &v));
  CHECK(!batpak_json_u64(j, "sku", &n));
  CHECK(!batpak_json_get(batpak_str("[1,2]"), "qty", &v));
  CHECK(!batpak_json_get(batpak_str("{\"qty\": "), "qty", &v));
  CHECK(!batpak_json_get(batpak_str("{\"qty\": \"open"), "qty", &v));
  CHECK(!batpak_json_u64(batpak_str("{\"qty\": 99999999999999999999}"), "qty", &n));
}

int main(void) {
  json_fields();
  reads_every_field();
  malformed_batches_are_refused();
  proposals();
  errors_name_the_event();
  declaration();
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("batpak.h: all checks passed\n");
  return 0;
}
