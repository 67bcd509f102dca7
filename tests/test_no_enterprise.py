"""StepChange never installs DBOS's proprietary Conductor client: not `dbos-enterprise`
(nor `dbos`'s "enterprise" extra) in any Python environment the suite builds, not
`@dbos-inc/dbos-enterprise` in any of its node_modules, and no requirement asks for them.
@dbos-inc/dbos-sdk 5.3 names the package as an optional peer, which npm leaves out."""

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every environment the Makefile, tests/fixtures/generate.py and the e2e tests build.
PYTHON_ENVIRONMENTS = [".venv", ".venv-dbos340", "var/sdk-fixtures/*/venv-dbos-*"]
NODE_MODULES = ["node_modules", "samples/typescript/node_modules"]
REQUIREMENTS = ["pyproject.toml", "tests/e2e/requirements-*.txt", "**/package.json"]
ENTERPRISE_DIST = re.compile(r"^dbos[-_.]enterprise-.*\.(dist|egg)-info$", re.IGNORECASE)
ENTERPRISE_NODE = "node_modules/@dbos-inc/dbos-enterprise"
ENTERPRISE_ASKED = re.compile(r"dbos[-_.]enterprise|dbos\[[^\]]*enterprise", re.IGNORECASE)


def python_enterprise(environment: Path) -> list[Path]:
    """The dbos-enterprise distributions installed in a virtual environment."""
    return [
        found
        for site in environment.glob("lib/python*/site-packages")
        for found in site.iterdir()
        if ENTERPRISE_DIST.match(found.name)
    ]


def node_enterprise(node_modules: Path) -> list[str]:
    """Where @dbos-inc/dbos-enterprise is installed under a node_modules, nested or not:
    the folder, or its entry in the lock npm keeps there."""
    found = []
    if (node_modules / "@dbos-inc" / "dbos-enterprise").exists():
        found.append(str(node_modules / "@dbos-inc" / "dbos-enterprise"))
    return found + locked_enterprise(node_modules / ".package-lock.json")


def locked_enterprise(lock: Path) -> list[str]:
    """The enterprise package's entries among what an npm lock file installs."""
    if not lock.exists():
        return []
    packages = json.loads(lock.read_text()).get("packages", {})
    return [key for key in packages if key.endswith(ENTERPRISE_NODE)]


def asked_for(text: str, *, package_json: bool) -> list[str]:
    """Requirements naming the enterprise package. A package.json may name it as a peer
    only (as the SDK's own does); its dependency lists may not."""
    if not package_json:
        return [line for line in text.splitlines() if ENTERPRISE_ASKED.search(line.split("#")[0])]
    manifest = json.loads(text)
    lists = ("dependencies", "devDependencies", "optionalDependencies")
    return [name for key in lists for name in manifest.get(key) or {} if "enterprise" in name]


def environments(patterns: list[str]) -> list[Path]:
    return [path for pattern in patterns for path in sorted(ROOT.glob(pattern)) if path.is_dir()]


def test_no_python_environment_of_the_suite_has_dbos_enterprise() -> None:
    built = environments(PYTHON_ENVIRONMENTS)
    if os.environ.get("CI") == "true":
        assert {".venv", ".venv-dbos340"} <= {path.name for path in built}, built
    for environment in built:
        assert python_enterprise(environment) == [], environment


def test_no_node_modules_of_the_suite_has_dbos_enterprise() -> None:
    for node_modules in environments(NODE_MODULES):
        assert node_enterprise(node_modules) == [], node_modules


def test_no_requirement_asks_for_dbos_enterprise() -> None:
    files = [
        path
        for pattern in REQUIREMENTS
        for path in ROOT.glob(pattern)
        if "node_modules" not in path.parts and not path.parts[len(ROOT.parts)].startswith(".")
    ]
    assert any(path.name == "requirements-dbos340.txt" for path in files)
    for path in files:
        assert asked_for(path.read_text(), package_json=path.suffix == ".json") == [], path
    locks = [ROOT / "package-lock.json", ROOT / "samples" / "typescript" / "package-lock.json"]
    for lock in locks:
        assert lock.exists(), lock
        assert locked_enterprise(lock) == [], lock


def test_each_check_finds_an_installed_enterprise_package(tmp_path: Path) -> None:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "dbos-3.4.0.dist-info").mkdir()
    assert python_enterprise(tmp_path / "venv") == []
    (site / "dbos_enterprise-3.4.0.dist-info").mkdir()
    assert len(python_enterprise(tmp_path / "venv")) == 1
    modules = tmp_path / "node_modules"
    lock: dict[str, dict[str, Any]] = {"packages": {"node_modules/@dbos-inc/dbos-sdk": {}}}
    (modules / "@dbos-inc" / "dbos-sdk").mkdir(parents=True)
    (modules / ".package-lock.json").write_text(json.dumps(lock))
    assert node_enterprise(modules) == []
    lock["packages"]["node_modules/@dbos-inc/dbos-enterprise"] = {"version": "5.3.0"}
    (modules / ".package-lock.json").write_text(json.dumps(lock))
    assert node_enterprise(modules) == ["node_modules/@dbos-inc/dbos-enterprise"]
    assert asked_for("dbos==3.4.0\n# never dbos-enterprise\n", package_json=False) == []
    assert asked_for("dbos[enterprise]==3.4.0\n", package_json=False) != []
    assert asked_for("dbos-enterprise==3.4.0\n", package_json=False) != []
    peer = {"peerDependencies": {"@dbos-inc/dbos-enterprise": "~5.3.0"}}
    assert asked_for(json.dumps(peer), package_json=True) == []
    wanted = {"dependencies": {"@dbos-inc/dbos-enterprise": "5.3.0"}}
    assert asked_for(json.dumps(wanted), package_json=True) == ["@dbos-inc/dbos-enterprise"]


@pytest.mark.parametrize("name", ["dbos-enterprise-3.4.0.dist-info", "DBOS_Enterprise-1.egg-info"])
def test_both_spellings_of_a_distribution_are_recognised(name: str) -> None:
    assert ENTERPRISE_DIST.match(name)
