"""The Lua scripts the workers run, loaded once per process."""

from importlib.resources import files

from redis.commands.core import Script


def _load(name: str) -> Script:
    # Not bound to a client: each call names the connection of the job it serves.
    return Script(None, files(__package__).joinpath("lua", f"{name}.lua").read_bytes())


apply_receipts = _load("apply_receipts")
raise_event = _load("raise_event")
release_lock = _load("release_lock")
