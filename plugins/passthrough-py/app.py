"""passthrough-py: the pass-through reactor in Python, on the batpak_guest SDK.

Consumes `bench.in`; for every event proposes one `bench.out` on the same
entity and scope with the same payload bytes, caused by the source event.
Same behaviour as the Rust `passthrough` and the C and JavaScript versions:
the languages test compares their reactions.

Build (from the repository root; `-p guest-sdk/python` puts the SDK on the
path, or `pip install guest-sdk/python` it into componentize-py's Python):
    componentize-py -d wit -w reactor-plugin componentize -p plugins/passthrough-py -p guest-sdk/python app -o passthrough_py.wasm
"""

import batpak_guest as bp


class Reactor(bp.Reactor):
    declaration = bp.Declaration(
        "passthrough-py", "0.1.0", consumes=["bench.in"], emits=["bench.out"]
    )

    def on_batch(self, batch, out):
        # Raise bp.ReactError.at(event, "why") to park that event.
        for event in batch:
            out.propose(event, "bench.out", event.payload)
