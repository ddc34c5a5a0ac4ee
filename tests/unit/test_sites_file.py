from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from shared.domain.model import TagPolicy
from shared.services.sites_file import SitesFileError, load_sites_file

ROOT = Path(__file__).resolve().parents[2]

CR_ID = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/connectedRegistries/p1"
GOOD = """\
registry: ContosoACR.azurecr.io
sites:
  - name: plant-01
    ring: ring1
    critical: true
    owner: ops@contoso.example
    repositories: ["inspection/*", "gateway"]
    tags: {exclude: ["latest"], include: ["1.*"], semver_only: true}
    schedule: "0 2 * * *"
    sync_window: PT3H
    message_ttl: P2D
    connected_registry: CR_ID
    endpoint: https://plant01.contoso.example/
    stale_after_windows: 3
  - name: store-0001
    repositories: ["retail/*"]
""".replace("CR_ID", CR_ID)


def test_a_full_site_is_read_with_every_key() -> None:
    parsed = load_sites_file(GOOD)
    assert parsed.registry == "contosoacr.azurecr.io"
    plant, store = parsed.sites
    assert (plant.name, plant.ring, plant.critical, plant.owner) == ("plant-01", "ring1", True, "ops@contoso.example")
    assert plant.repositories == ("inspection/*", "gateway")
    assert plant.tag_policy == TagPolicy(include=("1.*",), exclude=("latest",), semver_only=True)
    assert (plant.schedule, plant.sync_window, plant.message_ttl) == (
        "0 2 * * *",
        timedelta(hours=3),
        timedelta(days=2),
    )
    assert plant.endpoint == "https://plant01.contoso.example" and plant.stale_after_windows == 3
    assert (store.ring, store.critical, store.schedule, store.message_ttl) == (
        "default",
        False,
        None,
        timedelta(days=2),
    )


@pytest.mark.parametrize(
    ("patch", "line", "words"),
    [
        (("    ring: ring1", "    rign: ring1"), 4, "unknown key 'rign'"),
        (('    schedule: "0 2 * * *"', '    schedule: "0 25 * * *"'), 9, "cron"),
        (("    sync_window: PT3H", "    sync_window: PT30M"), 10, "PT1H to P7D"),
        (("    sync_window: PT3H", "    sync_window: P8D"), 10, "PT1H to P7D"),
        (("    message_ttl: P2D", "    message_ttl: P91D"), 11, "P1D to P90D"),
        (("    message_ttl: P2D", "    message_ttl: P1M"), 11, "months"),
        (("  - name: store-0001", "  - name: plant-01"), 15, "duplicate site name 'plant-01'"),
        (("    critical: true", "    critical: yes please"), 5, "true or false"),
        (("  - name: plant-01", "  - name: Plant 01"), 3, "not a site name"),
        (("    endpoint: https://plant01.contoso.example/", "    endpoint: ftp://x"), 13, "http(s) URL"),
        (("    stale_after_windows: 3", "    stale_after_windows: 0"), 14, "at least 1"),
        (('    repositories: ["retail/*"]', "    repositories: []"), 15, "at least one approved repository"),
        (("registry: ContosoACR.azurecr.io", "registry: https://x"), 1, "login server"),
    ],
)
def test_a_bad_file_is_refused_with_the_line_and_the_reason(patch: tuple[str, str], line: int, words: str) -> None:
    text = GOOD.replace(*patch)
    with pytest.raises(SitesFileError) as info:
        load_sites_file(text)
    assert any(p.startswith(f"line {line}:") and words in p for p in info.value.problems), info.value.problems
    assert info.value.code == "INVALID_SITES_FILE"


def test_a_schedule_without_a_window_is_refused() -> None:
    with pytest.raises(SitesFileError, match="needs a sync_window"):
        load_sites_file(GOOD.replace("    sync_window: PT3H\n", ""))


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("    ring: ring1", "    rign: ring1").replace("    sync_window: PT3H", "    sync_window: PT1M")
    with pytest.raises(SitesFileError) as info:
        load_sites_file(text)
    assert len(info.value.problems) == 2


@pytest.mark.parametrize("text", ["", "- just a list", "sites: 3", "{{{", "sites:\n  - 42"])
def test_files_that_are_not_sites_files(text: str) -> None:
    with pytest.raises(SitesFileError):
        load_sites_file(text)


def test_short_windows_need_the_file_and_the_caller_to_agree() -> None:
    short = GOOD.replace("    sync_window: PT3H", "    sync_window: PT1M").replace(
        "    message_ttl: P2D", "    message_ttl: PT30M"
    )
    flagged = "simulation:\n  allow_short_windows: true\n" + short
    with pytest.raises(SitesFileError):
        load_sites_file(short, allow_short_windows=True)  # the file does not ask
    with pytest.raises(SitesFileError):
        load_sites_file(flagged)  # the caller is not the simulated dev mode
    assert load_sites_file(flagged, allow_short_windows=True).sites[0].sync_window == timedelta(minutes=1)


def test_the_shipped_examples_load() -> None:
    demo = load_sites_file((ROOT / "sites.yaml").read_text(), allow_short_windows=True)
    assert {s.ring for s in demo.sites} == {"ring1", "ring2", "ring3"} and any(s.critical for s in demo.sites)
    assert len(load_sites_file((ROOT / "examples" / "sites.azure.yaml").read_text()).sites) == 3
    with pytest.raises(SitesFileError):
        load_sites_file((ROOT / "sites.yaml").read_text())  # demo windows are not for real connected registries
