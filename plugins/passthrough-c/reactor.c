// passthrough-c: the pass-through reactor in C, on the batpak.h SDK
// (guest-sdk/c/batpak.h; C bindings generated from wit/ by
// `batpak-build c-bindings`).
//
// Consumes `bench.in`; for every event proposes one `bench.out` on the same
// entity and scope with the same payload bytes, caused by the source event.
// Same behaviour as the Rust `passthrough` and the Python and JavaScript
// versions: the languages test compares their reactions.
//
// BATPAK_REACTOR writes the describe, init and react exports: react opens
// the batch, calls on_batch, and returns the proposals it wrote (or the
// error it set: `return batpak_error_at(err, &e, "why %d", n);` parks e).

#include "reactor_plugin.h"  // the generated bindings, first
#include "batpak.h"

enum { BENCH_OUT };  // proposals name a kind by its index in emits

static const batpak_declaration DECLARATION = {
    .name = "passthrough-c",
    .version = "0.1.0",
    .consumes = BATPAK_LIST("bench.in"),
    .emits = BATPAK_LIST("bench.out"),
};

static bool on_batch(const batpak_batch *batch, batpak_out *out, batpak_error *err) {
  (void)err;
  BATPAK_FOR_EACH(batch, e) {
    batpak_propose(out, &e, .kind = BENCH_OUT, .payload = batpak_event_payload(&e));
  }
  return true;
}

BATPAK_REACTOR(DECLARATION, on_batch)
