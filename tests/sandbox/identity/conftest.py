"""Fixtures for the identity server's tests: a fresh :class:`Harness` per test."""

from __future__ import annotations

import pytest

from tests.sandbox.identity.harness import Harness


@pytest.fixture
def harness() -> Harness:
    return Harness()
