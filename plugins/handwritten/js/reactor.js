// Hand-written buffer code, kept to measure the SDK against (see
// plugins/handwritten/README.md): plugins/passthrough-js before it used the SDK.
// passthrough-js: the pass-through reactor in JavaScript (componentize-qjs,
// the QuickJS backend).
//
// Consumes `bench.in`; for every event proposes one `bench.out` on the same
// entity and scope with the same payload bytes, caused by the source event.
// Same behaviour as the Rust `passthrough` and the C and Python versions:
// the languages test compares their reactions.
//
// `react` takes the batch as one byte buffer (a Uint8Array) and returns the
// proposals as one byte buffer; wit/reactor.wit describes both layouts (at
// `react`). A DataView reads and writes their little-endian fields.
//
// Build (from the repository root; --sync is required, see the guide):
//   componentize-qjs --sync --wit wit --world reactor-plugin \
//       --js plugins/passthrough-js/reactor.js -o passthrough_js.wasm
//
// QuickJS maps list<u8> to Uint8Array, records to objects with camelCase
// keys, variants to {tag, val}, enums to their case name. There is no
// TextEncoder/TextDecoder in QuickJS.

// Both engines: componentize-qjs has one default export, componentize-js
// named exports (the one change from the QuickJS-only original).
import * as imported from "batpak:reactor/host@0.2.0";
const host = imported.default ?? imported;

// Sizes from the layouts in wit/reactor.wit.
const BATCH_HEADER = 16, EVENT = 96, OUT_HEADER = 8, PROPOSAL = 56;

// String j of the batch's string table. (escape + decodeURIComponent
// decodes UTF-8 without TextDecoder.)
function batchString(view, j) {
  const count = view.getUint32(4, true), table = view.getUint32(8, true);
  const start = table + 8 * count + view.getUint32(table + 8 * j, true);
  const bytes = new Uint8Array(view.buffer, view.byteOffset + start, view.getUint32(table + 8 * j + 4, true));
  return decodeURIComponent(escape(String.fromCharCode(...bytes)));
}

export const reactor = {
  describe() {
    return {
      name: "passthrough-js",
      version: "0.1.0",
      region: { kinds: ["bench.in"], entityPrefix: null, scope: null },
      canal: "cursor-guaranteed",
      emits: ["bench.out"], // proposals name it as kind 0
      maxBatch: 0,
    };
  },

  // Throwing a string refuses the plugin with that message.
  init(config) {},

  // Throwing { message: "...", event: i } fails the call.
  react(batch) {
    const input = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
    const n = input.getUint32(0, true);
    const payloads = input.getUint32(12, true);

    // The output: header, n records, then a copy of every payload.
    let data = OUT_HEADER + PROPOSAL * n; // where payloads go
    let size = data;
    for (let i = 0; i < n; i++) size += input.getUint32(BATCH_HEADER + EVENT * i + 92, true);
    // Zeroed, so every field not set below is 0: the reserved fields, entity
    // and scope length 0 (the source event's), causation 0 (the source event).
    const out = new Uint8Array(size);
    const view = new DataView(out.buffer);
    view.setUint32(0, n, true);
    for (let i = 0; i < n; i++) {
      const e = BATCH_HEADER + EVENT * i, p = OUT_HEADER + PROPOSAL * i;
      const offset = input.getUint32(e + 88, true), len = input.getUint32(e + 92, true);
      view.setUint32(p + 0, i, true); // source: event i of the batch
      view.setUint32(p + 4, 0, true); // kind: emits[0], "bench.out"
      view.setUint32(p + 24, data, true); // payload: a copy of the event's
      view.setUint32(p + 28, len, true);
      out.set(batch.subarray(payloads + offset, payloads + offset + len), data);
      data += len;
    }

    const entity = batchString(input, input.getUint32(BATCH_HEADER + 72, true));
    host.log("debug", `${n} events, the first on ${entity}`);
    return out;
  },
};
