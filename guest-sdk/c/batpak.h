/* batpak.h: write batpak reactors (batpak:reactor@0.2.0) in C.
 *
 * One header, C99, no allocation in the read path:
 *   - batpak_batch / batpak_event: the batch buffer `react` receives, checked
 *     once by batpak_batch_open, then read in place (names and payloads are
 *     batpak_bytes views into it, not NUL-terminated);
 *   - batpak_out + batpak_propose(out, &event, .kind = ..., .payload = ...):
 *     the proposals buffer, with named fields (entity and scope default to
 *     the source's, causation to the source event);
 *   - batpak_error + batpak_error_at: a failure naming the event to park;
 *   - batpak_json_get / _u64 / _str: fields of a flat JSON payload, in place;
 *   - batpak_declaration + BATPAK_REACTOR(decl, on_batch): describe, init and
 *     react written for you, plus batpak_log, batpak_entity_events and
 *     batpak_get_event, when included after the generated bindings
 *     (reactor_plugin.h from `batpak-build c-bindings`).
 * Guide: guest-sdk/docs/c.md. The layout constants below come from the Rust
 * crate batpak-layout (host/layout); host/layout/tests/sdk_layout.rs fails
 * if any of them disagrees with it. Fields are little-endian and may sit at
 * any address: every access is a memcpy (one load on wasm).
 */
#ifndef BATPAK_H
#define BATPAK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Layout (batpak-layout) ---- */
#define BATPAK_BATCH_HEADER_LEN 16
#define BATPAK_BATCH_RECORD_LEN 96
#define BATPAK_STRING_ENTRY_LEN 8
#define BATPAK_FLAG_HAS_CAUSATION 1
#define BATPAK_BATCH_FIELD_ID_HI 0
#define BATPAK_BATCH_FIELD_ID_LO 8
#define BATPAK_BATCH_FIELD_SEQUENCE 16
#define BATPAK_BATCH_FIELD_ENTITY_SEQUENCE 24
#define BATPAK_BATCH_FIELD_CORRELATION_HI 32
#define BATPAK_BATCH_FIELD_CORRELATION_LO 40
#define BATPAK_BATCH_FIELD_CAUSATION_HI 48
#define BATPAK_BATCH_FIELD_CAUSATION_LO 56
#define BATPAK_BATCH_FIELD_TIMESTAMP_US 64
#define BATPAK_BATCH_FIELD_ENTITY 72
#define BATPAK_BATCH_FIELD_SCOPE 76
#define BATPAK_BATCH_FIELD_KIND 80
#define BATPAK_BATCH_FIELD_FLAGS 84
#define BATPAK_BATCH_FIELD_PAYLOAD_OFFSET 88
#define BATPAK_BATCH_FIELD_PAYLOAD_LEN 92
#define BATPAK_PROPOSALS_HEADER_LEN 8
#define BATPAK_PROPOSAL_RECORD_LEN 56
#define BATPAK_CAUSATION_SOURCE 0
#define BATPAK_CAUSATION_EVENT 1
#define BATPAK_CAUSATION_NONE 2
#define BATPAK_PROPOSAL_FIELD_SOURCE 0
#define BATPAK_PROPOSAL_FIELD_KIND 4
#define BATPAK_PROPOSAL_FIELD_ENTITY 8
#define BATPAK_PROPOSAL_FIELD_SCOPE 16
#define BATPAK_PROPOSAL_FIELD_PAYLOAD 24
#define BATPAK_PROPOSAL_FIELD_CAUSATION 32
#define BATPAK_PROPOSAL_FIELD_RESERVED 36
#define BATPAK_PROPOSAL_FIELD_CAUSE_HI 40
#define BATPAK_PROPOSAL_FIELD_CAUSE_LO 48

/* Allocation of the proposals buffer (never of the read path). */
#ifndef BATPAK_REALLOC
#define BATPAK_REALLOC realloc
#define BATPAK_FREE free
#endif

static inline uint32_t batpak_u32_at(const uint8_t *p, size_t at) {
  uint32_t v;
  memcpy(&v, p + at, sizeof v);
  return v;
}
static inline uint64_t batpak_u64_at(const uint8_t *p, size_t at) {
  uint64_t v;
  memcpy(&v, p + at, sizeof v);
  return v;
}
static inline void batpak_put_u32(uint8_t *p, size_t at, uint32_t v) { memcpy(p + at, &v, sizeof v); }
static inline void batpak_put_u64(uint8_t *p, size_t at, uint64_t v) { memcpy(p + at, &v, sizeof v); }

/* ---- Views ---- */

/* Bytes borrowed from a buffer (a name, a payload): not NUL-terminated. */
typedef struct { const uint8_t *ptr; size_t len; } batpak_bytes;
/* A 128-bit event id, high half first (as the contract's event-id). */
typedef struct { uint64_t hi, lo; } batpak_id;

/* A NUL-terminated string as batpak_bytes (no copy). */
static inline batpak_bytes batpak_str(const char *s) {
  batpak_bytes b = {(const uint8_t *)s, s ? strlen(s) : 0};
  return b;
}
/* True when b holds exactly the characters of s. */
static inline bool batpak_eq(batpak_bytes b, const char *s) {
  size_t n = strlen(s);
  return b.len == n && (n == 0 || memcmp(b.ptr, s, n) == 0);
}
static inline bool batpak_id_eq(batpak_id a, batpak_id b) { return a.hi == b.hi && a.lo == b.lo; }

/* The batch buffer, checked by batpak_batch_open. */
typedef struct {
  const uint8_t *buf;
  size_t len;
  uint32_t count, string_count, strings_offset, payloads_offset;
} batpak_batch;

/* Event `index` of a batch: accessors read its record in place. */
typedef struct {
  const batpak_batch *batch;
  const uint8_t *rec;
  uint32_t index;
} batpak_event;

/* Checks every range of the buffer once (header, records, string table,
 * string and payload ranges, string indexes), so that the accessors below
 * need no check; false when the buffer is malformed (the host never sends
 * one). An empty buffer is a batch of no events. */
static inline bool batpak_batch_open(batpak_batch *b, const uint8_t *buf, size_t len) {
  memset(b, 0, sizeof *b);
  b->buf = buf;
  b->len = len;
  if (len == 0) return true;
  if (len < BATPAK_BATCH_HEADER_LEN) return false;
  b->count = batpak_u32_at(buf, 0);
  b->string_count = batpak_u32_at(buf, 4);
  b->strings_offset = batpak_u32_at(buf, 8);
  b->payloads_offset = batpak_u32_at(buf, 12);
  uint64_t records_end = BATPAK_BATCH_HEADER_LEN + (uint64_t)BATPAK_BATCH_RECORD_LEN * b->count;
  uint64_t names = b->strings_offset + (uint64_t)BATPAK_STRING_ENTRY_LEN * b->string_count;
  if (records_end > b->strings_offset || names > b->payloads_offset || b->payloads_offset > len) {
    b->count = 0;
    return false;
  }
  for (uint32_t j = 0; j < b->string_count; j++) {
    size_t at = b->strings_offset + (size_t)BATPAK_STRING_ENTRY_LEN * j;
    if (names + batpak_u32_at(buf, at) + batpak_u32_at(buf, at + 4) > b->payloads_offset) {
      b->count = 0;
      return false;
    }
  }
  for (uint32_t i = 0; i < b->count; i++) {
    const uint8_t *r = buf + BATPAK_BATCH_HEADER_LEN + (size_t)BATPAK_BATCH_RECORD_LEN * i;
    if (batpak_u32_at(r, BATPAK_BATCH_FIELD_ENTITY) >= b->string_count ||
        batpak_u32_at(r, BATPAK_BATCH_FIELD_SCOPE) >= b->string_count ||
        batpak_u32_at(r, BATPAK_BATCH_FIELD_KIND) >= b->string_count ||
        (uint64_t)b->payloads_offset + batpak_u32_at(r, BATPAK_BATCH_FIELD_PAYLOAD_OFFSET) +
                batpak_u32_at(r, BATPAK_BATCH_FIELD_PAYLOAD_LEN) > len) {
      b->count = 0;
      return false;
    }
  }
  return true;
}

/* Event i (0 <= i < batch->count). */
static inline batpak_event batpak_batch_event(const batpak_batch *b, uint32_t i) {
  batpak_event e = {b, b->buf + BATPAK_BATCH_HEADER_LEN + (size_t)BATPAK_BATCH_RECORD_LEN * i, i};
  return e;
}

/* for each event `e` (a batpak_event) of `batch` (a const batpak_batch *). */
#define BATPAK_FOR_EACH(batch, e)                                        \
  for (batpak_event e = batpak_batch_event((batch), 0); e.index < (batch)->count; \
       e = batpak_batch_event((batch), e.index + 1))

/* String j of the batch's string table. */
static inline batpak_bytes batpak_batch_string(const batpak_batch *b, uint32_t j) {
  size_t at = b->strings_offset + (size_t)BATPAK_STRING_ENTRY_LEN * j;
  size_t names = b->strings_offset + (size_t)BATPAK_STRING_ENTRY_LEN * b->string_count;
  batpak_bytes s = {b->buf + names + batpak_u32_at(b->buf, at), batpak_u32_at(b->buf, at + 4)};
  return s;
}

static inline batpak_bytes batpak_event_kind(const batpak_event *e) {
  return batpak_batch_string(e->batch, batpak_u32_at(e->rec, BATPAK_BATCH_FIELD_KIND));
}
static inline batpak_bytes batpak_event_entity(const batpak_event *e) {
  return batpak_batch_string(e->batch, batpak_u32_at(e->rec, BATPAK_BATCH_FIELD_ENTITY));
}
static inline batpak_bytes batpak_event_scope(const batpak_event *e) {
  return batpak_batch_string(e->batch, batpak_u32_at(e->rec, BATPAK_BATCH_FIELD_SCOPE));
}
/* The payload bytes, in place (JSON for events appended as JSON). */
static inline batpak_bytes batpak_event_payload(const batpak_event *e) {
  batpak_bytes p = {e->batch->buf + e->batch->payloads_offset +
                        batpak_u32_at(e->rec, BATPAK_BATCH_FIELD_PAYLOAD_OFFSET),
                    batpak_u32_at(e->rec, BATPAK_BATCH_FIELD_PAYLOAD_LEN)};
  return p;
}
static inline batpak_id batpak_event_id(const batpak_event *e) {
  batpak_id id = {batpak_u64_at(e->rec, BATPAK_BATCH_FIELD_ID_HI), batpak_u64_at(e->rec, BATPAK_BATCH_FIELD_ID_LO)};
  return id;
}
static inline batpak_id batpak_event_correlation(const batpak_event *e) {
  batpak_id id = {batpak_u64_at(e->rec, BATPAK_BATCH_FIELD_CORRELATION_HI),
                  batpak_u64_at(e->rec, BATPAK_BATCH_FIELD_CORRELATION_LO)};
  return id;
}
/* True, with the id in *out, when the event has a causation. */
static inline bool batpak_event_causation(const batpak_event *e, batpak_id *out) {
  if (!(batpak_u32_at(e->rec, BATPAK_BATCH_FIELD_FLAGS) & BATPAK_FLAG_HAS_CAUSATION)) return false;
  out->hi = batpak_u64_at(e->rec, BATPAK_BATCH_FIELD_CAUSATION_HI);
  out->lo = batpak_u64_at(e->rec, BATPAK_BATCH_FIELD_CAUSATION_LO);
  return true;
}
static inline uint64_t batpak_event_sequence(const batpak_event *e) {
  return batpak_u64_at(e->rec, BATPAK_BATCH_FIELD_SEQUENCE);
}
static inline uint64_t batpak_event_entity_sequence(const batpak_event *e) {
  return batpak_u64_at(e->rec, BATPAK_BATCH_FIELD_ENTITY_SEQUENCE);
}
/* Commit time, microseconds since the Unix epoch. */
static inline uint64_t batpak_event_timestamp_us(const batpak_event *e) {
  return batpak_u64_at(e->rec, BATPAK_BATCH_FIELD_TIMESTAMP_US);
}

/* ---- Reading JSON payloads (flat objects, no allocation) ---- */

static inline size_t batpak_json_ws_(batpak_bytes j, size_t i) {
  while (i < j.len && (j.ptr[i] == ' ' || j.ptr[i] == '\t' || j.ptr[i] == '\n' || j.ptr[i] == '\r')) i++;
  return i;
}
/* The end of the JSON value starting at i (not validated), or j.len + 1. */
static inline size_t batpak_json_skip_(batpak_bytes j, size_t i) {
  int depth = 0;
  bool str = false;
  for (; i < j.len; i++) {
    uint8_t c = j.ptr[i];
    if (str) {
      if (c == '\\') i++;
      else if (c == '"') {
        str = false;
        if (depth == 0) return i + 1;
      }
    } else if (c == '"') str = true;
    else if (c == '{' || c == '[') depth++;
    else if (c == '}' || c == ']') {
      if (depth == 0) return i;
      if (--depth == 0) return i + 1;
    } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) return i;
  }
  return str || depth ? j.len + 1 : i;
}

/* The raw JSON value of `key` in the top-level object `json` (keys are
 * compared as written, escapes not decoded); false when json is not an
 * object or has no such key. */
static inline bool batpak_json_get(batpak_bytes json, const char *key, batpak_bytes *value) {
  size_t i = batpak_json_ws_(json, 0), klen = strlen(key);
  if (i >= json.len || json.ptr[i] != '{') return false;
  i++;
  for (;;) {
    i = batpak_json_ws_(json, i);
    if (i >= json.len || json.ptr[i] != '"') return false;
    size_t k = i + 1, kend = batpak_json_skip_(json, i);
    if (kend > json.len) return false;
    i = batpak_json_ws_(json, kend);
    if (i >= json.len || json.ptr[i] != ':') return false;
    i = batpak_json_ws_(json, i + 1);
    size_t end = batpak_json_skip_(json, i);
    if (end > json.len || end == i) return false;
    if (kend - 1 - k == klen && memcmp(json.ptr + k, key, klen) == 0) {
      value->ptr = json.ptr + i;
      value->len = end - i;
      return true;
    }
    i = batpak_json_ws_(json, end);
    if (i >= json.len || json.ptr[i] != ',') return false;
    i++;
  }
}

/* `key` as an unsigned integer (digits only, no overflow). */
static inline bool batpak_json_u64(batpak_bytes json, const char *key, uint64_t *n) {
  batpak_bytes v;
  if (!batpak_json_get(json, key, &v) || v.len == 0 || v.len > 19) return false;
  *n = 0;
  for (size_t i = 0; i < v.len; i++) {
    if (v.ptr[i] < '0' || v.ptr[i] > '9') return false;
    *n = *n * 10 + (uint64_t)(v.ptr[i] - '0');
  }
  return true;
}

/* `key` as a string without escapes: its bytes between the quotes. */
static inline bool batpak_json_str(batpak_bytes json, const char *key, batpak_bytes *s) {
  batpak_bytes v;
  if (!batpak_json_get(json, key, &v) || v.len < 2 || v.ptr[0] != '"') return false;
  if (memchr(v.ptr, '\\', v.len)) return false;
  s->ptr = v.ptr + 1;
  s->len = v.len - 2;
  return true;
}

/* ---- Proposals ---- */

/* What a proposal is caused by (the zero default: the source event). */
enum {
  BATPAK_CAUSED_BY_SOURCE = BATPAK_CAUSATION_SOURCE,
  BATPAK_CAUSED_BY_EVENT = BATPAK_CAUSATION_EVENT, /* the id in .cause */
  BATPAK_CAUSED_BY_NONE = BATPAK_CAUSATION_NONE,
};

/* One proposal's fields; a field left out takes its zero default: kind
 * emits[0], empty payload, the source's entity and scope, caused by the
 * source event. `kind` is an index into the declaration's emits. */
typedef struct {
  uint32_t kind;
  batpak_bytes payload;
  batpak_bytes entity;
  batpak_bytes scope;
  uint32_t caused_by;
  batpak_id cause;
} batpak_proposal;

/* The proposals of one react call. Start with BATPAK_OUT_INIT. */
typedef struct {
  uint8_t *recs; /* records, with offsets relative to data */
  size_t count, recs_cap;
  uint8_t *data; /* names and payloads */
  size_t data_len, data_cap;
  bool oom;
} batpak_out;
#define BATPAK_OUT_INIT {NULL, 0, 0, NULL, 0, 0, false}

static inline bool batpak_out_grow_(uint8_t **p, size_t *cap, size_t need) {
  if (need <= *cap) return true;
  size_t n = *cap ? *cap * 2 : 256;
  while (n < need) n *= 2;
  uint8_t *q = (uint8_t *)BATPAK_REALLOC(*p, n);
  if (!q) return false;
  *p = q;
  *cap = n;
  return true;
}

/* Appends b to the data area; its offset there in *at. */
static inline bool batpak_out_data_(batpak_out *o, batpak_bytes b, uint32_t *at) {
  *at = 0;
  if (b.len == 0) return true;
  if (!batpak_out_grow_(&o->data, &o->data_cap, o->data_len + b.len)) return false;
  memcpy(o->data + o->data_len, b.ptr, b.len);
  *at = (uint32_t)o->data_len;
  o->data_len += b.len;
  return true;
}

/* Proposes p in reaction to `source`; false (and the output marked out of
 * memory, so finishing fails too) when memory ran out. Called through the
 * batpak_propose macro. */
static inline bool batpak_propose_(batpak_out *o, const batpak_event *source, batpak_proposal p) {
  uint32_t ent, sco, pay;
  if (o->oom || !batpak_out_grow_(&o->recs, &o->recs_cap, (o->count + 1) * BATPAK_PROPOSAL_RECORD_LEN) ||
      !batpak_out_data_(o, p.entity, &ent) || !batpak_out_data_(o, p.scope, &sco) ||
      !batpak_out_data_(o, p.payload, &pay)) {
    o->oom = true;
    return false;
  }
  uint8_t *r = o->recs + o->count * BATPAK_PROPOSAL_RECORD_LEN;
  memset(r, 0, BATPAK_PROPOSAL_RECORD_LEN);
  batpak_put_u32(r, BATPAK_PROPOSAL_FIELD_SOURCE, source->index);
  batpak_put_u32(r, BATPAK_PROPOSAL_FIELD_KIND, p.kind);
  batpak_put_u32(r, BATPAK_PROPOSAL_FIELD_ENTITY, ent);
  batpak_put_u32(r, BATPAK_PROPOSAL_FIELD_ENTITY + 4, (uint32_t)p.entity.len);
  batpak_put_u32(r, BATPAK_PROPOSAL_FIELD_SCOPE, sco);
  batpak_put_u32(r, BATPAK_PROPOSAL_FIELD_SCOPE + 4, (uint32_t)p.scope.len);
  batpak_put_u32(r, BATPAK_PROPOSAL_FIELD_PAYLOAD, pay);
  batpak_put_u32(r, BATPAK_PROPOSAL_FIELD_PAYLOAD + 4, (uint32_t)p.payload.len);
  batpak_put_u32(r, BATPAK_PROPOSAL_FIELD_CAUSATION, p.caused_by);
  if (p.caused_by == BATPAK_CAUSED_BY_EVENT) {
    batpak_put_u64(r, BATPAK_PROPOSAL_FIELD_CAUSE_HI, p.cause.hi);
    batpak_put_u64(r, BATPAK_PROPOSAL_FIELD_CAUSE_LO, p.cause.lo);
  }
  o->count++;
  return true;
}

/* batpak_propose(out, &source, .kind = K, .payload = P, ...): named fields
 * of batpak_proposal, the rest their defaults. */
#define batpak_propose(out, source, ...) batpak_propose_((out), (source), (batpak_proposal){__VA_ARGS__})

/* Frees what the output holds (after a failed finish, or to drop it). */
static inline void batpak_out_free(batpak_out *o) {
  BATPAK_FREE(o->recs);
  BATPAK_FREE(o->data);
  batpak_out tmp = BATPAK_OUT_INIT;
  *o = tmp;
}

/* The proposals buffer, allocated with BATPAK_REALLOC (the caller owns it;
 * NULL and 0 when there are no proposals); the output is emptied. False
 * when memory ran out at any point. */
static inline bool batpak_out_finish(batpak_out *o, uint8_t **ptr, size_t *len) {
  *ptr = NULL;
  *len = 0;
  if (o->oom) {
    batpak_out_free(o);
    return false;
  }
  if (o->count == 0) {
    batpak_out_free(o);
    return true;
  }
  size_t base = BATPAK_PROPOSALS_HEADER_LEN + o->count * BATPAK_PROPOSAL_RECORD_LEN;
  uint8_t *buf = (uint8_t *)BATPAK_REALLOC(NULL, base + o->data_len);
  if (!buf) {
    batpak_out_free(o);
    return false;
  }
  batpak_put_u32(buf, 0, (uint32_t)o->count);
  batpak_put_u32(buf, 4, 0);
  memcpy(buf + BATPAK_PROPOSALS_HEADER_LEN, o->recs, o->count * BATPAK_PROPOSAL_RECORD_LEN);
  static const size_t ranges[3] = {BATPAK_PROPOSAL_FIELD_ENTITY, BATPAK_PROPOSAL_FIELD_SCOPE,
                                   BATPAK_PROPOSAL_FIELD_PAYLOAD};
  for (size_t k = 0; k < o->count; k++) {
    uint8_t *r = buf + BATPAK_PROPOSALS_HEADER_LEN + k * BATPAK_PROPOSAL_RECORD_LEN;
    for (int f = 0; f < 3; f++)
      if (batpak_u32_at(r, ranges[f] + 4))
        batpak_put_u32(r, ranges[f], batpak_u32_at(r, ranges[f]) + (uint32_t)base);
  }
  if (o->data_len) memcpy(buf + base, o->data, o->data_len);
  *ptr = buf;
  *len = base + o->data_len;
  batpak_out_free(o);
  return true;
}

/* ---- Errors ---- */

/* Why on_batch failed: a message and, when known, the batch index of the
 * event to park (without one the host retries and bisects the batch). */
typedef struct {
  char message[512];
  bool has_event;
  uint32_t event;
} batpak_error;

/* Fills *err (event may be NULL: not tied to one event) with a printf-style
 * message; returns false, so `return batpak_error_at(err, &e, "...")`. */
static inline bool batpak_error_at(batpak_error *err, const batpak_event *event, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  err->has_event = event != NULL;
  err->event = event ? event->index : 0;
  return false;
}

/* ---- Declaration ---- */

/* A NULL-terminated list of kinds: BATPAK_LIST("a.b", "c.d"). */
#define BATPAK_LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

/* What describe() returns: name (it keys the checkpoint), version, consumed
 * kinds, optional entity prefix and scope (NULL: any), emitted kinds
 * (proposals name them by index), canal (0: cursor-guaranteed, 1: lossy
 * subscription) and largest batch (0: the host's default). */
typedef struct {
  const char *name;
  const char *version;
  const char *const *consumes;
  const char *const *emits;
  const char *entity_prefix;
  const char *scope;
  uint8_t canal;
  uint32_t max_batch;
} batpak_declaration;

/* ---- Component glue (after the generated reactor_plugin.h) ---- */
#ifdef __BINDINGS_REACTOR_PLUGIN_H

static inline reactor_plugin_list_string_t batpak_string_list_(const char *const *items) {
  reactor_plugin_list_string_t l = {NULL, 0};
  while (items && items[l.len]) l.len++;
  if (l.len) {
    l.ptr = (reactor_plugin_string_t *)malloc(l.len * sizeof *l.ptr);
    if (!l.ptr) abort();
    for (size_t i = 0; i < l.len; i++) reactor_plugin_string_dup(&l.ptr[i], items[i]);
  }
  return l;
}

/* Fills the descriptor from a declaration (heap copies: the generated
 * post-return code frees them). */
static inline void batpak_describe(exports_batpak_reactor_reactor_descriptor_t *ret, const batpak_declaration *d) {
  reactor_plugin_string_dup(&ret->name, d->name);
  reactor_plugin_string_dup(&ret->version, d->version);
  ret->region.kinds = batpak_string_list_(d->consumes);
  ret->region.entity_prefix.is_some = d->entity_prefix != NULL;
  if (d->entity_prefix) reactor_plugin_string_dup(&ret->region.entity_prefix.val, d->entity_prefix);
  ret->region.scope.is_some = d->scope != NULL;
  if (d->scope) reactor_plugin_string_dup(&ret->region.scope.val, d->scope);
  ret->canal = d->canal;
  ret->emits = batpak_string_list_(d->emits);
  ret->max_batch = d->max_batch;
}

/* Writes the host's log at a BATPAK_REACTOR_TYPES_LEVEL_*, printf-style. */
static inline void batpak_log(batpak_reactor_types_level_t level, const char *fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  reactor_plugin_string_t line = {(uint8_t *)text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1};
  batpak_reactor_host_log(level, &line);
}

/* One event read from the store, its names and payload as batpak_bytes
 * (valid during the callback). */
typedef struct {
  batpak_id id;
  uint64_t sequence, entity_sequence, timestamp_us;
  batpak_bytes entity, scope, kind, payload;
} batpak_stored;

static inline batpak_stored batpak_stored_view_(const batpak_reactor_host_stored_event_t *e) {
  batpak_stored s;
  s.id.hi = e->id.hi;
  s.id.lo = e->id.lo;
  s.sequence = e->sequence;
  s.entity_sequence = e->entity_sequence;
  s.timestamp_us = e->timestamp_us;
  s.entity.ptr = e->coordinate.entity.ptr, s.entity.len = e->coordinate.entity.len;
  s.scope.ptr = e->coordinate.scope.ptr, s.scope.len = e->coordinate.scope.len;
  s.kind.ptr = e->kind.ptr, s.kind.len = e->kind.len;
  s.payload.ptr = e->payload.ptr, s.payload.len = e->payload.len;
  return s;
}

/* Calls each(&event, ctx) for every event of `entity` with an entity
 * sequence above `after`, in order, reading 100 at a time; each returns
 * false to stop. */
static inline void batpak_entity_events(batpak_bytes entity, uint64_t after,
                                        bool (*each)(const batpak_stored *, void *), void *ctx) {
  for (;;) {
    batpak_reactor_host_list_stored_event_t page;
    reactor_plugin_string_t name = {(uint8_t *)entity.ptr, entity.len};
    batpak_reactor_host_read_entity(&name, after, 100, &page);
    bool more = page.len == 100;
    for (size_t i = 0; i < page.len; i++) {
      batpak_stored s = batpak_stored_view_(&page.ptr[i]);
      after = s.entity_sequence;
      if (!each(&s, ctx)) {
        more = false;
        break;
      }
    }
    batpak_reactor_host_list_stored_event_free(&page);
    if (!more) return;
  }
}

/* The event with this id: calls each(&event, ctx) and returns true, or
 * returns false when there is none. */
static inline bool batpak_get_event(batpak_id id, bool (*each)(const batpak_stored *, void *), void *ctx) {
  batpak_reactor_host_event_id_t wid = {id.hi, id.lo};
  batpak_reactor_host_stored_event_t e;
  if (!batpak_reactor_host_get_event(&wid, &e)) return false;
  batpak_stored s = batpak_stored_view_(&e);
  each(&s, ctx);
  batpak_reactor_host_stored_event_free(&e);
  return true;
}

/* The react export over on_batch(const batpak_batch *, batpak_out *,
 * batpak_error *) -> bool. */
static inline bool batpak_react_(bool (*on_batch)(const batpak_batch *, batpak_out *, batpak_error *),
                                 reactor_plugin_list_u8_t *batch, reactor_plugin_list_u8_t *ret,
                                 exports_batpak_reactor_reactor_react_error_t *err) {
  batpak_batch b;
  batpak_out out = BATPAK_OUT_INIT;
  batpak_error e;
  bool ok;
  memset(&e, 0, sizeof e);
  if (!batpak_batch_open(&b, batch->ptr, batch->len)) {
    ok = batpak_error_at(&e, NULL, "malformed batch buffer (%zu bytes)", batch->len);
  } else if ((ok = on_batch(&b, &out, &e))) {
    ok = batpak_out_finish(&out, &ret->ptr, &ret->len);
    if (!ok) batpak_error_at(&e, NULL, "out of memory writing the proposals");
  }
  batpak_out_free(&out);
  reactor_plugin_list_u8_free(batch);
  if (!ok) {
    reactor_plugin_string_dup(&err->message, e.message[0] ? e.message : "on_batch failed without a message");
    err->event.is_some = e.has_event;
    err->event.val = e.event;
  }
  return ok;
}

/* Defines describe, init (on_init(config, len, err) -> bool, or NULL) and
 * react (on_batch) for the declaration `decl`. */
#define BATPAK_REACTOR_INIT(decl, on_init, on_batch)                                                  \
  void exports_batpak_reactor_reactor_describe(exports_batpak_reactor_reactor_descriptor_t *ret) {    \
    batpak_describe(ret, &(decl));                                                                    \
  }                                                                                                   \
  bool exports_batpak_reactor_reactor_init(reactor_plugin_string_t *config, reactor_plugin_string_t *err) { \
    batpak_error e;                                                                                   \
    bool (*init_)(const char *, size_t, batpak_error *) = (on_init);                                  \
    bool ok = init_ ? init_((const char *)config->ptr, config->len, &e) : true;                       \
    reactor_plugin_string_free(config);                                                               \
    if (!ok) reactor_plugin_string_dup(err, e.message);                                               \
    return ok;                                                                                        \
  }                                                                                                   \
  bool exports_batpak_reactor_reactor_react(reactor_plugin_list_u8_t *batch, reactor_plugin_list_u8_t *ret, \
                                            exports_batpak_reactor_reactor_react_error_t *err) {      \
    return batpak_react_((on_batch), batch, ret, err);                                                \
  }

/* BATPAK_REACTOR_INIT without an init hook. */
#define BATPAK_REACTOR(decl, on_batch) BATPAK_REACTOR_INIT(decl, NULL, on_batch)

#endif /* __BINDINGS_REACTOR_PLUGIN_H */
#endif /* BATPAK_H */
