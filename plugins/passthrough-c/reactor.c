// passthrough-c: the pass-through reactor in C (clang for wasm32-wasi, C
// bindings generated from wit/ by `batpak-build c-bindings`).
//
// Consumes `bench.in`; for every event proposes one `bench.out` on the same
// entity and scope with the same payload bytes, caused by the source event.
// Same behaviour as the Rust `passthrough` and the Python and JavaScript
// versions: the languages test compares their reactions.
//
// Ownership (wit-bindgen's C rules):
// - arguments of an export (the batch, the config) belong to the callee:
//   free them with the generated *_free function when done;
// - everything an export returns (strings, lists, the descriptor) is freed
//   by the generated post-return code after the host copied it, so it must
//   be heap memory: use reactor_plugin_string_dup, never
//   reactor_plugin_string_set with a literal (that traps with "out of
//   bounds memory access" in describe());
// - arguments of an import (the log message) stay the caller's:
//   reactor_plugin_string_set over a literal is fine there.
//
// snprintf (libc I/O) makes the core module import WASI preview 1;
// `batpak-build component` then links the preview-1 reactor adapter, and the
// component imports WASI preview 2, which the host links with nothing
// granted. Without libc I/O the component imports nothing from WASI.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reactor_plugin.h"

typedef batpak_reactor_types_event_t event_t;

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
  ret->emits = string_list("bench.out");
  ret->max_batch = 0;
}

bool exports_batpak_reactor_reactor_init(reactor_plugin_string_t *config,
                                         reactor_plugin_string_t *err) {
  // Returning false with *err set (a heap string) refuses the plugin.
  (void)err;
  reactor_plugin_string_free(config);
  return true;
}

// A heap copy of `len` bytes (post-return frees it).
static uint8_t *copy(const uint8_t *src, size_t len) {
  uint8_t *dst = malloc(len ? len : 1);
  if (len) memcpy(dst, src, len);
  return dst;
}

bool exports_batpak_reactor_reactor_react(
    exports_batpak_reactor_reactor_batch_t *batch,
    exports_batpak_reactor_reactor_list_proposal_t *ret,
    exports_batpak_reactor_reactor_react_error_t *err) {
  (void)err;
  event_t *events = NULL;
  size_t n = 0;
  switch (batch->events.tag) {
    case BATPAK_REACTOR_TYPES_CANAL_BATCH_ONE:
      events = &batch->events.val.one;
      n = 1;
      break;
    case BATPAK_REACTOR_TYPES_CANAL_BATCH_MANY:
      events = batch->events.val.many.ptr;
      n = batch->events.val.many.len;
      break;
    default:
      break;
  }
  ret->len = n;
  ret->ptr = malloc((n ? n : 1) * sizeof(exports_batpak_reactor_reactor_proposal_t));
  for (size_t i = 0; i < n; i++) {
    const event_t *e = &events[i];
    const reactor_plugin_string_t *entity = &batch->strings.ptr[e->entity];
    const reactor_plugin_string_t *scope = &batch->strings.ptr[e->scope];
    exports_batpak_reactor_reactor_proposal_t *p = &ret->ptr[i];
    p->source = (uint32_t)i;
    p->coordinate.entity.ptr = copy(entity->ptr, entity->len);
    p->coordinate.entity.len = entity->len;
    p->coordinate.scope.ptr = copy(scope->ptr, scope->len);
    p->coordinate.scope.len = scope->len;
    reactor_plugin_string_dup(&p->kind, "bench.out");
    p->payload.ptr = copy(batch->payloads.ptr + e->payload_offset, e->payload_len);
    p->payload.len = e->payload_len;
    p->causation.tag = BATPAK_REACTOR_TYPES_CAUSATION_SOURCE;
  }
  // An import's arguments stay ours: a stack buffer is fine here.
  char text[64];
  int len = snprintf(text, sizeof text, "%zu events", n);
  reactor_plugin_string_t line = {(uint8_t *)text, (size_t)len};
  batpak_reactor_host_log(BATPAK_REACTOR_TYPES_LEVEL_DEBUG, &line);
  // The batch is ours: free it (everything above was copied out of it).
  exports_batpak_reactor_reactor_batch_free(batch);
  return true;
}
