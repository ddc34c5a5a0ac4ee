"""`acrsync demo` tells the whole story and exits 0 (on a fast demo clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_reaches_ready_goes_stale_and_recovers(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--speed", "120", "--sites", str(ROOT / "sites.yaml"), "--timeout", "120"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "the gate is open" in out
    assert "mine-07     stale" in out and "Alert: mine-07 is stale" in out
    assert out.index("Alert: mine-07 is stale") < out.rindex("mine-07     synced")
    assert out.rstrip().endswith("Demo complete.")
