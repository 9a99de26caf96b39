"""passthrough-py: the pass-through reactor in Python (componentize-py).

Consumes `bench.in`; for every event proposes one `bench.out` on the same
entity and scope with the same payload bytes, caused by the source event.
Same behaviour as the Rust `passthrough` and the C and JavaScript versions:
the languages test compares their reactions.

Build (from the repository root):
    componentize-py -d wit -w reactor-plugin componentize -p plugins/passthrough-py app -o passthrough_py.wasm
"""

from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types


def events_of(batch: types.Batch) -> List[types.Event]:
    """The events of a batch, whatever its variant (empty, one, many)."""
    events = batch.events
    if isinstance(events, types.CanalBatch_One):
        return [events.value]
    if isinstance(events, types.CanalBatch_Many):
        return events.value
    return []


class Reactor(exports.Reactor):
    def describe(self) -> types.Descriptor:
        return types.Descriptor(
            name="passthrough-py",
            version="0.1.0",
            region=types.Region(kinds=["bench.in"], entity_prefix=None, scope=None),
            canal=types.CanalKind.CURSOR_GUARANTEED,
            emits=["bench.out"],
            max_batch=0,
        )

    def init(self, config: str) -> None:
        # Raising Err("...") refuses the plugin with that message.
        if config.strip() not in ("", "{}"):
            host.log(types.Level.DEBUG, f"ignoring config {config}")

    def react(self, batch: types.Batch) -> List[types.Proposal]:
        out = []
        for index, event in enumerate(events_of(batch)):
            start = event.payload_offset
            out.append(
                types.Proposal(
                    source=index,
                    coordinate=types.Coordinate(
                        entity=batch.strings[event.entity],
                        scope=batch.strings[event.scope],
                    ),
                    kind="bench.out",
                    payload=batch.payloads[start : start + event.payload_len],
                    causation=types.Causation_Source(),
                )
            )
        host.log(types.Level.DEBUG, f"{len(out)} events")
        return out
