"""The ``lake`` fixture: an empty :class:`~tests.models.lakes.FixtureLake` in the test's temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.models.lakes import FixtureLake


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[FixtureLake]:
    yield FixtureLake(tmp_path / "lake")
