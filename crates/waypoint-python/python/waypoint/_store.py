"""Opening a store by location: a folder, or a ``postgres://`` URL, as the CLI opens it."""

from __future__ import annotations

import getpass
import os
import socket
from typing import Optional, Union

from . import _native
from ._service import PlanResumeService
from ._workflow import Workflow


class Store:
    """An open store: start workflows on it, or drive plans through its service."""

    def __init__(self, native: _native.Store) -> None:
        self._native = native

    @property
    def location(self) -> str:
        """Where the store is, as messages show it (never with a password)."""
        return self._native.location

    def workflow(self, key: str, *, name: Optional[str] = None, new: bool = False) -> Workflow:
        """The durable workflow keyed ``key`` (a plan id: letters, digits, ``_`` and ``-``, at
        most 64). Enter it with ``with`` or ``async with``: it creates the key's plan, continues
        it where it stopped, or replays it if it finished (``new=True`` starts it afresh).
        ``name`` is shown by ``waypoint plan list``; the key when absent."""
        return Workflow(self._native, key, name, new)

    def service(self) -> PlanResumeService:
        """The plan lifecycle service over this store."""
        return PlanResumeService(self._native)

    def __repr__(self) -> str:
        return f"<waypoint.Store {self.location!r}>"


def _actor() -> str:
    """Who this process is, as the events it records name it: ``python:<user>@<host>:<pid>``."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"python:{user}@{socket.gethostname()}:{os.getpid()}"


def open(location: Union[str, "os.PathLike[str]", None] = None) -> Store:
    """Opens the store at ``location``: a folder (created on first write) or a ``postgres://``
    URL; by default ``$WAYPOINT_STORE``, else ``./.waypoint``, as the CLI does."""
    if location is None:
        location = os.environ.get("WAYPOINT_STORE") or ".waypoint"
    return Store(_native.open_store(os.fspath(location), _actor()))
