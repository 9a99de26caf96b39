// passthrough-js: the pass-through reactor in JavaScript, on the SDK
// (guest-sdk/js, npm package batpak-reactor).
//
// Consumes `bench.in`; for every event proposes one `bench.out` on the same
// entity and scope with the same payload bytes, caused by the source event.
// Same behaviour as the Rust `passthrough` and the C and Python versions:
// the languages test compares their reactions, built with both engines.
//
// Build (from the repository root), SpiderMonkey (the default):
//   componentize-js --wit wit --world-name reactor-plugin -d http -d fetch-event \
//       --out passthrough_js.wasm plugins/passthrough-js/reactor.js
// or QuickJS (--sync is required, see the guide):
//   componentize-qjs --sync --wit wit --world reactor-plugin \
//       --js plugins/passthrough-js/reactor.js -o passthrough_js.wasm

import { defineReactor, log } from "../../guest-sdk/js/index.js";

export const reactor = defineReactor({
  describe: {
    name: "passthrough-js",
    consumes: ["bench.in"],
    emits: ["bench.out"],
  },

  // A thrown ReactError(message, event) fails the call and parks that event.
  react(batch, out) {
    for (const event of batch) {
      // Entity, scope and cause default to the source event's; the payload
      // is a view into the batch, copied once into the proposals buffer.
      out.propose(event, { kind: "bench.out", payload: event.payload });
    }
    log("debug", `${batch.length} events, the first on ${batch.get(0).entity}`);
  },
});
