"""``mmate topology``: the specs' topology against a live broker (verify, plan, apply). The
``mmate`` command of the runtime hands ``mmate topology ...`` to ``command.main``."""
