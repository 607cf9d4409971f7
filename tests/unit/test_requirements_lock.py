"""The requirements files are full locks with hashes, compiled from the pins in ``*.in``.

``make setup`` installs with ``--require-hashes``, so a lock that misses a package fails the
install; these tests name the cause instead: a pin edited in a ``.in`` file without ``make lock``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()


def _pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[_name(match.group(1))] = match.group(2)
    return found


def _locked(path: Path) -> dict[str, list[str]]:
    """Each locked package and the hashes listed for it."""
    packages: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = _name(match.group(1))
            packages[current] = []
        elif current and line.strip().startswith("--hash=sha256:"):
            packages[current].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return packages


@pytest.mark.parametrize(
    ("source", "lock"),
    [("requirements.in", "requirements.txt"), ("requirements-dev.in", "requirements-dev.txt")],
)
def test_every_direct_pin_is_locked_at_the_same_version(source, lock):
    direct = _pins(ROOT / source)
    locked = {name: version for name, version in _pins(ROOT / lock).items()}
    assert direct, f"{source} pins nothing"
    stale = {
        name: (version, locked.get(name))
        for name, version in direct.items()
        if locked.get(name) != version
    }
    assert stale == {}, f"{lock} is out of date with {source}: run `make lock`"


@pytest.mark.parametrize("lock", ["requirements.txt", "requirements-dev.txt"])
def test_every_locked_package_has_a_hash(lock):
    packages = _locked(ROOT / lock)
    assert len(packages) > 20
    assert [name for name, hashes in packages.items() if not hashes] == []
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for hashes in packages.values() for h in hashes)


def test_the_dev_lock_installs_the_same_versions_as_the_app_lock():
    app = _pins(ROOT / "requirements.txt")
    dev = _pins(ROOT / "requirements-dev.txt")
    assert {name: (v, dev.get(name)) for name, v in app.items() if dev.get(name) != v} == {}


def test_the_locks_name_no_local_package_index():
    for lock in ("requirements.txt", "requirements-dev.txt"):
        text = (ROOT / lock).read_text()
        assert "--index-url" not in text and "--find-links" not in text, lock
