// batpak-reactor core: the batch view, the proposals writer, errors and the
// descriptor, with no host import (so Node's test runner can load it). The
// reactor imports index.js, which adds the host functions.
import {
  BATCH_HEADER_LEN, BATCH_RECORD_LEN, STRING_ENTRY_LEN, FLAG_HAS_CAUSATION, BATCH_FIELD as F,
  PROPOSALS_HEADER_LEN, PROPOSAL_RECORD_LEN, CAUSATION_SOURCE, CAUSATION_EVENT, CAUSATION_NONE,
  PROPOSAL_FIELD as P,
} from "./layout.js";

// ---- UTF-8 (QuickJS has no TextEncoder/TextDecoder) ----

const decoder = typeof TextDecoder === "function" ? new TextDecoder("utf-8", { fatal: true }) : null;
const encoder = typeof TextEncoder === "function" ? new TextEncoder() : null;

/** Decodes UTF-8 bytes to a string; throws TypeError on invalid UTF-8. */
export function utf8Decode(bytes) {
  if (decoder) return decoder.decode(bytes);
  let s = "";
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    let cp, n;
    if (b < 0x80) { cp = b; n = 1; }
    else if (b >= 0xc2 && b < 0xe0) { cp = b & 0x1f; n = 2; }
    else if (b >= 0xe0 && b < 0xf0) { cp = b & 0x0f; n = 3; }
    else if (b >= 0xf0 && b < 0xf5) { cp = b & 0x07; n = 4; }
    else throw new TypeError(`invalid UTF-8 at byte ${i}`);
    if (i + n > bytes.length) throw new TypeError(`truncated UTF-8 at byte ${i}`);
    for (let k = 1; k < n; k++) {
      const c = bytes[i + k];
      if ((c & 0xc0) !== 0x80) throw new TypeError(`invalid UTF-8 at byte ${i + k}`);
      cp = (cp << 6) | (c & 0x3f);
    }
    if ((n === 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) || (n === 4 && (cp < 0x10000 || cp > 0x10ffff)))
      throw new TypeError(`invalid UTF-8 at byte ${i}`);
    s += String.fromCodePoint(cp);
    i += n;
  }
  return s;
}

/** Encodes a string as UTF-8 bytes. */
export function utf8Encode(text) {
  if (encoder) return encoder.encode(text);
  const out = [];
  for (const ch of text) {
    const cp = ch.codePointAt(0);
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return Uint8Array.from(out);
}

// ---- ids ----

const MASK64 = (1n << 64n) - 1n;

/** A 128-bit event id: `hi` and `lo` as BigInt; prints as 32 lowercase hex digits. */
export class EventId {
  constructor(hi, lo) {
    this.hi = BigInt(hi) & MASK64;
    this.lo = BigInt(lo) & MASK64;
  }
  /** Parses 32 hex digits (the host's printed form). */
  static fromHex(hex) {
    if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError(`not an event id (32 hex digits): ${hex}`);
    return new EventId(BigInt("0x" + hex.slice(0, 16)), BigInt("0x" + hex.slice(16)));
  }
  /** The id from a WIT `event-id` record (`{hi, lo}` as Number or BigInt). */
  static from(value) {
    if (value instanceof EventId) return value;
    if (typeof value === "string") return EventId.fromHex(value);
    return new EventId(value.hi, value.lo);
  }
  toHex() {
    return this.hi.toString(16).padStart(16, "0") + this.lo.toString(16).padStart(16, "0");
  }
  toString() { return this.toHex(); }
  toJSON() { return this.toHex(); }
  equals(other) {
    const o = EventId.from(other);
    return o.hi === this.hi && o.lo === this.lo;
  }
}

// ---- errors ----

/**
 * A failed `react` call that names the event to park. Throw it from
 * `react`: the host retries the batch, then parks `event` (a batch event
 * or its index) without bisecting. Any other thrown value fails the call
 * with no event named, and the host bisects the batch to find it.
 */
export class ReactError extends Error {
  constructor(message, event) {
    super(message);
    this.name = "ReactError";
    /** The batch index of the event to park, or undefined. */
    this.event = event === undefined || event === null ? undefined
      : typeof event === "number" ? event : event.index;
  }
}

/** The WIT `react-error` for whatever `react` threw. */
export function toReactError(thrown) {
  if (thrown instanceof ReactError) return { message: thrown.message, event: thrown.event };
  if (thrown instanceof Error) {
    return { message: `${thrown.name}: ${thrown.message}`, event: undefined };
  }
  return { message: String(thrown), event: undefined };
}

// ---- the batch ----

// The layout numbers the hot paths use, as this module's own constants:
// an imported binding costs a lookup on every read in SpiderMonkey's
// interpreter (componentize-js has no JIT inside wasm), a local one does not.
const B_HEADER = BATCH_HEADER_LEN, B_RECORD = BATCH_RECORD_LEN;
const PAYLOAD_OFFSET = F.PAYLOAD_OFFSET, PAYLOAD_LEN = F.PAYLOAD_LEN;
// Words (u32) per event record, and the word of event 0's payload offset
// (its length is the next word).
const B_RECORD_WORDS = B_RECORD >> 2, PAYLOAD_WORD0 = (B_HEADER + PAYLOAD_OFFSET) >> 2;

// Little-endian platform (every wasm engine; Node on x86 and ARM): the
// buffers' u32 fields are read and written as Uint32Array elements, an
// element access instead of a DataView call.
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// Both engines interpret (neither has a JIT inside wasm), where every
// property access, call and allocation costs: the per-event path below
// (iterating, `payload`, `propose`, `toBytes`) is written to do as few as
// it can. Field reads of an event record: plain functions, not private
// methods (a class with private methods brands every instance at
// construction).
function recordAt(e) { return B_HEADER + B_RECORD * e.index; }
function u64At(e, field) { return e.batch.view.getBigUint64(recordAt(e) + field, true); }
function u32At(e, field) {
  const w = e.batch.words;
  return w !== null ? w[(recordAt(e) + field) >> 2] : e.batch.view.getUint32(recordAt(e) + field, true);
}

/** One event of a batch: a view into the batch buffer, nothing copied. */
export class Event {
  constructor(batch, index) {
    this.batch = batch;
    /** The event's batch index (0-based, delivery order). */
    this.index = index;
    // The payload view is made here, not in a getter: a getter call costs
    // more than the view, and nearly every reactor reads the payload.
    const w = batch.words;
    let start, len;
    if (w !== null) {
      const k = PAYLOAD_WORD0 + B_RECORD_WORDS * index;
      start = batch.payloads + w[k];
      len = w[k + 1];
    } else {
      const at = B_HEADER + B_RECORD * index;
      start = batch.payloads + batch.view.getUint32(at + PAYLOAD_OFFSET, true);
      len = batch.view.getUint32(at + PAYLOAD_LEN, true);
    }
    /** The payload bytes: a Uint8Array view into the batch, not a copy. */
    this.payload = batch.bytes.subarray(start, start + len);
    // The same view and its length, for `propose` to recognise it (and
    // copy it from the batch) even if `payload` is reassigned.
    this.view = this.payload;
    this.len = len;
  }
  /** The event's id. */
  get id() { return new EventId(u64At(this, F.ID_HI), u64At(this, F.ID_LO)); }
  /** Store-wide commit order (BigInt). */
  get sequence() { return u64At(this, F.SEQUENCE); }
  /** Position in its entity's stream, 1, 2, ... (BigInt). */
  get entitySequence() { return u64At(this, F.ENTITY_SEQUENCE); }
  /** The first event of its causal chain (itself if none). */
  get correlation() { return new EventId(u64At(this, F.CORRELATION_HI), u64At(this, F.CORRELATION_LO)); }
  /** The event that caused this one, or undefined. */
  get causation() {
    if ((u32At(this, F.FLAGS) & FLAG_HAS_CAUSATION) === 0) return undefined;
    return new EventId(u64At(this, F.CAUSATION_HI), u64At(this, F.CAUSATION_LO));
  }
  /** Commit time, microseconds since the Unix epoch (BigInt). */
  get timestampUs() { return u64At(this, F.TIMESTAMP_US); }
  /** Entity name. */
  get entity() { return this.batch.string(u32At(this, F.ENTITY)); }
  /** Scope name. */
  get scope() { return this.batch.string(u32At(this, F.SCOPE)); }
  /** Kind. */
  get kind() { return this.batch.string(u32At(this, F.KIND)); }
  /** The payload decoded as UTF-8 (TypeError when it is not). */
  text() { return utf8Decode(this.payload); }
  /** The payload parsed as JSON (SyntaxError when it is not). */
  json() { return JSON.parse(this.text()); }
}

/** A batch: the `react` argument read in place. Iterate it for its events. */
export class Batch {
  /** Reads the header and checks that records and string table fit. */
  constructor(bytes) {
    // Not `instanceof Uint8Array`: the array componentize-js hands over fails
    // that test, and copying it element by element costs more than the call.
    if (!ArrayBuffer.isView(bytes)) bytes = Uint8Array.from(bytes);
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    /** The buffer as u32 words (little-endian platform, 4-aligned buffer), else null. */
    this.words = LITTLE_ENDIAN && (bytes.byteOffset & 3) === 0
      ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2) : null;
    if (bytes.length < BATCH_HEADER_LEN) throw new RangeError(`batch buffer of ${bytes.length} bytes is shorter than its header`);
    this.length = this.view.getUint32(0, true);
    this.stringCount = this.view.getUint32(4, true);
    this.strings = this.view.getUint32(8, true);
    this.payloads = this.view.getUint32(12, true);
    const records = BATCH_HEADER_LEN + BATCH_RECORD_LEN * this.length;
    const names = this.strings + STRING_ENTRY_LEN * this.stringCount;
    if (records > bytes.length || this.strings < records || names > bytes.length || this.payloads > bytes.length)
      throw new RangeError(`batch buffer of ${bytes.length} bytes does not hold ${this.length} events and ${this.stringCount} strings`);
    this.names = names;
    this.cache = new Array(this.stringCount);
  }
  /** String j of the string table, decoded once per batch. */
  string(j) {
    let s = this.cache[j];
    if (s === undefined) {
      if (j >= this.stringCount) throw new RangeError(`string index ${j} outside the batch's ${this.stringCount} strings`);
      const e = this.strings + STRING_ENTRY_LEN * j;
      const start = this.names + this.view.getUint32(e, true);
      s = utf8Decode(this.bytes.subarray(start, start + this.view.getUint32(e + 4, true)));
      this.cache[j] = s;
    }
    return s;
  }
  /** Event i, or undefined outside the batch. */
  get(i) { return i >= 0 && i < this.length ? new Event(this, i) : undefined; }
  [Symbol.iterator]() {
    // A plain iterator, not a generator: cheaper per event in QuickJS and
    // in SpiderMonkey's interpreter (neither has a JIT inside wasm).
    // One result object, reused: every consumer (for-of, spread,
    // Array.from) reads `value` before it calls next() again.
    let i = 0;
    const batch = this, n = this.length, result = { value: undefined, done: false };
    return {
      next() {
        if (i < n) result.value = new Event(batch, i++);
        else { result.value = undefined; result.done = true; }
        return result;
      },
      [Symbol.iterator]() { return this; },
    };
  }
  /** The events as an array. */
  events() { return Array.from(this); }
}

// ---- proposals ----

function payloadBytes(payload) {
  if (payload === undefined) return new Uint8Array(0);
  if (ArrayBuffer.isView(payload)) {
    // A byte array, of this realm or another (a batch view under
    // componentize-js), is used as is; other views as their bytes.
    if (payload.BYTES_PER_ELEMENT === 1) return payload;
    return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  }
  const json = JSON.stringify(payload);
  if (json === undefined) throw new TypeError(`payload ${String(payload)} is neither bytes nor a JSON value`);
  return utf8Encode(json);
}

const P_HEADER = PROPOSALS_HEADER_LEN, P_RECORD = PROPOSAL_RECORD_LEN;
const C_SOURCE = CAUSATION_SOURCE, C_EVENT = CAUSATION_EVENT, C_NONE = CAUSATION_NONE;
const P_SOURCE = P.SOURCE, P_KIND = P.KIND, P_ENTITY = P.ENTITY, P_SCOPE = P.SCOPE, P_PAYLOAD = P.PAYLOAD,
  P_CAUSATION = P.CAUSATION;
// Word (u32) indexes of a proposal record's fields.
const W_SOURCE = P_SOURCE >> 2, W_KIND = P_KIND >> 2, W_PAYLOAD = P_PAYLOAD >> 2;

/** The proposals of one `react` call, written as the flat proposals buffer. */
export class Output {
  /** `emits`: the kinds the descriptor declares (a proposal names one by index). */
  constructor(emits) {
    this.kinds = new Map(emits.map((k, i) => [k, i]));
    this.emits = emits;
    // The kind proposed last and its index: one comparison instead of a
    // Map lookup when a reactor proposes one kind again and again.
    this.lastKind = undefined;
    this.lastKindIndex = 0;
    // Three entries per proposal, no object per proposal: the source event,
    // the kind's index, and the payload — the source's own payload view as
    // its length (a number; copied from the batch, consecutive ones in one
    // run), any other as its bytes. `extras` holds the fields that are not
    // the defaults (entity, scope, cause), by proposal index.
    this.items = [];
    this.extras = new Map();
    this.extraLen = 0;
  }
  /**
   * Proposes an event reacting to `source` (a batch event):
   * `kind` (one of `emits`), `payload` (a Uint8Array, sent as is, or any
   * JSON value, sent as its JSON text; default empty), `entity` and `scope`
   * (default: the source's), `causedBy` (default: the source; another batch
   * event or an EventId; `null` for none, a new causal chain).
   */
  propose(source, { kind, payload, entity, scope, causedBy } = {}) {
    if (!(source instanceof Event)) throw new TypeError("propose(source, {...}): source must be an event of the batch");
    let k = this.lastKindIndex;
    if (kind !== this.lastKind) {
      k = this.kinds.get(kind);
      if (k === undefined) throw new TypeError(`kind ${JSON.stringify(kind)} is not declared in emits (${this.emits.join(", ")})`);
      this.lastKind = kind;
      this.lastKindIndex = k;
    }
    const items = this.items, m = items.length;
    if (entity !== undefined || scope !== undefined || (causedBy !== undefined && causedBy !== source)) {
      let causation = C_SOURCE, cause;
      if (causedBy === null) causation = C_NONE;
      else if (causedBy !== undefined && causedBy !== source) {
        causation = C_EVENT;
        cause = causedBy instanceof Event ? causedBy.id : EventId.from(causedBy);
      }
      const x = {
        entity: entity === undefined ? null : utf8Encode(String(entity)),
        scope: scope === undefined ? null : utf8Encode(String(scope)),
        causation, cause,
      };
      this.extras.set(m / 3, x);
      this.extraLen += (x.entity ? x.entity.length : 0) + (x.scope ? x.scope.length : 0);
    }
    // The payload is kept as is (a view into the batch costs nothing more)
    // and copied once, into the proposals buffer.
    const p = payload === source.view ? source.len : payloadBytes(payload);
    // Appended in index order: a write past the end would leave a hole,
    // and an array with holes is slower in both engines.
    items[m] = source;
    items[m + 1] = k;
    items[m + 2] = p;
  }
  /** Number of proposals so far. */
  get length() { return this.items.length / 3; }
  /** The proposals buffer (`react`'s result). */
  toBytes() {
    const items = this.items, end = items.length, n = end / 3;
    if (n === 0) return new Uint8Array(0);
    const extras = this.extras, hasExtras = extras.size !== 0;
    let size = P_HEADER + P_RECORD * n + this.extraLen;
    for (let m = 2; m < end; m += 3) {
      const p = items[m];
      size += typeof p === "number" ? p : p.length;
    }
    const out = new Uint8Array(size); // zeroed: reserved fields 0, len 0 = the source's names
    const view = new DataView(out.buffer);
    // The records as u32 words (little-endian platforms).
    const w = LITTLE_ENDIAN ? new Uint32Array(out.buffer, 0, size >> 2) : null;
    view.setUint32(0, n, true);
    let data = P_HEADER + P_RECORD * n;
    // Source payloads next to each other in the batch (a pass-through) are
    // copied as one run: from runStart to runEnd of the batch `runBatch`,
    // to runTo.
    let runBatch, runStart = 0, runEnd = 0, runTo = 0;
    // A plain loop with the writes inlined: both engines interpret.
    for (let m = 0, i = 0; m < end; m += 3, i++) {
      const r = P_HEADER + P_RECORD * i;
      const source = items[m], p = items[m + 2];
      const x = hasExtras ? extras.get(i) : undefined;
      if (x !== undefined) {
        if (x.entity) {
          view.setUint32(r + P_ENTITY, data, true);
          view.setUint32(r + P_ENTITY + 4, x.entity.length, true);
          out.set(x.entity, data);
          data += x.entity.length;
        }
        if (x.scope) {
          view.setUint32(r + P_SCOPE, data, true);
          view.setUint32(r + P_SCOPE + 4, x.scope.length, true);
          out.set(x.scope, data);
          data += x.scope.length;
        }
        view.setUint32(r + P_CAUSATION, x.causation, true);
        if (x.cause) {
          view.setBigUint64(r + P.CAUSE_HI, x.cause.hi, true);
          view.setBigUint64(r + P.CAUSE_LO, x.cause.lo, true);
        }
      }
      const index = source.index, len = typeof p === "number" ? p : p.length;
      if (w !== null) {
        const q = r >> 2;
        w[q + W_SOURCE] = index;
        w[q + W_KIND] = items[m + 1];
        w[q + W_PAYLOAD] = data;
        w[q + W_PAYLOAD + 1] = len;
      } else {
        view.setUint32(r + P_SOURCE, index, true);
        view.setUint32(r + P_KIND, items[m + 1], true);
        view.setUint32(r + P_PAYLOAD, data, true);
        view.setUint32(r + P_PAYLOAD + 4, len, true);
      }
      if (typeof p !== "number") {
        out.set(p, data);
      } else {
        const batch = source.batch, bw = batch.words;
        const start = batch.payloads + (bw !== null
          ? bw[PAYLOAD_WORD0 + B_RECORD_WORDS * index]
          : batch.view.getUint32(B_HEADER + B_RECORD * index + PAYLOAD_OFFSET, true));
        if (batch === runBatch && start === runEnd && data === runTo + (runEnd - runStart)) {
          runEnd += len;
        } else {
          if (runEnd > runStart) out.set(runBatch.bytes.subarray(runStart, runEnd), runTo);
          runBatch = batch;
          runStart = start;
          runEnd = start + len;
          runTo = data;
        }
      }
      data += len;
    }
    if (runEnd > runStart) out.set(runBatch.bytes.subarray(runStart, runEnd), runTo);
    return out;
  }
}

// ---- the descriptor ----

const CANALS = ["cursor-guaranteed", "lossy-subscription"];

/**
 * The WIT descriptor from a declaration: `{name, version, consumes,
 * emits, entityPrefix, scope, canal, maxBatch}` (all but `name` optional;
 * `consumes` empty means every non-system kind; canal default
 * "cursor-guaranteed"; maxBatch 0 lets the host choose).
 */
export function describe(decl) {
  const { name, version = "0.1.0", consumes = [], emits = [], entityPrefix, scope, canal = "cursor-guaranteed", maxBatch = 0 } = decl;
  if (typeof name !== "string" || !/^[a-z0-9_-]{1,64}$/.test(name))
    throw new TypeError(`reactor name ${JSON.stringify(name)}: 1 to 64 characters of a-z, 0-9, -, _`);
  if (!CANALS.includes(canal)) throw new TypeError(`canal ${JSON.stringify(canal)}: one of ${CANALS.join(", ")}`);
  return {
    name, version: String(version),
    region: { kinds: [...consumes], entityPrefix: entityPrefix ?? undefined, scope: scope ?? undefined },
    canal, emits: [...emits], maxBatch: maxBatch >>> 0,
  };
}

// ---- the host's records ----

/** A stored event as the host imports return it, normalised: ids as EventId, u64 as BigInt. */
export function storedEvent(e) {
  return {
    id: EventId.from(e.id),
    sequence: BigInt(e.sequence),
    entitySequence: BigInt(e.entitySequence),
    entity: e.coordinate.entity,
    scope: e.coordinate.scope,
    kind: e.kind,
    causation: e.causation === undefined || e.causation === null ? undefined : EventId.from(e.causation),
    correlation: EventId.from(e.correlation),
    timestampUs: BigInt(e.timestampUs),
    payload: ArrayBuffer.isView(e.payload) ? e.payload : Uint8Array.from(e.payload),
    text() { return utf8Decode(this.payload); },
    json() { return JSON.parse(this.text()); },
  };
}

// A u64 argument for the engine: BigInt, or a Number where the engine
// lowers u64 from Number only (componentize-qjs traps on a BigInt there).
// A value a Number cannot carry exactly is refused, never rounded.
function u64Arg(value, asNumber, what) {
  const big = BigInt(value);
  if (!asNumber) return big;
  if (big > BigInt(Number.MAX_SAFE_INTEGER))
    throw new RangeError(`${what} ${big} is above 2^53: QuickJS passes u64 to the host as a Number, which cannot carry it exactly; use the SpiderMonkey engine (componentize-js)`);
  return Number(big);
}

/**
 * The host functions over a host import object (the WIT `host` interface).
 * `u64AsNumber`: the engine takes u64 arguments as Number (QuickJS) rather
 * than BigInt (SpiderMonkey).
 */
export function hostApi(host, u64AsNumber = false) {
  return {
    /** Writes a log line: level "trace" | "debug" | "info" | "warn" | "error". */
    log(level, message) { host.log(level, String(message)); },
    /** One event by id (EventId, hex or `{hi, lo}`), or undefined. */
    getEvent(id) {
      const i = EventId.from(id);
      const e = host.getEvent({ hi: u64Arg(i.hi, u64AsNumber, "event id half"), lo: u64Arg(i.lo, u64AsNumber, "event id half") });
      return e === undefined || e === null ? undefined : storedEvent(e);
    },
    /** Events of `entity` with entity-sequence > `after`, oldest first, at most `max` (the host caps it at 1024). */
    readEntity(entity, after = 0n, max = 1024) {
      return host.readEntity(entity, u64Arg(after, u64AsNumber, "entity sequence"), max).map(storedEvent);
    },
    /** Every event of `entity` with entity-sequence > `after`, oldest first, read `page` at a time (Rust's `host::entity_events`). */
    *entityEvents(entity, after = 0n, page = 100) {
      for (;;) {
        const events = this.readEntity(entity, after, page);
        yield* events;
        if (events.length < page) return;
        after = events[events.length - 1].entitySequence;
      }
    },
  };
}

/**
 * The `reactor` export from a declaration and the reactor's functions:
 * `{describe: {...declaration}, init(config, api) -> state, react(batch, out, state, api)}`.
 * `init` gets the parsed JSON config; a thrown error refuses the plugin.
 * A ReactError thrown from `react` names the event to park; any other
 * thrown value fails the call with no event named.
 */
export function makeReactor(spec, host, u64AsNumber = false) {
  const descriptor = describe(spec.describe);
  const api = hostApi(host, u64AsNumber);
  let state;
  return {
    describe() { return descriptor; },
    init(config) {
      try {
        const parsed = config && config.trim() ? JSON.parse(config) : {};
        state = spec.init ? spec.init(parsed, api) : undefined;
      } catch (e) {
        throw e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      }
    },
    react(bytes) {
      const out = new Output(descriptor.emits);
      try {
        spec.react(new Batch(bytes), out, state, api);
      } catch (e) {
        throw toReactError(e);
      }
      return out.toBytes();
    },
  };
}
