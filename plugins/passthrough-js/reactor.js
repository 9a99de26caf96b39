// passthrough-js: the pass-through reactor in JavaScript (componentize-qjs,
// the QuickJS backend).
//
// Consumes `bench.in`; for every event proposes one `bench.out` on the same
// entity and scope with the same payload bytes, caused by the source event.
// Same behaviour as the Rust `passthrough` and the C and Python versions:
// the languages test compares their reactions.
//
// Build (from the repository root; --sync is required, see the guide):
//   componentize-qjs --sync --wit wit --world reactor-plugin \
//       --js plugins/passthrough-js/reactor.js -o passthrough_js.wasm
//
// QuickJS maps u64 to Number (exact up to 2^53), list<u8> to Uint8Array,
// records to objects with camelCase keys, variants to {tag, val}, enums to
// their case name. There is no TextEncoder/TextDecoder in QuickJS.

import host from "batpak:reactor/host@0.1.0";

// The events of a batch, whatever its variant (empty, one, many).
function eventsOf(batch) {
  switch (batch.events.tag) {
    case "one":
      return [batch.events.val];
    case "many":
      return batch.events.val;
    default:
      return [];
  }
}

export const reactor = {
  describe() {
    return {
      name: "passthrough-js",
      version: "0.1.0",
      region: { kinds: ["bench.in"], entityPrefix: null, scope: null },
      canal: "cursor-guaranteed",
      emits: ["bench.out"],
      maxBatch: 0,
    };
  },

  // Throwing a string refuses the plugin with that message.
  init(config) {},

  react(batch) {
    const events = eventsOf(batch);
    const out = events.map((e, index) => ({
      source: index,
      coordinate: { entity: batch.strings[e.entity], scope: batch.strings[e.scope] },
      kind: "bench.out",
      payload: batch.payloads.slice(e.payloadOffset, e.payloadOffset + e.payloadLen),
      causation: { tag: "source" },
    }));
    host.log("debug", `${out.length} events`);
    return out;
  },
};
