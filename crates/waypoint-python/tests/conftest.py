"""Fixtures for the package's tests: a fresh file store per test, the ``waypoint`` binary for the
interop tests, the test PostgreSQL server, and a helper that runs Python in a child process.

The binary is ``$WAYPOINT_BIN`` (``cargo xtask test`` sets it); otherwise it is built here with
cargo, as ``tests/integration/cli_harness.rs`` builds it. PostgreSQL tests read
``$WAYPOINT_TEST_POSTGRES_URL`` and fail without it: they never skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import waypoint

ROOT = Path(__file__).resolve().parents[3]


def _built_binary() -> Path:
    cargo = os.environ.get("CARGO", "cargo")
    subprocess.run([cargo, "build", "--quiet", "-p", "waypoint-cli", "--bins"], cwd=ROOT, check=True)
    metadata = subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, check=True, capture_output=True, text=True
    )
    binary = Path(json.loads(metadata.stdout)["target_directory"]) / "debug" / "waypoint"
    assert binary.is_file(), f"cargo built waypoint-cli but {binary} is missing"
    return binary


@pytest.fixture(scope="session")
def waypoint_bin() -> Path:
    given = os.environ.get("WAYPOINT_BIN")
    if given:
        binary = Path(given)
        assert binary.is_file(), f"WAYPOINT_BIN={given} is not a file"
        return binary
    return _built_binary()


class Cli:
    """The ``waypoint`` binary on one store."""

    def __init__(self, binary: Path, store: str) -> None:
        self.binary = binary
        self.store = store

    def run(self, *args: str, expect: int = 0, cwd: Optional[Path] = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.binary), "--store", self.store, *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert done.returncode == expect, f"waypoint {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str, expect: int = 0, cwd: Optional[Path] = None) -> Any:
        return json.loads(self.run(*args, "--format", "json", expect=expect, cwd=cwd).stdout)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_dir: Path) -> waypoint.Store:
    return waypoint.open(store_dir)


@pytest.fixture
def cli(waypoint_bin: Path, store_dir: Path) -> Cli:
    return Cli(waypoint_bin, str(store_dir))


@pytest.fixture
def key() -> str:
    """A key no other test uses (PostgreSQL tests share one database)."""
    return f"k-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("WAYPOINT_TEST_POSTGRES_URL", "").strip()
    if not url:
        pytest.fail(
            "WAYPOINT_TEST_POSTGRES_URL is not set: run `cargo xtask test`, which starts a throwaway PostgreSQL "
            "(it needs the PostgreSQL server package, e.g. `apt-get install postgresql`)",
            pytrace=False,
        )
    return url


def run_python(code: str, *args: str, env: Optional[Dict[str, str]] = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` (dedented) in a fresh interpreter with the package importable."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def event_types(store: waypoint.Store, plan_id: str) -> List[str]:
    return [event.type for event in store.service().history(plan_id)]
