"""`Declaration`: what a reactor consumes and emits, for `describe`."""

CURSOR_GUARANTEED = "cursor-guaranteed"
LOSSY_SUBSCRIPTION = "lossy-subscription"


class Declaration:
    """A reactor's descriptor: its name (1 to 64 of a-z, 0-9, `-`, `_`; it
    keys the checkpoint), version, the kinds it consumes (optionally only
    entities starting with `entity_prefix`, in `scope`), the kinds it emits
    (proposals name them), its canal and its largest batch (0: the host's
    default)."""

    def __init__(
        self,
        name,
        version,
        consumes,
        emits=(),
        *,
        entity_prefix=None,
        scope=None,
        canal=CURSOR_GUARANTEED,
        max_batch=0,
    ):
        if isinstance(consumes, str) or isinstance(emits, str):
            raise TypeError("consumes and emits are lists of kinds, not one string")
        if canal not in (CURSOR_GUARANTEED, LOSSY_SUBSCRIPTION):
            raise ValueError(
                f"canal {canal!r}: expected {CURSOR_GUARANTEED!r} or {LOSSY_SUBSCRIPTION!r}"
            )
        self.name = name
        self.version = version
        self.consumes = list(consumes)
        self.emits = list(emits)
        self.entity_prefix = entity_prefix
        self.scope = scope
        self.canal = canal
        self.max_batch = int(max_batch)
