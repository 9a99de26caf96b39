"""The SDK against the worked example of guest-sdk/WIT.md (two
`order.placed` events on `order:1` and `order:2` in scope `shop`), built
byte for byte as that document lays it out. Run: python -m unittest
discover -s guest-sdk/python/tests (cargo test runs it: tests/e2e/guest_sdks.rs)."""

import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import batpak_guest as bp  # noqa: E402

ID0 = (0x0102030405060708 << 64) | 0x1112131415161718
CORR = (0xAAAA << 64) | 0xBBBB
CAUSE1 = (7 << 64) | 9


def record(id_, seq, eseq, corr, cause, ts, entity, scope, kind, poff, plen):
    hi, lo = id_ >> 64, id_ & (2**64 - 1)
    chi, clo = (cause >> 64, cause & (2**64 - 1)) if cause is not None else (0, 0)
    return struct.pack(
        "<QQQQQQQQQIIIIII",
        hi, lo, seq, eseq, corr >> 64, corr & (2**64 - 1), chi, clo, ts,
        entity, scope, kind, 1 if cause is not None else 0, poff, plen,
    )


def worked_example():
    header = struct.pack("<IIII", 2, 4, 208, 270)
    events = record(ID0, 5, 1, CORR, None, 1_700_000_000_000_000, 0, 1, 2, 0, 7)
    events += record(ID0 + 1, 6, 1, CORR, CAUSE1, 1_700_000_000_000_001, 3, 1, 2, 7, 8)
    table = struct.pack("<IIIIIIII", 0, 7, 7, 4, 11, 12, 23, 7)
    names = b"order:1shoporder.placedorder:2"
    payloads = b'{"q":1}{"q":22}'
    buf = header + events + table + names + payloads
    assert len(header + events) == 208 and len(header + events + table + names) == 270
    return buf


def decode(out):
    """(header, [records], buffer) of a proposals buffer."""
    count, reserved = struct.unpack_from("<II", out, 0)
    recs = [struct.unpack_from("<IIIIIIIIIIQQ", out, 8 + 56 * k) for k in range(count)]
    return (count, reserved), recs


def span(out, off, length):
    return bytes(out[off : off + length])


class WorkedExample(unittest.TestCase):
    def setUp(self):
        self.batch = bp.Batch(worked_example())

    def test_reads_every_field(self):
        b = self.batch
        self.assertEqual(len(b), 2)
        e0, e1 = list(b)
        self.assertEqual((e0.kind, e0.entity, e0.scope), ("order.placed", "order:1", "shop"))
        self.assertEqual((e1.kind, e1.entity, e1.scope), ("order.placed", "order:2", "shop"))
        self.assertEqual((e0.id, e1.id), (ID0, ID0 + 1))
        self.assertEqual((e0.sequence, e1.sequence, e0.entity_sequence), (5, 6, 1))
        self.assertEqual((e0.correlation, e1.correlation), (CORR, CORR))
        self.assertEqual((e0.causation, e1.causation), (None, CAUSE1))
        self.assertEqual(e1.timestamp_us, 1_700_000_000_000_001)
        self.assertEqual(e0.json(), {"q": 1})
        self.assertEqual(e1.json(), {"q": 22})
        self.assertEqual(b[-1].index, 1)
        with self.assertRaises(IndexError):
            b[2]

    def test_payload_is_a_view_not_a_copy(self):
        buf = bytearray(worked_example())
        e1 = bp.Batch(buf)[1]
        p = e1.payload
        self.assertIsInstance(p, memoryview)
        self.assertEqual(bytes(p), b'{"q":22}')
        buf[270 + 7 + 5] = ord("3")  # the view sees the buffer's bytes
        self.assertEqual(bytes(p), b'{"q":32}')

    def test_a_header_past_the_buffer_is_refused(self):
        with self.assertRaises(ValueError):
            bp.Batch(worked_example()[:200])
        self.assertEqual(len(bp.Batch(b"")), 0)

    def test_passthrough_proposals(self):
        out = bp.Output(["order.seen"])
        for e in self.batch:
            out.propose(e, "order.seen", e.payload)
        buf = out.to_bytes()
        (count, reserved), recs = decode(buf)
        self.assertEqual((count, reserved), (2, 0))
        for k, r in enumerate(recs):
            src, kind, eo, el, so, sl, po, pl, caus, res, chi, clo = r
            self.assertEqual((src, kind, el, sl, caus, res, chi, clo), (k, 0, 0, 0, 0, 0, 0, 0))
            self.assertEqual(span(buf, po, pl), [b'{"q":1}', b'{"q":22}'][k])
        self.assertEqual(len(buf), 8 + 56 * 2 + 15)

    def test_named_arguments(self):
        e0, e1 = list(self.batch)
        out = bp.Output(["a", "stock.low"])
        out.propose(e0, "stock.low", {"sku": "é", "n": [1, 2]}, entity="sku:1", scope="inv")
        out.propose(e1, "a", caused_by=e0)
        out.propose(e1, "a", b"raw", caused_by=None)
        out.propose(e1, "a", "text", caused_by=CAUSE1)
        out.propose(e0, "undeclared.kind")
        buf = out.to_bytes()
        (count, _), recs = decode(buf)
        self.assertEqual(count, 5)
        r = recs[0]
        self.assertEqual((r[0], r[1]), (0, 1))
        self.assertEqual(span(buf, r[2], r[3]), b"sku:1")
        self.assertEqual(span(buf, r[4], r[5]), b"inv")
        self.assertEqual(span(buf, r[6], r[7]), '{"sku":"é","n":[1,2]}'.encode())
        self.assertEqual(r[8], 0)
        r = recs[1]
        self.assertEqual((r[0], r[1], r[3], r[5], r[7], r[8], r[10], r[11]), (1, 0, 0, 0, 0, 1, ID0 >> 64, ID0 & (2**64 - 1)))
        self.assertEqual((recs[2][8], span(buf, recs[2][6], recs[2][7])), (2, b"raw"))
        self.assertEqual((recs[3][8], recs[3][10], recs[3][11]), (1, 7, 9))
        self.assertEqual(span(buf, recs[3][6], recs[3][7]), b'"text"')
        self.assertEqual(recs[4][1], bp.UNDECLARED)
        self.assertEqual(out.undeclared, ["undeclared.kind"])

    def test_reserved_room_gives_the_same_proposals(self):
        # Fewer, as many and more proposals than the room reserved for
        # records: the same records and bytes wherever the data starts.
        def proposals(reserve, n):
            out = bp.Output(["a", "b"], reserve)
            for k in range(n):
                e = self.batch[k % 2]
                out.propose(e, "b", e.payload, entity=f"x:{k}" if k % 3 == 0 else None)
            buf = out.to_bytes()
            (count, _), recs = decode(buf)
            self.assertEqual(count, n)
            return [(r[0], r[1], span(buf, r[2], r[3]), r[5], span(buf, r[6], r[7]), r[8]) for r in recs]

        for n in (1, 2, 5):
            want = proposals(0, n)
            self.assertEqual(want[0], (0, 1, b"x:0", 0, b'{"q":1}', 0))
            for reserve in (1, 2, 3, 8):
                self.assertEqual(proposals(reserve, n), want, f"reserve {reserve}, {n} proposals")

    def test_no_proposals_is_an_empty_buffer(self):
        self.assertEqual(bp.Output(["x"]).to_bytes(), b"")

    def test_react_error_names_the_event(self):
        e1 = self.batch[1]
        err = bp.ReactError.at(e1, "bad quantity")
        self.assertEqual((err.message, err.event), ("bad quantity", 1))
        self.assertIsNone(bp.ReactError("whole batch").event)

    def test_declaration(self):
        d = bp.Declaration("inv", "0.1.0", consumes=["order.placed"], emits=["stock.low"], max_batch=64)
        self.assertEqual((d.consumes, d.emits, d.canal, d.max_batch), (["order.placed"], ["stock.low"], bp.CURSOR_GUARANTEED, 64))
        with self.assertRaises(TypeError):
            bp.Declaration("inv", "0.1.0", consumes="order.placed")
        with self.assertRaises(ValueError):
            bp.Declaration("inv", "0.1.0", consumes=[], canal="fast")

    def test_host_names_need_a_component_build(self):
        with self.assertRaises(ImportError):
            bp.Reactor


if __name__ == "__main__":
    unittest.main()
