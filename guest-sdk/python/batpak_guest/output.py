"""`Output`: the proposals `react` returns, written as the flat proposals buffer."""

import json
import struct

from . import layout as L

_HEADER = struct.Struct("<II")
# source, kind, entity (offset, len), scope (offset, len), payload (offset,
# len), causation, reserved, cause hi, cause lo: the record in `layout`.
_RECORD = struct.Struct("<IIIIIIIIIIQQ")
assert _RECORD.size == L.PROPOSAL_RECORD_LEN and _HEADER.size == L.PROPOSALS_HEADER_LEN

#: The default of `caused_by`: the source event.
SOURCE = object()
#: The kind index of a kind missing from `emits`: the host's capability gate
#: denies such a proposal and records the denial.
UNDECLARED = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1


def encode_payload(payload):
    """Bytes as they are (`bytes`, `bytearray`, `memoryview`); any other value
    as compact JSON in UTF-8 (a `str` becomes a JSON string: pass
    `text.encode()` for raw text)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return payload
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class Output:
    """The proposals of one `react` call, in order. `emits` is the
    declaration's list: a proposal names its kind, the buffer carries the
    kind's index there."""

    __slots__ = ("_kinds", "_records", "_data", "_names", "undeclared")

    def __init__(self, emits):
        self._kinds = {k: i for i, k in enumerate(emits)}
        self._records = []
        self._data = bytearray()
        self._names = {}
        #: Kinds proposed that `emits` does not list (the host denies them).
        self.undeclared = []

    def _name(self, s):
        span = self._names.get(s)
        if span is None:
            b = s.encode()
            span = (len(self._data), len(b))
            self._data += b
            self._names[s] = span
        return span

    def propose(self, source, kind, payload=b"", *, entity=None, scope=None, caused_by=SOURCE):
        """Proposes an event of `kind` reacting to `source` (an `Event` of the
        batch). `payload`: bytes, or a JSON value (see `encode_payload`).
        `entity` and `scope` default to the source's. `caused_by`: the source
        (default), another event (an `Event` or a 128-bit id), or `None` for
        no causation. The new event's correlation is the source's."""
        index = self._kinds.get(kind)
        if index is None:
            index = UNDECLARED
            if kind not in self.undeclared:
                self.undeclared.append(kind)
        ent = self._name(entity) if entity is not None else (0, 0)
        sco = self._name(scope) if scope is not None else (0, 0)
        body = encode_payload(payload)
        pay = (len(self._data), len(body))
        self._data += body
        if caused_by is SOURCE:
            causation, cause = L.CAUSATION_SOURCE, 0
        elif caused_by is None:
            causation, cause = L.CAUSATION_NONE, 0
        else:
            cause = caused_by if isinstance(caused_by, int) else caused_by.id
            causation = L.CAUSATION_EVENT
        src = source if isinstance(source, int) else source.index
        self._records.append((src, index, ent, sco, pay, causation, cause))

    def __len__(self):
        return len(self._records)

    def to_bytes(self):
        """The proposals buffer (empty when there are no proposals)."""
        n = len(self._records)
        if n == 0:
            return b""
        base = L.PROPOSALS_HEADER_LEN + L.PROPOSAL_RECORD_LEN * n
        buf = bytearray(base)
        _HEADER.pack_into(buf, 0, n, 0)
        at = L.PROPOSALS_HEADER_LEN
        pack = _RECORD.pack_into
        for src, kind, ent, sco, pay, causation, cause in self._records:
            pack(
                buf, at, src, kind,
                base + ent[0] if ent[1] else 0, ent[1],
                base + sco[0] if sco[1] else 0, sco[1],
                base + pay[0] if pay[1] else 0, pay[1],
                causation, 0, (cause >> 64) & _MASK64, cause & _MASK64,
            )
            at += L.PROPOSAL_RECORD_LEN
        buf += self._data
        return bytes(buf)
