// batpak-reactor: write batpak reactors in JavaScript (contract
// batpak:reactor@0.2.0), under componentize-js (SpiderMonkey) and
// componentize-qjs (QuickJS). See guest-sdk/docs/javascript.md.
import * as imported from "batpak:reactor/host@0.2.0";
import { hostApi, makeReactor } from "./core.js";

// componentize-js exposes the interface's functions as named exports,
// componentize-qjs as one default export: the namespace covers both. Only
// componentize-qjs has the default export, and only it lowers u64 from
// Number rather than BigInt.
const quickjs = imported.default !== undefined;
const host = quickjs ? imported.default : imported;

export * from "./core.js";
export * as layout from "./layout.js";

const api = hostApi(host, quickjs);
/** Writes a line to the host's log. */
export const log = api.log;
/** One event by id, or undefined. */
export const getEvent = api.getEvent;
/** Events of one entity after an entity-sequence. */
export const readEntity = api.readEntity;
/** Every event of one entity after an entity-sequence, read a page at a time. */
export const entityEvents = (entity, after, page) => api.entityEvents(entity, after, page);

/** The `reactor` export: `export const reactor = defineReactor({describe, init, react})`. */
export function defineReactor(spec) {
  return makeReactor(spec, host, quickjs);
}
