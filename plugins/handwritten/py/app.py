# Hand-written buffer code, kept to measure the SDK against (see
# plugins/handwritten/README.md): plugins/passthrough-py before it used batpak_guest.
"""passthrough-py: the pass-through reactor in Python (componentize-py).

Consumes `bench.in`; for every event proposes one `bench.out` on the same
entity and scope with the same payload bytes, caused by the source event.
Same behaviour as the Rust `passthrough` and the C and JavaScript versions:
the languages test compares their reactions.

`react` takes the batch as one byte buffer (`bytes`) and returns the
proposals as one byte buffer; wit/reactor.wit describes both layouts (at
`react`). `struct` reads and writes their little-endian fields.

Build (from the repository root):
    componentize-py -d wit -w reactor-plugin componentize -p plugins/passthrough-py app -o passthrough_py.wasm
"""

import struct

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

# The layouts in wit/reactor.wit.
BATCH_HEADER = struct.Struct("<IIII")  # count, string-count, strings-offset, payloads-offset
EVENT_SIZE = 96  # event record i at 16 + 96 * i
U32_PAIR = struct.Struct("<II")  # e.g. payload-offset, payload-len at 88 in an event
U32 = struct.Struct("<I")
OUT_HEADER = struct.Struct("<II")  # count, reserved
# source, kind, entity-offset, entity-len, scope-offset, scope-len,
# payload-offset, payload-len, causation, reserved, cause.hi, cause.lo
PROPOSAL = struct.Struct("<IIIIIIIIIIQQ")  # 56 bytes


def batch_string(batch: bytes, j: int) -> str:
    """String j of the batch's string table."""
    _, count, table, _ = BATCH_HEADER.unpack_from(batch, 0)
    offset, length = U32_PAIR.unpack_from(batch, table + 8 * j)
    start = table + 8 * count + offset
    return batch[start : start + length].decode()


class Reactor(exports.Reactor):
    def describe(self) -> types.Descriptor:
        return types.Descriptor(
            name="passthrough-py",
            version="0.1.0",
            region=types.Region(kinds=["bench.in"], entity_prefix=None, scope=None),
            canal=types.CanalKind.CURSOR_GUARANTEED,
            emits=["bench.out"],  # proposals name it as kind 0
            max_batch=0,
        )

    def init(self, config: str) -> None:
        # Raising Err("...") refuses the plugin with that message.
        if config.strip() not in ("", "{}"):
            host.log(types.Level.DEBUG, f"ignoring config {config}")

    def react(self, batch: bytes) -> bytes:
        # Raising Err(types.ReactError(message=..., event=i)) fails the call.
        count, _, _, payloads = BATCH_HEADER.unpack_from(batch, 0)
        records = bytearray(OUT_HEADER.pack(count, 0))
        data = bytearray()  # the payloads, placed after the records
        data_at = OUT_HEADER.size + PROPOSAL.size * count
        for i in range(count):
            offset, length = U32_PAIR.unpack_from(batch, 16 + EVENT_SIZE * i + 88)
            start = payloads + offset
            # Source event i, kind 0 ("bench.out"), entity and scope length 0
            # (the source event's), the payload copied below, causation 0
            # (the source event), reserved and cause 0.
            records += PROPOSAL.pack(i, 0, 0, 0, 0, 0, data_at + len(data), length, 0, 0, 0, 0)
            data += batch[start : start + length]
        (entity,) = U32.unpack_from(batch, 16 + 72)
        host.log(types.Level.DEBUG, f"{count} events, the first on {batch_string(batch, entity)}")
        return bytes(records + data)
