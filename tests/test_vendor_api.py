"""The public API (`from conformance import ...`), what BackendInfo and
KnownFailure accept, and the opt-in `options` argument of the backend hook."""
from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

import conformance
from conformance import (
    BackendInfo,
    Decision,
    KnownFailure,
    Layer,
    Observable,
    Observables,
    Observation,
    Profile,
    VmType,
    hookimpl,
    observation_problem,
)
from conformance.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
BASE = dict(name="acme", version="1", profiles=frozenset(Profile), layers=frozenset(Layer),
            vm_types=frozenset(VmType), observables=frozenset(Observable))


def test_every_public_name_resolves_to_its_module():
    for name, module in conformance.EXPORTS.items():
        assert getattr(conformance, name) is getattr(importlib.import_module(f"conformance.{module}"), name), name
    assert set(conformance.__all__) == set(conformance.EXPORTS) | {"__version__"}
    assert "BackendInfo" in dir(conformance)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        conformance.Nope  # noqa: B018


def test_the_type_checking_imports_are_the_exports():
    """Type checkers read the TYPE_CHECKING block; the runtime reads EXPORTS: they must agree."""
    tree = ast.parse((ROOT / "conformance" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    static = {(node.module, alias.asname) for node in block.body if isinstance(node, ast.ImportFrom)
              and node.module != "typing" for alias in node.names}
    assert static == {(module, name) for name, module in conformance.EXPORTS.items()}


def test_importing_the_package_is_cheap():
    code = ("import sys, conformance; print(json.dumps(sorted(m for m in sys.modules "
            "if m.startswith(('conformance', 'pytest', '_pytest', 'pluggy')))))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["conformance"]


def test_a_backend_built_from_the_public_names_is_valid():
    info = BackendInfo(**BASE, capabilities=conformance.all_capabilities(),
                       known_failures=(KnownFailure("call/*", "r", Profile.MAINLINE),))
    assert info.known_failures[0].profile == "mainline"  # a member is kept as its value
    assert "huge:1G" in conformance.CAPABILITY_TAGS and conformance.linux_tag("6.18.4-x") == "linux:6.18"
    assert conformance.hookimpl is hookimpl and conformance.ENTRY_POINT_GROUP == "kvm_mmu_conformance.backends"


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"profiles": frozenset({"mainline"})}, TypeError,
     "BackendInfo.profiles: 'mainline' is a str; use conformance.Profile.MAINLINE (or Profile('mainline'))"),
    ({"layers": {"call"}}, TypeError, "BackendInfo.layers: 'call' is a str; use conformance.Layer.CALL (or Layer('call'))"),
    ({"layers": {Layer.CALL}}, TypeError, "BackendInfo.layers: a set; expected a frozenset of conformance.Layer"),
    ({"vm_types": frozenset({"TDZ"})}, TypeError,
     "BackendInfo.vm_types: 'TDZ' is a str; use one of conformance.VmType.DEFAULT, conformance.VmType.SW_PROTECTED"),
    ({"observables": frozenset({1})}, TypeError,
     "BackendInfo.observables: 1 is a int; expected members of conformance.Observable"),
    ({"observables": frozenset()}, ValueError, "BackendInfo.observables: empty; a backend that observes nothing"),
    ({"capabilities": frozenset({"huge:2m"})}, ValueError,
     "BackendInfo.capabilities: unknown capability tag 'huge:2m' (did you mean 'huge:2M'?)"),
    ({"capabilities": ["smm"]}, TypeError, "BackendInfo.capabilities: ['smm']; expected a frozenset of str"),
    ({"name": ""}, TypeError, "BackendInfo.name: '' is not a non-empty str"),
    ({"details": {"n": 1}}, TypeError, "BackendInfo.details: {'n': 1}; expected a mapping of str to str"),
    ({"known_failures": [KnownFailure("p", "r")]}, TypeError, "BackendInfo.known_failures: [KnownFailure("),
    ({"expectations": "x.toml"}, TypeError, "BackendInfo.expectations: 'x.toml' is a str; use a pathlib.Path"),
    ({"expectations": Path("x.toml")}, ValueError, "BackendInfo.expectations: 'x.toml' is relative"),
])
def test_backend_info_names_the_wrong_field(change, error, message):
    with pytest.raises(error) as info:
        BackendInfo(**{**BASE, **change})
    assert str(info.value).startswith(message), str(info.value)


def test_an_unavailable_backend_may_declare_nothing():
    info = BackendInfo(**{**BASE, "observables": frozenset(), "vm_types": frozenset()}, unavailable="no device")
    assert info.unmet(frozenset()) == ["backend acme unavailable: no device"]


def test_replace_checks_again():
    with pytest.raises(TypeError, match="BackendInfo.profiles: 'tdx-v10' is a str"):
        replace(BackendInfo(**BASE), profiles=frozenset({"tdx-v10"}))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"profile": "main"}, "KnownFailure.profile: 'main'; use one of conformance.Profile.TDX_V10, "
                          "conformance.Profile.MAINLINE"),
    ({"reason": ""}, "KnownFailure.reason: '' is not a non-empty str"),
    ({"links": ["x"]}, "KnownFailure.links: ['x']; expected a tuple of str"),
])
def test_known_failure_names_the_wrong_field(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        KnownFailure(**{"pattern": "p", "reason": "r", **kwargs})


def test_a_plain_string_observation_is_named_with_the_member_to_use():
    from conformance.load import load_file

    vector = load_file(ROOT / "suites" / "call" / "zap-all.toml").vectors[0]
    steps = tuple(Observables(decision="shared") for _ in vector.steps)  # type: ignore[arg-type]
    assert observation_problem(Observation(steps), vector) == (
        "field `decision` of step 1 is 'shared', expected Decision; use conformance.Decision.SHARED")
    assert observation_problem(Observation(tuple(Observables(decision=Decision.SHARED) for _ in vector.steps)),
                               vector) is None


class Recorder:
    """A plugin object whose hook takes the opt-in `options`."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    @hookimpl
    def conformance_backend(self, options):
        self.seen.append(dict(options))
        with pytest.raises(TypeError):
            options["x"] = "y"  # read-only: one backend's options cannot leak into another's
        return None


def test_the_hook_passes_options_only_to_implementations_that_name_them():
    registry = Registry()
    recorder = Recorder()
    plain = types.SimpleNamespace(conformance_backend=hookimpl(lambda: None))
    registry.pm.register(recorder, name="rec")
    registry.pm.register(plain, name="plain")
    registry.collect_backend("rec", {"firmware": "/fw.bin"})
    registry.collect_backend("plain", {"firmware": "/fw.bin"})  # no argument named: called without
    registry.collect_backend("rec")
    assert recorder.seen == [{"firmware": "/fw.bin"}, {}]
    assert registry.errors == []


def test_a_hook_naming_an_unknown_argument_is_refused_at_registration():
    registry = Registry()
    with pytest.raises(Exception, match="nonsense"):
        registry.pm.register(types.SimpleNamespace(conformance_backend=hookimpl(lambda nonsense: None)), name="x")
