"""The systemd unit: it verifies, it is hardened, and it agrees with what the daemon does.

systemd-analyze is on every machine that runs these tests (developers' and CI's):
nothing here is skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from warden.daemon import SHUTDOWN_GRACE
from warden.exits import EXIT_BAD_INPUT
from warden.policy.durations import parse_duration
from warden.settings import SECRET_SETTINGS, Settings

ROOT = Path(__file__).parent.parent
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "warden.service"
MAX_EXPOSURE = 2.0
WARDEN = Path(sys.executable).parent / "warden"  # the venv's console script


def systemd_analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze is needed: apt-get install systemd"
    return subprocess.run(  # noqa: S603 - a fixed tool and our own unit file
        [tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def directives(unit: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit, in order, repeated keys kept."""
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture
def installed_unit(tmp_path: Path) -> Path:
    """The unit as an admin installs it, but running the venv's `warden`."""
    assert WARDEN.exists(), f"{WARDEN} is missing: pip install -e '.[dev]'"
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={WARDEN}", UNIT.read_text())
    unit = tmp_path / "warden.service"
    unit.write_text(text)
    return unit


def test_the_unit_passes_systemd_analyze_verify(installed_unit: Path):
    result = systemd_analyze("verify", installed_unit.name, cwd=installed_unit.parent)
    # verify exits 0 on some problems (an unknown key is "ignored"): any line is one.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_unit_exposure_is_at_most_2(installed_unit: Path):
    result = systemd_analyze(
        "security", "--offline=yes", installed_unit.name, cwd=installed_unit.parent
    )
    match = re.search(r"Overall exposure level for warden\.service: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


def test_the_unit_speaks_the_notify_protocol_with_a_watchdog():
    unit = directives(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]  # READY=1 and WATCHDOG=1 come from the daemon
    assert parse_duration(unit["WatchdogSec"][0]) > parse_duration("10s")
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # SIGHUP reloads the policies


def test_systemd_waits_longer_than_the_daemon_drains_at_sigterm():
    unit = directives(UNIT.read_text())
    assert parse_duration(unit["TimeoutStopSec"][0]).total_seconds() > SHUTDOWN_GRACE


def test_secrets_come_as_credentials_never_as_environment():
    unit = directives(UNIT.read_text())
    environment = " ".join(unit.get("Environment", []))
    assert not re.search(r"TOKEN|SECRET|PASSWORD|API_KEY", environment, re.IGNORECASE)
    credentials = {value.partition(":")[0] for value in unit["LoadCredential"]}
    warden_own = {name for name in credentials if name.startswith("warden_")}
    assert warden_own <= {f"warden_{name}" for name in SECRET_SETTINGS}


def test_the_example_environment_file_names_only_real_settings():
    text = (SYSTEMD / "warden.env.example").read_text()
    named = set(re.findall(r"(?m)^#?\s*WARDEN_([A-Z_]+)=", text))
    fields = {name.upper() for name in Settings.model_fields}
    assert named
    assert named <= fields, named - fields


def test_bad_policies_leave_the_unit_failed_instead_of_restarting_it_every_5_s():
    unit = directives(UNIT.read_text())
    assert unit["Restart"] == ["on-failure"]  # a store or platform down at start: retried
    prevented = " ".join(unit["RestartPreventExitStatus"]).split()
    assert str(EXIT_BAD_INPUT) in prevented


def headings(document: Path) -> set[str]:
    return {
        line.lstrip("#").strip()
        for line in document.read_text().splitlines()
        if line.startswith("#")
    }


def test_every_section_the_systemd_files_point_at_exists():
    pointers = [
        (document, section)
        for path in sorted(SYSTEMD.iterdir())
        for document, section in re.findall(r'((?:docs/)?[\w.-]+\.md), "([^"]+)"', path.read_text())
    ]
    assert pointers
    missing = [p for p in pointers if p[1] not in headings(ROOT / p[0])]
    assert not missing


def test_the_systemd_files_hold_no_placeholder_urls():
    for path in SYSTEMD.iterdir():
        found = re.findall(
            r"\w+://\S+|\bexample\.(?:com|org|net)\b|\S+\.internal\b", path.read_text()
        )
        assert not found, f"{path.name}: {found}"
