// Unit tests of the JavaScript SDK against the contract's worked example
// (guest-sdk/WIT.md, "A worked example"). Run: node --test test/
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Batch, Output, ReactError, EventId, describe, makeReactor, toReactError, utf8Decode, utf8Encode,
} from "../core.js";

// The worked example: order.placed on order:1 and order:2 in scope shop,
// payloads {"q":1} and {"q":22}; ids, sequences and times filled in.
function workedExample() {
  const bytes = new Uint8Array(270 + 15);
  const v = new DataView(bytes.buffer);
  const u32 = (at, x) => v.setUint32(at, x, true);
  const u64 = (at, x) => v.setBigUint64(at, x, true);
  u32(0, 2); u32(4, 4); u32(8, 208); u32(12, 270);
  const events = [
    { id: [0x0102030405060708n, 0xfffffffffffffff1n], seq: 7n, eseq: 1n, entity: 0, payload: [0, 7], cause: null },
    { id: [0x1n, 0x2n], seq: 9n, eseq: 1n, entity: 3, payload: [7, 8], cause: [0x0102030405060708n, 0xfffffffffffffff1n] },
  ];
  events.forEach((e, i) => {
    const r = 16 + 96 * i;
    u64(r, e.id[0]); u64(r + 8, e.id[1]); u64(r + 16, e.seq); u64(r + 24, e.eseq);
    u64(r + 32, 0x0102030405060708n); u64(r + 40, 0xfffffffffffffff1n);
    if (e.cause) { u64(r + 48, e.cause[0]); u64(r + 56, e.cause[1]); u32(r + 84, 1); }
    u64(r + 64, 1_700_000_000_000_000n + BigInt(i));
    u32(r + 72, e.entity); u32(r + 76, 1); u32(r + 80, 2);
    u32(r + 88, e.payload[0]); u32(r + 92, e.payload[1]);
  });
  [[0, 7], [7, 4], [11, 12], [23, 7]].forEach(([o, l], j) => { u32(208 + 8 * j, o); u32(212 + 8 * j, l); });
  bytes.set(utf8Encode("order:1shoporder.placedorder:2"), 240);
  bytes.set(utf8Encode('{"q":1}{"q":22}'), 270);
  return bytes;
}

test("the worked example's header bytes are the ones the guide prints", () => {
  const b = workedExample();
  assert.deepEqual([...b.subarray(0, 16)], [2, 0, 0, 0, 4, 0, 0, 0, 0xd0, 0, 0, 0, 0x0e, 1, 0, 0]);
  assert.deepEqual([...b.subarray(224, 232)], [0x0b, 0, 0, 0, 0x0c, 0, 0, 0]);
});

test("a batch reads as event views: names, ids, causation, payload in place", () => {
  const bytes = workedExample();
  const batch = new Batch(bytes);
  assert.equal(batch.length, 2);
  const [a, b] = batch;
  assert.deepEqual([a.entity, a.scope, a.kind], ["order:1", "shop", "order.placed"]);
  assert.deepEqual([b.entity, b.scope, b.kind], ["order:2", "shop", "order.placed"]);
  assert.equal(a.index, 0);
  assert.equal(b.index, 1);
  assert.equal(a.id.toHex(), "0102030405060708fffffffffffffff1");
  assert.equal(a.id.hi, 0x0102030405060708n);
  assert.equal(b.id.toString(), "00000000000000010000000000000002");
  assert.equal(a.sequence, 7n);
  assert.equal(b.sequence, 9n);
  assert.equal(a.entitySequence, 1n);
  assert.equal(a.timestampUs, 1_700_000_000_000_000n);
  assert.equal(a.causation, undefined);
  assert.ok(b.causation.equals(a.id));
  assert.ok(b.correlation.equals("0102030405060708fffffffffffffff1"));
  assert.deepEqual(b.json(), { q: 22 });
  assert.equal(a.text(), '{"q":1}');
  // The payload is a view of the batch buffer: same memory, no copy.
  assert.equal(b.payload.buffer, bytes.buffer);
  assert.equal(b.payload.byteOffset, 277);
  assert.equal(b.payload.length, 8);
  assert.equal(batch.get(2), undefined);
});

test("a batch inside a larger buffer is read through its own window", () => {
  const inner = workedExample();
  const outer = new Uint8Array(inner.length + 13);
  outer.set(inner, 13);
  const batch = new Batch(outer.subarray(13));
  assert.equal(batch.get(1).entity, "order:2");
  assert.deepEqual(batch.get(1).json(), { q: 22 });
});

test("a truncated batch is refused with a RangeError naming the sizes", () => {
  assert.throws(() => new Batch(workedExample().subarray(0, 100)), /does not hold 2 events/);
  assert.throws(() => new Batch(new Uint8Array(3)), /shorter than its header/);
});

function decode(out) {
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const n = v.getUint32(0, true);
  assert.equal(v.getUint32(4, true), 0);
  const range = (at) => {
    const o = v.getUint32(at, true), l = v.getUint32(at + 4, true);
    return l === 0 ? null : out.subarray(o, o + l);
  };
  return Array.from({ length: n }, (_, k) => {
    const r = 8 + 56 * k;
    assert.equal(v.getUint32(r + 36, true), 0, "reserved");
    const name = (at) => { const x = range(at); return x && utf8Decode(x); };
    return {
      source: v.getUint32(r, true), kind: v.getUint32(r + 4, true),
      entity: name(r + 8), scope: name(r + 16), payload: utf8Decode(range(r + 24) ?? new Uint8Array(0)),
      causation: v.getUint32(r + 32, true),
      cause: new EventId(v.getBigUint64(r + 40, true), v.getBigUint64(r + 48, true)).toHex(),
    };
  });
}

test("proposals are written in the flat layout: defaults, JSON and bytes, causes", () => {
  const batch = new Batch(workedExample());
  const [a, b] = batch;
  const out = new Output(["order.checked", "order.flagged"]);
  out.propose(a, { kind: "order.checked", payload: a.payload });
  out.propose(b, { kind: "order.flagged", payload: { why: "grüße" }, entity: "audit:1", causedBy: a });
  out.propose(b, { kind: "order.checked", scope: "other", causedBy: null });
  out.propose(b, { kind: "order.checked", payload: "text", causedBy: EventId.fromHex("000000000000000a000000000000000b") });
  const got = decode(out.toBytes());
  const zero = "0".repeat(32);
  assert.deepEqual(got, [
    { source: 0, kind: 0, entity: null, scope: null, payload: '{"q":1}', causation: 0, cause: zero },
    { source: 1, kind: 1, entity: "audit:1", scope: null, payload: '{"why":"grüße"}', causation: 1, cause: "0102030405060708fffffffffffffff1" },
    { source: 1, kind: 0, entity: null, scope: "other", payload: "", causation: 2, cause: zero },
    { source: 1, kind: 0, entity: null, scope: null, payload: '"text"', causation: 1, cause: "000000000000000a000000000000000b" },
  ]);
  assert.equal(new Output([]).toBytes().length, 0);
});

test("batch payloads are copied by their place in the batch: in order, reversed, repeated, mixed", () => {
  // The three-event batch: the worked example's two events and a third
  // whose payload follows the second's in the batch.
  const bytes = new Uint8Array(workedExample().length + 96 + 4);
  {
    const one = workedExample();
    const v = new DataView(bytes.buffer);
    bytes.set(one.subarray(0, 208), 0); // header, records 0 and 1
    bytes.set(one.subarray(112, 208), 208); // record 2 = record 1 ...
    v.setUint32(208 + 88, 15, true); // ... with payload 15..19
    v.setUint32(208 + 92, 4, true);
    bytes.set(one.subarray(208), 304); // string table, names, payloads
    v.setUint32(0, 3, true); v.setUint32(8, 304, true); v.setUint32(12, 366, true);
    bytes.set(utf8Encode("[42]"), 366 + 15);
  }
  const batch = new Batch(bytes);
  const [a, b, c] = batch;
  assert.equal(c.text(), "[42]");
  const out = new Output(["x"]);
  const p = (source, payload, more = {}) => out.propose(source, { kind: "x", payload, ...more });
  p(a, a.payload); p(b, b.payload); p(c, c.payload); // one run
  p(c, c.payload); p(a, a.payload); // out of order
  const bView = b.payload;
  p(a, c.payload); p(b, bView); // a view handed out before the last one
  p(b, b.payload, { entity: "e:9" }); p(c, c.payload, { scope: "s" }); // names between two runs
  p(a, { j: 1 }); p(b, b.payload); p(a, new Uint8Array(0)); p(a, a.payload);
  const got = decode(out.toBytes()).map((x) => [x.source, x.entity, x.payload]);
  assert.deepEqual(got, [
    [0, null, '{"q":1}'], [1, null, '{"q":22}'], [2, null, "[42]"],
    [2, null, "[42]"], [0, null, '{"q":1}'],
    [0, null, "[42]"], [1, null, '{"q":22}'],
    [1, "e:9", '{"q":22}'], [2, null, "[42]"],
    [0, null, '{"j":1}'], [1, null, '{"q":22}'], [0, null, ""], [0, null, '{"q":1}'],
  ]);
  // A view of another batch is copied as the bytes it is.
  const other = new Batch(workedExample());
  const [oa] = other;
  out.propose(a, { kind: "x", payload: oa.payload });
  assert.deepEqual(decode(out.toBytes()).at(-1).payload, '{"q":1}');
  // An unaligned batch (no u32 view) proposes the same.
  const outer = new Uint8Array(bytes.length + 1);
  outer.set(bytes, 1);
  const shifted = new Batch(outer.subarray(1));
  const o2 = new Output(["x"]);
  for (const e of shifted) o2.propose(e, { kind: "x", payload: e.payload });
  assert.deepEqual(decode(o2.toBytes()).map((x) => x.payload), ['{"q":1}', '{"q":22}', "[42]"]);
});

test("proposing an undeclared kind throws naming the kind and emits", () => {
  const out = new Output(["a.b"]);
  const [e] = new Batch(workedExample());
  assert.throws(() => out.propose(e, { kind: "x.y" }), /"x.y" is not declared in emits \(a.b\)/);
});

test("errors: a ReactError names the event to park; other errors name none", () => {
  const [, b] = new Batch(workedExample());
  assert.deepEqual(toReactError(new ReactError("bad order", b)), { message: "bad order", event: 1 });
  assert.deepEqual(toReactError(new ReactError("bad", 0)), { message: "bad", event: 0 });
  assert.deepEqual(toReactError(new TypeError("oops")), { message: "TypeError: oops", event: undefined });
  assert.deepEqual(toReactError("plain"), { message: "plain", event: undefined });
});

test("describe builds the WIT descriptor from a declaration", () => {
  assert.deepEqual(describe({ name: "inv", consumes: ["order.placed"], emits: ["stock.low"], maxBatch: 50 }), {
    name: "inv", version: "0.1.0",
    region: { kinds: ["order.placed"], entityPrefix: undefined, scope: undefined },
    canal: "cursor-guaranteed", emits: ["stock.low"], maxBatch: 50,
  });
  assert.equal(describe({ name: "x", scope: "shop", canal: "lossy-subscription" }).region.scope, "shop");
  assert.throws(() => describe({ name: "Bad Name" }), /a-z, 0-9/);
  assert.throws(() => describe({ name: "x", canal: "fast" }), /cursor-guaranteed/);
});

test("the reactor export: react returns the proposals buffer, errors map to react-error", () => {
  const logged = [];
  const host = {
    log: (level, msg) => logged.push([level, msg]),
    getEvent: () => undefined,
    readEntity: () => [],
  };
  const r = makeReactor({
    describe: { name: "t", consumes: ["order.placed"], emits: ["order.seen"] },
    init: (config, api) => ({ factor: config.factor ?? 1 }),
    react(batch, out, state, api) {
      for (const e of batch) {
        if (e.json().q > 20) throw new ReactError("q too large", e);
        out.propose(e, { kind: "order.seen", payload: { q: e.json().q * state.factor } });
      }
      api.log("info", `${batch.length} events`);
    },
  }, host);
  assert.equal(r.describe().name, "t");
  r.init('{"factor": 3}');
  assert.throws(() => r.react(workedExample()), (e) => e.message === "q too large" && e.event === 1);
  const ok = workedExample().subarray(0); // one event only: count = 1
  new DataView(ok.buffer).setUint32(0, 1, true);
  assert.deepEqual(decode(r.react(ok)).map((p) => p.payload), ['{"q":3}']);
  assert.deepEqual(logged, [["info", "1 events"]]);
  assert.throws(() => r.init("{not json"), (e) => typeof e === "string" && e.startsWith("SyntaxError"));
});

test("host reads normalise ids and u64 to EventId and BigInt on either engine", async () => {
  const { hostApi } = await import("../core.js");
  const seen = [];
  const host = {
    log() {},
    getEvent: (id) => {
      seen.push([typeof id.hi, id.hi, id.lo]);
      return { id, sequence: 3, entitySequence: 1, coordinate: { entity: "e", scope: "s" }, kind: "k",
        causation: undefined, correlation: id, timestampUs: 5, payload: new Uint8Array([123, 125]) };
    },
    readEntity: (entity, after, max) => {
      seen.push([typeof after, after, max]);
      return [{ id: { hi: 1n, lo: 2n }, sequence: 4n, entitySequence: 2n,
        coordinate: { entity, scope: "s" }, kind: "k", causation: { hi: 0n, lo: 9n }, correlation: { hi: 1n, lo: 2n },
        timestampUs: 6n, payload: new Uint8Array([49]) }];
    },
  };
  // SpiderMonkey: u64 as BigInt.
  const sm = hostApi(host, false);
  const e = sm.getEvent("00000000000000010000000000000002");
  assert.deepEqual(seen.pop(), ["bigint", 1n, 2n]);
  assert.equal(e.sequence, 3n);
  assert.equal(e.id.toHex(), "00000000000000010000000000000002");
  assert.deepEqual(e.json(), {});
  const [s] = sm.readEntity("order:1", 1n, 10);
  assert.deepEqual(seen.pop(), ["bigint", 1n, 10]);
  assert.equal(s.entity, "order:1");
  assert.equal(s.causation.toHex(), "00000000000000000000000000000009");
  assert.equal(s.json(), 1);
  // QuickJS: u64 as Number, and refused (not rounded) above 2^53.
  const qjs = hostApi(host, true);
  qjs.getEvent(new EventId(1, 2));
  assert.deepEqual(seen.pop(), ["number", 1, 2]);
  qjs.readEntity("order:1", 5n);
  assert.deepEqual(seen.pop(), ["number", 5, 1024]);
  assert.throws(() => qjs.getEvent("0102030405060708fffffffffffffff1"), /above 2\^53: QuickJS/);
  assert.equal(seen.length, 0);
});

test("entityEvents reads every page of an entity, after the last entity-sequence of the one before", async () => {
  const { hostApi } = await import("../core.js");
  const asked = [];
  const host = {
    readEntity: (entity, after, max) => {
      asked.push([after, max]);
      const first = Number(after) + 1;
      const n = Math.max(0, Math.min(max, 5 - Number(after)));
      return Array.from({ length: n }, (_, i) => ({ id: { hi: 0n, lo: BigInt(first + i) }, sequence: BigInt(first + i),
        entitySequence: BigInt(first + i), coordinate: { entity, scope: "s" }, kind: "k", correlation: { hi: 0n, lo: 1n },
        timestampUs: 0n, payload: new Uint8Array([48 + first + i]) }));
    },
  };
  const all = [...hostApi(host, false).entityEvents("sku:a", 0n, 2)];
  assert.deepEqual(all.map((e) => e.json()), [1, 2, 3, 4, 5]);
  assert.deepEqual(asked, [[0n, 2], [2n, 2], [4n, 2]]);
  asked.length = 0;
  assert.deepEqual([...hostApi(host, true).entityEvents("sku:a", 3)].map((e) => e.json()), [4, 5]);
  assert.deepEqual(asked, [[3, 100]]);
});

test("a batch array from another realm (as componentize-js hands it over) is read in place", async () => {
  const vm = await import("node:vm");
  const mine = workedExample();
  // A Uint8Array of another global: `instanceof Uint8Array` is false for it.
  const foreign = vm.runInNewContext("new Uint8Array(n)", { n: mine.length });
  foreign.set(mine);
  assert.equal(foreign instanceof Uint8Array, false);
  const batch = new Batch(foreign);
  assert.equal(batch.bytes, foreign, "the batch was copied");
  const [a, b] = batch;
  assert.equal(b.entity, "order:2");
  const out = new Output(["x.y"]);
  out.propose(a, { kind: "x.y", payload: a.payload });
  out.propose(b, { kind: "x.y", payload: b.payload });
  // Sent as bytes, not as the JSON of a typed array.
  assert.deepEqual(decode(out.toBytes()).map((p) => p.payload), ['{"q":1}', '{"q":22}']);
});
