"""Shared fixtures: the fixture roles (tests/fixtures/roles) come before the product roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.paths import ROLES_DIR

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def roles_paths() -> list[Path]:
    return [FIXTURES / "roles", ROLES_DIR]


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES
