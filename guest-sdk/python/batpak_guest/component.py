"""The component glue: the `Reactor` base class componentize-py exports, and
the host's imports (`log`, `read_entity`, `get_event`). Only importable
inside a componentize-py build (it imports the generated `wit_world`); the
rest of the SDK is plain Python and runs anywhere."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

from .batch import Batch
from .declaration import LOSSY_SUBSCRIPTION
from .error import ReactError
from .output import Output

_LEVELS = {
    "trace": types.Level.TRACE,
    "debug": types.Level.DEBUG,
    "info": types.Level.INFO,
    "warn": types.Level.WARN,
    "error": types.Level.ERROR,
}


def log(level, message):
    """Writes `message` to the host's log at `level` ("trace", "debug",
    "info", "warn" or "error")."""
    host.log(_LEVELS[level], str(message))


class StoredEvent:
    """An event read from the store (`read_entity`, `get_event`): the same
    attributes as a batch `Event`, payload as `bytes`."""

    __slots__ = ("id", "sequence", "entity_sequence", "entity", "scope", "kind",
                 "causation", "correlation", "timestamp_us", "payload")

    def __init__(self, e):
        self.id = (e.id.hi << 64) | e.id.lo
        self.sequence = e.sequence
        self.entity_sequence = e.entity_sequence
        self.entity = e.coordinate.entity
        self.scope = e.coordinate.scope
        self.kind = e.kind
        self.causation = None if e.causation is None else (e.causation.hi << 64) | e.causation.lo
        self.correlation = (e.correlation.hi << 64) | e.correlation.lo
        self.timestamp_us = e.timestamp_us
        self.payload = bytes(e.payload)

    def json(self):
        """The payload parsed as JSON."""
        return json.loads(self.payload)


def read_entity(entity, after=0, max=100):
    """Up to `max` events of `entity` with an entity sequence above `after`,
    in order (the entity's state, for a reactor that folds it)."""
    return [StoredEvent(e) for e in host.read_entity(entity, after, max)]


def entity_events(entity, after=0, page=100):
    """Every event of `entity` with an entity sequence above `after`, in
    order, read `page` at a time."""
    while True:
        events = read_entity(entity, after, page)
        yield from events
        if len(events) < page:
            return
        after = events[-1].entity_sequence


def get_event(id):
    """The event with this 128-bit id, or None."""
    e = host.get_event(types.EventId(hi=id >> 64, lo=id & ((1 << 64) - 1)))
    return None if e is None else StoredEvent(e)


class Reactor(exports.Reactor):
    """Subclass it as `Reactor` in your app module, set `declaration` and
    define `on_batch(self, batch, out)` (and optionally `on_init(self,
    config)`). Keep state at module level: componentize-py may call each
    export on a new instance."""

    declaration = None

    def on_init(self, config):
        """Called once with the plugin's config (a JSON string, "" without
        one); raise to refuse the plugin with that message."""

    def on_batch(self, batch, out):
        raise NotImplementedError("define on_batch(self, batch, out) in your Reactor")

    def describe(self):
        d = type(self).declaration
        return types.Descriptor(
            name=d.name,
            version=d.version,
            region=types.Region(kinds=d.consumes, entity_prefix=d.entity_prefix, scope=d.scope),
            canal=types.CanalKind.LOSSY_SUBSCRIPTION
            if d.canal == LOSSY_SUBSCRIPTION
            else types.CanalKind.CURSOR_GUARANTEED,
            emits=d.emits,
            max_batch=d.max_batch,
        )

    def init(self, config):
        try:
            self.on_init(config)
        except Err:
            raise
        except Exception as e:
            raise Err(str(e))

    def react(self, batch):
        try:
            events = Batch(batch)
            # Room for one proposal per event: a pass-through or a filter
            # writes every record in place.
            out = Output(type(self).declaration.emits, len(events))
            self.on_batch(events, out)
        except ReactError as e:
            raise Err(types.ReactError(message=e.message, event=e.event))
        except Err:
            raise
        except Exception as e:
            raise Err(types.ReactError(message=f"{type(e).__name__}: {e}", event=None))
        for kind in out.undeclared:
            log("warn", f"proposed kind {kind!r}, which the declaration does not list in emits "
                f"({', '.join(type(self).declaration.emits)}); the host will deny those proposals")
        return out.to_bytes()
