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
    link: {bandwidth: 2Mbit/s}
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
    assert (plant.bandwidth_bps, store.bandwidth_bps) == (2_000_000, None)
    assert (plant.position, store.position) == (0, 1)  # the order of the file, for the dashboard
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
        (("  - name: store-0001", "  - name: plant-01"), 16, "duplicate site name 'plant-01'"),
        (("    critical: true", "    critical: yes please"), 5, "true or false"),
        (("  - name: plant-01", "  - name: Plant 01"), 3, "not a site name"),
        (("    endpoint: https://plant01.contoso.example/", "    endpoint: ftp://x"), 13, "http(s) URL"),
        (("    stale_after_windows: 3", "    stale_after_windows: 0"), 14, "at least 1"),
        (('    repositories: ["retail/*"]', "    repositories: []"), 16, "at least one approved repository"),
        (
            ("    link: {bandwidth: 2Mbit/s}", "    link: {bandwidth: fast}"),
            15,
            "link.bandwidth: 'fast' is not a bandwidth",
        ),
        (("    link: {bandwidth: 2Mbit/s}", "    link: {bandwith: 2Mbit/s}"), 15, "unknown key 'bandwith'"),
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


# -- hostile and ambiguous input ----------------------------------------------------------------

SECRET = "s3cr3t-Pa55w0rd"


def _refused(text: str) -> list[str]:
    with pytest.raises(SitesFileError) as info:
        load_sites_file(text)
    assert info.value.code == "INVALID_SITES_FILE"
    return info.value.problems


def _with_endpoint(endpoint: str) -> str:
    return GOOD.replace("https://plant01.contoso.example/", endpoint)


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://plant01.contoso.example",
        "http://10.0.0.5:5000",
        "http://127.0.0.1.nip.io:5000",  # a name that merely starts like a loopback address
        "http://[::ffff:127.0.0.1]:5000",
        "http://0x7f000001",
        "HTTP://plant01.contoso.example",
    ],
)
def test_plain_http_endpoints_are_refused_outside_loopback(endpoint: str) -> None:
    problems = _refused(_with_endpoint(endpoint))
    assert any(p.startswith("line 13:") and "https" in p and "loopback" in p for p in problems), problems


@pytest.mark.parametrize(
    ("endpoint", "stored"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("http://127.9.8.7/", "http://127.9.8.7"),
        ("http://[::1]:5000", "http://[::1]:5000"),
        ("http://localhost:5000", "http://localhost:5000"),
        ("http://LocalHost:5000", "http://LocalHost:5000"),
    ],
)
def test_plain_http_on_loopback_needs_no_dev_flag(endpoint: str, stored: str) -> None:
    # Loopback traffic never leaves the machine, as for --arm-endpoint: `acrsync sites import` takes it too.
    assert load_sites_file(_with_endpoint(endpoint)).sites[0].endpoint == stored


@pytest.mark.parametrize(
    "endpoint",
    [
        f"https://ci:{SECRET}@plant01.contoso.example",
        f"https://{SECRET}@plant01.contoso.example",
        f"http://ci:{SECRET}@127.0.0.1:5000",
        f"https://ci:{SECRET}@plant01.contoso.example:99999",
        f"http://ci:{SECRET}@plant01.contoso.example/v2/?x=1",
        f"https://ci:{SECRET}@",
    ],
)
def test_credentials_in_an_endpoint_are_refused_and_never_repeated(endpoint: str) -> None:
    with pytest.raises(SitesFileError) as info:
        load_sites_file(_with_endpoint(endpoint))
    problems = info.value.problems
    assert any(p.startswith("line 13:") and "credentials" in p for p in problems), problems
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.args) and SECRET not in info.value.detail


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://plant01.contoso.example:99999",
        "https://plant01.contoso.example/?x=1",
        "https://plant01.contoso.example/#frag",
        "https://",
        "https:///v2",
        "'https://plant 01.contoso.example'",
    ],
)
def test_an_endpoint_must_be_a_registry_address(endpoint: str) -> None:
    problems = _refused(_with_endpoint(endpoint))
    assert any(p.startswith("line 13:") and "endpoint" in p for p in problems), problems


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            GOOD.replace("    owner:", "    ring: ring2\n    owner:"),
            6,
            "duplicate key 'ring' in a site (first on line 4)",
        ),
        (GOOD.replace("  - name: store-0001\n", "  - name: store-0001\n    name: store-0002\n"), 17, "'name'"),
        (GOOD + "sites: []\n", 18, "duplicate key 'sites' in the file (first on line 2)"),
        (GOOD.replace('include: ["1.*"]', 'include: ["1.*"], include: ["2.*"]'), 8, "duplicate key 'include' in tags"),
        ("simulation: {allow_short_windows: false, allow_short_windows: true}\n" + GOOD, 1, "'allow_short_windows'"),
    ],
)
def test_duplicate_keys_are_refused_with_their_line(text: str, line: int, words: str) -> None:
    problems = _refused(text)
    assert any(p.startswith(f"line {line}:") and words in p for p in problems), problems


@pytest.mark.parametrize(
    ("patch", "line"),
    [
        (("  - name: plant-01", "  - name: !!python/object:os.system plant-01"), 3),
        (("    ring: ring1", "    ring: !!python/object/apply:os.system [echo hi]"), 4),
        (("    ring: ring1", "    ring: !!python/name:os.system"), 4),
        (("  - name: plant-01", "  - name: !!binary cGxhbnQtMDE="), 3),
        (("  - name: plant-01", "  - name: !site plant-01"), 3),
        (('    repositories: ["inspection/*", "gateway"]', '    repositories: !list ["inspection/*"]'), 7),
        (('    repositories: ["inspection/*", "gateway"]', "    repositories: !!set {inspection/camera: null}"), 7),
        (("    owner: ops@contoso.example", "    owner: !!timestamp 2026-01-01"), 6),
        (("    stale_after_windows: 3", "    stale_after_windows: !!python/int 3"), 14),
        (("registry: ContosoACR.azurecr.io", "registry: !<tag:example.com,2026:host> contosoacr.azurecr.io"), 1),
        (("  - name: plant-01\n", "  - !site\n    name: plant-01\n"), 3),
    ],
)
def test_custom_tags_are_refused_without_a_traceback(patch: tuple[str, str], line: int) -> None:
    problems = _refused(GOOD.replace(*patch))
    assert any(p.startswith(f"line {line}:") and "tag" in p for p in problems), problems


def test_standard_tags_still_read() -> None:
    text = GOOD.replace("  - name: plant-01", "  - name: !!str plant-01").replace(
        "    stale_after_windows: 3", "    stale_after_windows: !!int 3"
    )
    assert next((s.name, s.stale_after_windows) for s in load_sites_file(text).sites) == ("plant-01", 3)


AMBIGUOUS = ["0x1f", "yes", "no", "on", "off", "1e3", "~", "null", "2026-01-01", "1_000", "012", "1:20", ".inf", "12"]


@pytest.mark.parametrize("value", AMBIGUOUS)
@pytest.mark.parametrize(
    ("template", "line"),
    [
        ("  - name: plant-01", 3),
        ("    ring: ring1", 4),
        ("    owner: ops@contoso.example", 6),
        ('    repositories: ["inspection/*", "gateway"]', 7),
        ('    tags: {exclude: ["latest"], include: ["1.*"], semver_only: true}', 8),
    ],
)
def test_text_that_yaml_reads_as_something_else_must_be_quoted(template: str, line: int, value: str) -> None:
    key = template.strip(" -").split(":", 1)[0]
    if key == "repositories":
        replacement = f"    repositories: [inspection/camera, {value}]"
    elif key == "tags":
        replacement = f"    tags: {{include: [{value}]}}"
    else:
        replacement = template.split(":", 1)[0] + f": {value}"
    problems = _refused(GOOD.replace(template, replacement))
    assert any(p.startswith(f"line {line}:") and "quote it" in p for p in problems), problems


@pytest.mark.parametrize("value", [v for v in AMBIGUOUS if v not in {"~", "null", "1:20", ".inf"}])
def test_quoted_text_is_read_as_written(value: str) -> None:
    text = (
        GOOD.replace("  - name: store-0001", f"  - name: '{value.replace('_', '-').replace('.', '')}'")
        .replace("    ring: ring1", f'    ring: "{value}"')
        .replace('include: ["1.*"]', f"include: ['{value}']")
    )
    plant, store = load_sites_file(text).sites
    assert plant.ring == value and plant.tag_policy.include == (value,)
    assert store.name == value.replace("_", "-").replace(".", "")


def test_a_null_name_says_to_quote_it_not_that_it_is_empty() -> None:
    problems = _refused(GOOD.replace("  - name: plant-01", "  - name: ~"))
    assert any(p.startswith("line 3:") and "quote it" in p for p in problems), problems
    assert not any("''" in p for p in problems), problems


@pytest.mark.parametrize(
    ("patch", "line"),
    [
        (("    ring: ring1", '    ring: "ring1\\e[2J"'), 4),
        (("    owner: ops@contoso.example", '    owner: "ops\\u202e@contoso.example"'), 6),
        (("    owner: ops@contoso.example", '    owner: "ops\\nBCC: x"'), 6),
    ],
)
def test_control_characters_in_text_are_refused(patch: tuple[str, str], line: int) -> None:
    problems = _refused(GOOD.replace(*patch))
    assert any(p.startswith(f"line {line}:") and "control" in p for p in problems), problems
    assert not any("\x1b" in p or "\u202e" in p or "\n" in p for p in problems), problems


def test_keys_must_be_plain_text() -> None:
    problems = _refused(GOOD.replace("    ring: ring1", "    ? [ring]\n    : ring1"))
    assert any(p.startswith("line 4:") and "key" in p for p in problems), problems
    assert not any("ScalarNode" in p for p in problems), problems
