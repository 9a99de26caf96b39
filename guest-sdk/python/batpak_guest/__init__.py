"""batpak_guest: write batpak reactors in Python (componentize-py).

    import batpak_guest as bp

    class Reactor(bp.Reactor):
        declaration = bp.Declaration("my-reactor", "0.1.0",
                                     consumes=["order.placed"], emits=["stock.low"])

        def on_batch(self, batch, out):
            for e in batch:
                if e.json()["qty"] > 10:
                    out.propose(e, "stock.low", {"sku": e.entity})

The batch is read in place (`Batch`, `Event`), proposals are written with
`Output.propose`, `ReactError` names the event to park. `Reactor`, `log`,
`read_entity`, `entity_events` and `get_event` talk to the host and load only inside a
componentize-py build; everything else is plain Python, testable anywhere.
"""

from . import layout
from .batch import Batch, Event
from .declaration import CURSOR_GUARANTEED, LOSSY_SUBSCRIPTION, Declaration
from .error import ReactError
from .output import SOURCE, UNDECLARED, Output, encode_payload

_COMPONENT = ("Reactor", "StoredEvent", "log", "read_entity", "entity_events", "get_event")

__all__ = [
    "layout", "Batch", "Event", "Declaration", "CURSOR_GUARANTEED", "LOSSY_SUBSCRIPTION",
    "ReactError", "Output", "SOURCE", "UNDECLARED", "encode_payload", *_COMPONENT,
]


def __getattr__(name):
    # The host-facing names import the generated bindings: loaded on first use.
    if name in _COMPONENT:
        from . import component

        return getattr(component, name)
    raise AttributeError(f"module 'batpak_guest' has no attribute {name!r}")
