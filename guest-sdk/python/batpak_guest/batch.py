"""`Batch` and `Event`: the batch buffer `react` receives, read in place."""

import json
import struct

from . import layout as L

_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<IIII")
_ENTRY = struct.Struct("<II")
_ID = struct.Struct("<QQ")
_U64 = struct.Struct("<Q")
_PAIR_AT = _ENTRY.unpack_from
_PAYLOAD = L.BATCH_FIELD_PAYLOAD_OFFSET


def _id(buf, at):
    hi, lo = _ID.unpack_from(buf, at)
    return (hi << 64) | lo


class Event:
    """One event of a batch, read from the buffer on access (nothing is
    copied until asked for). Ids (`id`, `correlation`, `causation`) are
    128-bit ints; `payload` is a `memoryview` into the batch, valid during
    the `react` call (`bytes(e.payload)` keeps a copy)."""

    __slots__ = ("batch", "index", "_at")

    def __init__(self, batch, index):
        self.batch = batch
        self.index = index
        self._at = L.BATCH_HEADER_LEN + L.BATCH_RECORD_LEN * index

    def _u32(self, field):
        return _U32.unpack_from(self.batch.buffer, self._at + field)[0]

    @property
    def kind(self):
        """The event's kind (str)."""
        return self.batch.string(self._u32(L.BATCH_FIELD_KIND))

    @property
    def entity(self):
        """The event's entity (str)."""
        return self.batch.string(self._u32(L.BATCH_FIELD_ENTITY))

    @property
    def scope(self):
        """The event's scope (str)."""
        return self.batch.string(self._u32(L.BATCH_FIELD_SCOPE))

    @property
    def id(self):
        """The event id (128-bit int)."""
        return _id(self.batch.buffer, self._at + L.BATCH_FIELD_ID_HI)

    @property
    def sequence(self):
        """Store-wide sequence."""
        return _U64.unpack_from(self.batch.buffer, self._at + L.BATCH_FIELD_SEQUENCE)[0]

    @property
    def entity_sequence(self):
        """Sequence within the entity."""
        return _U64.unpack_from(self.batch.buffer, self._at + L.BATCH_FIELD_ENTITY_SEQUENCE)[0]

    @property
    def correlation(self):
        """The correlation id (128-bit int)."""
        return _id(self.batch.buffer, self._at + L.BATCH_FIELD_CORRELATION_HI)

    @property
    def causation(self):
        """The causation id (128-bit int), or None when the event has none."""
        if self._u32(L.BATCH_FIELD_FLAGS) & L.FLAG_HAS_CAUSATION:
            return _id(self.batch.buffer, self._at + L.BATCH_FIELD_CAUSATION_HI)
        return None

    @property
    def timestamp_us(self):
        """Commit time, microseconds since the Unix epoch."""
        return _U64.unpack_from(self.batch.buffer, self._at + L.BATCH_FIELD_TIMESTAMP_US)[0]

    @property
    def payload(self):
        """The payload bytes: a `memoryview` into the batch, no copy."""
        b = self.batch
        offset, length = _PAIR_AT(b.buffer, self._at + _PAYLOAD)
        start = b.payloads_offset + offset
        return b.buffer[start : start + length]

    def json(self):
        """The payload parsed as JSON (raises `ValueError` if it is not JSON)."""
        return json.loads(bytes(self.payload))

    def __repr__(self):
        return f"Event(index={self.index}, kind={self.kind!r}, entity={self.entity!r}, scope={self.scope!r})"


class Batch:
    """The batch buffer: `len(batch)` events, `batch[i]`, `for e in batch`.

    Raises `ValueError` when the header points outside the buffer (the host
    never sends such a batch; a test might)."""

    __slots__ = ("buffer", "count", "string_count", "strings_offset", "payloads_offset", "_names", "_strings")

    def __init__(self, buffer):
        self.buffer = memoryview(buffer).cast("B") if not isinstance(buffer, memoryview) else buffer
        n = len(self.buffer)
        if n == 0:
            self.count = self.string_count = 0
            self.strings_offset = self.payloads_offset = 0
        else:
            if n < L.BATCH_HEADER_LEN:
                raise ValueError(f"batch of {n} bytes is shorter than its {L.BATCH_HEADER_LEN}-byte header")
            self.count, self.string_count, self.strings_offset, self.payloads_offset = _HEADER.unpack_from(self.buffer, 0)
            names = self.strings_offset + L.STRING_ENTRY_LEN * self.string_count
            if (
                L.BATCH_HEADER_LEN + L.BATCH_RECORD_LEN * self.count > self.strings_offset
                or names > self.payloads_offset
                or self.payloads_offset > n
            ):
                raise ValueError(
                    f"batch header ({self.count} events, {self.string_count} strings at {self.strings_offset}, "
                    f"payloads at {self.payloads_offset}) does not fit the {n}-byte buffer"
                )
        self._names = self.strings_offset + L.STRING_ENTRY_LEN * self.string_count
        self._strings = [None] * self.string_count

    def string(self, j):
        """String `j` of the batch's string table, decoded once."""
        s = self._strings[j]
        if s is None:
            offset, length = _ENTRY.unpack_from(self.buffer, self.strings_offset + L.STRING_ENTRY_LEN * j)
            start = self._names + offset
            s = str(self.buffer[start : start + length], "utf-8")
            self._strings[j] = s
        return s

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        if i < 0:
            i += self.count
        if not 0 <= i < self.count:
            raise IndexError(f"event {i} of a batch of {self.count}")
        return Event(self, i)

    def __iter__(self):
        for i in range(self.count):
            yield Event(self, i)
