"""`Output`: the proposals `react` returns, written as the flat proposals buffer."""

import json
import struct

from . import layout as L

_HEADER = struct.Struct("<II")
# source, kind, entity (offset, len), scope (offset, len), payload (offset,
# len), causation, reserved, cause hi, cause lo: the record in `layout`.
_RECORD = struct.Struct("<IIIIIIIIIIQQ")
_RANGE = struct.Struct("<II")
_PACK = _RECORD.pack_into
_HEAD = L.PROPOSALS_HEADER_LEN
_REC = L.PROPOSAL_RECORD_LEN
_EMPTY_RECORD = bytes(L.PROPOSAL_RECORD_LEN)
_NONE = L.CAUSATION_NONE
_EVENT = L.CAUSATION_EVENT
assert L.CAUSATION_SOURCE == 0
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


_RAW = (bytes, bytearray, memoryview)


class Output:
    """The proposals of one `react` call, in order. `emits` is the
    declaration's list: a proposal names its kind, the buffer carries the
    kind's index there. `reserve`: room for that many records ahead of the
    names and payloads (the component passes the batch size), so that up to
    that many proposals are written in place, with no second pass."""

    __slots__ = ("_kinds", "_recs", "_count", "_reserve", "_base", "_data", "_names", "undeclared")

    def __init__(self, emits, reserve=0):
        self._kinds = {k: i for i, k in enumerate(emits)}
        self._reserve = reserve
        # Records as written, with ranges already offset by _base (where
        # the data will start if at most `reserve` records are written).
        self._base = L.PROPOSALS_HEADER_LEN + L.PROPOSAL_RECORD_LEN * reserve
        self._recs = bytearray(L.PROPOSALS_HEADER_LEN + L.PROPOSAL_RECORD_LEN * reserve)
        self._count = 0
        self._data = bytearray()
        self._names = {}
        #: Kinds proposed that `emits` does not list (the host denies them).
        self.undeclared = []

    def _name(self, s):
        span = self._names.get(s)
        if span is None:
            b = s.encode()
            span = (self._base + len(self._data), len(b))
            self._data += b
            self._names[s] = span
        return span

    def propose(self, source, kind, payload=b"", *, entity=None, scope=None, caused_by=SOURCE):
        """Proposes an event of `kind` reacting to `source` (an `Event` of the
        batch). `payload`: bytes, or a JSON value (see `encode_payload`).
        `entity` and `scope` default to the source's. `caused_by`: the source
        (default), another event (an `Event` or a 128-bit id), or `None` for
        no causation. The new event's correlation is the source's."""
        # The hot path of every reactor: module globals, no helper calls.
        index = self._kinds.get(kind)
        if index is None:
            index = self._undeclared(kind)
        eo, el = (0, 0) if entity is None else self._name(entity)
        so, sl = (0, 0) if scope is None else self._name(scope)
        if type(payload) not in _RAW:
            payload = encode_payload(payload)
        data = self._data
        pl = len(payload)
        po = self._base + len(data) if pl else 0
        data += payload
        if caused_by is SOURCE:
            causation = cause = 0
        elif caused_by is None:
            causation, cause = _NONE, 0
        else:
            cause = caused_by if isinstance(caused_by, int) else caused_by.id
            causation = _EVENT
        n = self._count
        if n >= self._reserve:
            self._recs += _EMPTY_RECORD
        _PACK(
            self._recs, _HEAD + _REC * n,
            source if type(source) is int else source.index, index,
            eo, el, so, sl, po, pl, causation, 0, cause >> 64, cause & _MASK64,
        )
        self._count = n + 1

    def _undeclared(self, kind):
        if kind not in self.undeclared:
            self.undeclared.append(kind)
        return UNDECLARED

    def __len__(self):
        return self._count

    def to_bytes(self):
        """The proposals buffer (empty when there are no proposals)."""
        n = self._count
        if n == 0:
            return b""
        recs = self._recs
        _HEADER.pack_into(recs, 0, n, 0)
        if n > self._reserve:
            # More records than reserved: the data starts later; move every
            # non-empty range by the difference.
            shift = L.PROPOSAL_RECORD_LEN * (n - self._reserve)
            for k in range(n):
                at = L.PROPOSALS_HEADER_LEN + L.PROPOSAL_RECORD_LEN * k
                for f in (L.PROPOSAL_FIELD_ENTITY, L.PROPOSAL_FIELD_SCOPE, L.PROPOSAL_FIELD_PAYLOAD):
                    off, length = _RANGE.unpack_from(recs, at + f)
                    if length:
                        _RANGE.pack_into(recs, at + f, off + shift, length)
        # Fewer records than reserved leave unused room before the data,
        # which the contract allows (ranges may point anywhere past the records).
        recs += self._data
        return bytes(recs)
