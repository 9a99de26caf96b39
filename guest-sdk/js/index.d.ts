// Types of batpak-reactor (index.js; core.js exports the same minus the host functions).

/** A 128-bit event id; prints as 32 lowercase hex digits. */
export class EventId {
  constructor(hi: bigint | number, lo: bigint | number);
  readonly hi: bigint;
  readonly lo: bigint;
  static fromHex(hex: string): EventId;
  static from(value: EventId | string | { hi: bigint | number; lo: bigint | number }): EventId;
  toHex(): string;
  equals(other: EventId | string | { hi: bigint | number; lo: bigint | number }): boolean;
}

/** One event of a batch, read in place. */
export class Event {
  readonly index: number;
  readonly id: EventId;
  readonly sequence: bigint;
  readonly entitySequence: bigint;
  readonly correlation: EventId;
  readonly causation: EventId | undefined;
  readonly timestampUs: bigint;
  readonly entity: string;
  readonly scope: string;
  readonly kind: string;
  /** A view into the batch buffer, not a copy. */
  readonly payload: Uint8Array;
  text(): string;
  json<T = unknown>(): T;
}

/** The batch `react` gets. */
export class Batch implements Iterable<Event> {
  constructor(bytes: Uint8Array);
  readonly length: number;
  get(index: number): Event | undefined;
  events(): Event[];
  [Symbol.iterator](): Iterator<Event>;
}

export interface ProposeOptions {
  /** One of the kinds in `emits`. */
  kind: string;
  /** Bytes as is, or any JSON value as its JSON text; default empty. */
  payload?: Uint8Array | unknown;
  /** Default: the source event's. */
  entity?: string;
  /** Default: the source event's. */
  scope?: string;
  /** Default: the source event; null: none (a new causal chain). */
  causedBy?: Event | EventId | string | null;
}

/** The proposals of one `react` call. */
export class Output {
  constructor(emits: string[]);
  readonly length: number;
  propose(source: Event, options: ProposeOptions): void;
  toBytes(): Uint8Array;
}

/** Thrown from `react`: fails the call and names the event to park. */
export class ReactError extends Error {
  constructor(message: string, event?: Event | number);
  readonly event: number | undefined;
}

export interface Declaration {
  name: string;
  version?: string;
  consumes?: string[];
  emits?: string[];
  entityPrefix?: string;
  scope?: string;
  canal?: "cursor-guaranteed" | "lossy-subscription";
  maxBatch?: number;
}

export interface Descriptor {
  name: string;
  version: string;
  region: { kinds: string[]; entityPrefix: string | undefined; scope: string | undefined };
  canal: "cursor-guaranteed" | "lossy-subscription";
  emits: string[];
  maxBatch: number;
}

export function describe(declaration: Declaration): Descriptor;
export function toReactError(thrown: unknown): { message: string; event: number | undefined };
export function utf8Decode(bytes: Uint8Array): string;
export function utf8Encode(text: string): Uint8Array;

export interface StoredEvent {
  id: EventId;
  sequence: bigint;
  entitySequence: bigint;
  entity: string;
  scope: string;
  kind: string;
  causation: EventId | undefined;
  correlation: EventId;
  timestampUs: bigint;
  payload: Uint8Array;
  text(): string;
  json<T = unknown>(): T;
}

export type Level = "trace" | "debug" | "info" | "warn" | "error";

export interface HostApi {
  log(level: Level, message: string): void;
  getEvent(id: EventId | string | { hi: bigint; lo: bigint }): StoredEvent | undefined;
  readEntity(entity: string, after?: bigint | number, max?: number): StoredEvent[];
  /** Every event of `entity` after `after`, oldest first, read `page` (default 100) at a time. */
  entityEvents(entity: string, after?: bigint | number, page?: number): Generator<StoredEvent>;
}

export interface ReactorSpec<S = unknown> {
  describe: Declaration;
  init?(config: any, api: HostApi): S;
  react(batch: Batch, out: Output, state: S, api: HostApi): void;
}

export interface ReactorExport {
  describe(): Descriptor;
  init(config: string): void;
  react(batch: Uint8Array): Uint8Array;
}

export function defineReactor<S>(spec: ReactorSpec<S>): ReactorExport;
export function makeReactor<S>(spec: ReactorSpec<S>, host: unknown, u64AsNumber?: boolean): ReactorExport;
export function hostApi(host: unknown, u64AsNumber?: boolean): HostApi;
export function storedEvent(e: unknown): StoredEvent;
export const log: HostApi["log"];
export const getEvent: HostApi["getEvent"];
export const readEntity: HostApi["readEntity"];
export const entityEvents: HostApi["entityEvents"];
