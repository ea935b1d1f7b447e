"""Errors that end a whole run (as opposed to faults that end one episode).

Kept free of heavy imports so that the CLI can catch them cheaply.
"""

from __future__ import annotations

__all__ = ["StartupError"]


class StartupError(RuntimeError):
    """An executor (in-process, worker process or Ray actor) could not be built.

    Typically the agent failed to load (bad checkpoint, missing dependency, an exception
    in its ``__init__``). Retrying cannot help, so the run stops; the message names the
    cause in one line, and the CLI prints it as ``para-bench: error: ...``.
    """


def describe(error: BaseException) -> str:
    """``TypeName: first line of the message`` (or just the type name).

    Args:
        error: any exception.

    Returns:
        A one-line description.
    """
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
