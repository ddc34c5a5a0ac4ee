"""The deployed app's requirements and the project's dependencies must not drift apart."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _requirements() -> dict[str, str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    pins = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return {re.split(r"[<>=!~ \[]", pin, maxsplit=1)[0].lower(): pin for pin in pins}


def test_every_deployed_requirement_is_a_project_dependency_with_the_same_pin() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~ \[]", dep, maxsplit=1)[0].lower(): dep for dep in project["dependencies"]}
    for name, pin in _requirements().items():
        assert declared.get(name) == pin, f"{name}: requirements.txt has {pin!r}, pyproject.toml {declared.get(name)!r}"


def test_functions_library_stays_below_2_on_python_311() -> None:
    assert _requirements()["azure-functions"] == "azure-functions>=1.23,<2"


def test_deployed_app_does_not_ship_local_only_tools() -> None:
    assert not {"uvicorn", "typer", "rich", "pytest", "azure-functions-worker"} & set(_requirements())


def test_local_settings_are_ignored_and_the_example_is_valid_json() -> None:
    import json

    assert "local.settings.json" in (ROOT / ".gitignore").read_text().splitlines()
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    assert example["Values"]["FUNCTIONS_WORKER_RUNTIME"] == "python"
