// Hand-written buffer code, kept to measure the SDK against (see
// plugins/handwritten/README.md): plugins/passthrough-c before it used batpak.h.
// passthrough-c: the pass-through reactor in C (clang for wasm32-wasi, C
// bindings generated from wit/ by `batpak-build c-bindings`).
//
// Consumes `bench.in`; for every event proposes one `bench.out` on the same
// entity and scope with the same payload bytes, caused by the source event.
// Same behaviour as the Rust `passthrough` and the Python and JavaScript
// versions: the languages test compares their reactions.
//
// `react` takes the batch as one byte buffer and returns the proposals as
// one byte buffer; wit/reactor.wit describes both layouts (at `react`).
// Fields are little-endian like wasm itself, and the buffers may sit at any
// address, so every field is read and written with memcpy.
//
// Ownership (wit-bindgen's C rules):
// - arguments of an export (the batch, the config) belong to the callee:
//   free them with the generated *_free function when done;
// - everything an export returns (the proposals buffer, strings, lists, the
//   descriptor) is freed by the generated post-return code after the host
//   copied it, so it must be heap memory: use reactor_plugin_string_dup,
//   never reactor_plugin_string_set with a literal (that traps with "out of
//   bounds memory access" in describe());
// - arguments of an import (the log message) stay the caller's:
//   reactor_plugin_string_set over a literal is fine there.
//
// snprintf into a buffer needs no WASI with zig's wasi-libc (Debian's
// pulls in WASI preview 1 for it); printf and other stream I/O do. A module
// that imports WASI preview 1 gets the preview-1 reactor adapter from
// `batpak-build component`, and the component then imports WASI preview 2,
// which the host links with nothing granted.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reactor_plugin.h"

// Sizes from the layouts in wit/reactor.wit.
enum { BATCH_HEADER = 16, EVENT = 96, OUT_HEADER = 8, PROPOSAL = 56 };

static uint32_t get32(const uint8_t *buf, size_t at) {
  uint32_t v;
  memcpy(&v, buf + at, sizeof v);
  return v;
}

static void put32(uint8_t *buf, size_t at, uint32_t v) {
  memcpy(buf + at, &v, sizeof v);
}

// String j of the batch's string table: its bytes, and its length in *len.
static const uint8_t *batch_string(const uint8_t *batch, uint32_t j,
                                   uint32_t *len) {
  uint32_t count = get32(batch, 4), table = get32(batch, 8);
  *len = get32(batch, table + 8 * (size_t)j + 4);
  return batch + table + 8 * (size_t)count + get32(batch, table + 8 * (size_t)j);
}

static reactor_plugin_list_string_t string_list(const char *only) {
  reactor_plugin_list_string_t list;
  list.len = 1;
  list.ptr = malloc(sizeof(reactor_plugin_string_t));
  reactor_plugin_string_dup(&list.ptr[0], only);
  return list;
}

void exports_batpak_reactor_reactor_describe(
    exports_batpak_reactor_reactor_descriptor_t *ret) {
  reactor_plugin_string_dup(&ret->name, "passthrough-c");
  reactor_plugin_string_dup(&ret->version, "0.1.0");
  ret->region.kinds = string_list("bench.in");
  ret->region.entity_prefix.is_some = false;
  ret->region.scope.is_some = false;
  ret->canal = BATPAK_REACTOR_TYPES_CANAL_KIND_CURSOR_GUARANTEED;
  ret->emits = string_list("bench.out");  // proposals name it as kind 0
  ret->max_batch = 0;
}

bool exports_batpak_reactor_reactor_init(reactor_plugin_string_t *config,
                                         reactor_plugin_string_t *err) {
  // Returning false with *err set (a heap string) refuses the plugin.
  (void)err;
  reactor_plugin_string_free(config);
  return true;
}

bool exports_batpak_reactor_reactor_react(
    reactor_plugin_list_u8_t *batch, reactor_plugin_list_u8_t *ret,
    exports_batpak_reactor_reactor_react_error_t *err) {
  // Returning false with err->message (a heap string) and err->event fails
  // the call; see the guide.
  (void)err;
  const uint8_t *in = batch->ptr;
  uint32_t n = get32(in, 0);
  uint32_t payloads = get32(in, 12);

  // The output: header, n records, then a copy of every payload.
  size_t data = OUT_HEADER + PROPOSAL * (size_t)n;  // where payloads go
  size_t size = data;
  for (uint32_t i = 0; i < n; i++) size += get32(in, BATCH_HEADER + EVENT * i + 92);
  // Zeroed, so every field not set below is 0: the reserved fields, entity
  // and scope length 0 (the source event's), causation 0 (the source event).
  uint8_t *out = calloc(size, 1);
  if (!out) abort();
  put32(out, 0, n);
  for (uint32_t i = 0; i < n; i++) {
    size_t e = BATCH_HEADER + EVENT * (size_t)i;
    size_t p = OUT_HEADER + PROPOSAL * (size_t)i;
    uint32_t offset = get32(in, e + 88), len = get32(in, e + 92);
    put32(out, p + 0, i);  // source: event i of the batch
    put32(out, p + 4, 0);  // kind: emits[0], "bench.out"
    put32(out, p + 24, (uint32_t)data);  // payload: a copy of the event's
    put32(out, p + 28, len);
    memcpy(out + data, in + payloads + offset, len);
    data += len;
  }

  // An import's arguments stay ours: a stack buffer is fine here.
  uint32_t entity_len;
  const uint8_t *entity = batch_string(in, get32(in, BATCH_HEADER + 72), &entity_len);
  char text[300];
  int len = snprintf(text, sizeof text, "%u events, the first on %.*s", n,
                     (int)entity_len, (const char *)entity);
  reactor_plugin_string_t line = {(uint8_t *)text, (size_t)len};
  batpak_reactor_host_log(BATPAK_REACTOR_TYPES_LEVEL_DEBUG, &line);

  ret->ptr = out;
  ret->len = size;
  // The batch is ours: free it (everything above was copied out of it).
  reactor_plugin_list_u8_free(batch);
  return true;
}
