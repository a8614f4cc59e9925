"""`guest run`: boot the cached kernel under QEMU, run the suite inside with
the checkout's own venv, and bring the results back tagged with where they
ran. A guest that hangs, panics or never reaches the suite is stopped after
its limit and reported with the end of its console."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .. import report
from ..results import Results, ResultsError, dump, load_results
from . import config, images, prereq, proc
from .console import Console, Ending, Limits, watch
from .initscript import FACTS, FORWARDED, RESULTS, STATUS, Suite, render
from .progress import duration
from .qemu import Boot

MACHINE = "qemu-tcg guest (emulated AMD SVM)"
KEEP_RUNS = 5  # results directories kept under the cache's runs/
BUILD_HINT = "`python -m conformance guest build`"
VENV_HINT = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' ./backends/rust (the README's set-up)"
# the guest mounts its own there: host files under them are out of reach
GUEST_HIDDEN = ("/proc", "/sys", "/dev", "/run")
FAULT = 3  # the exit status for a guest that did not bring results back
Say = Callable[[str], None]


@dataclass(frozen=True)
class Request:
    npt: bool
    boot_timeout: float
    timeout: float
    json_out: Path | None
    kernel: Path | None  # default: the cached image for this source and fragment
    python: Path | None  # default: the checkout's venv
    quiet: bool  # show the guest's pytest output only on failure
    pytest_args: tuple[str, ...]


class Refusal(Exception):
    """A reason not to boot, with the command that fixes it."""


def checkout() -> Path:
    """The project checkout this package runs from: the guest runs the same one."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "suites").is_dir() or not (root / "pyproject.toml").is_file():
        raise Refusal(
            f"the guest runs the suite of a project checkout, but this package is not in one ({root}); "
            "run from a clone installed with the README's set-up"
        )
    return root


def guest_python(request: Request, root: Path) -> Path:
    if request.python is not None:
        if not os.access(request.python, os.X_OK):
            raise Refusal(f"--python {request.python} is not an executable")
        return request.python.absolute()  # not resolved: a venv's interpreter is a symlink that must stay one
    python = root / ".venv" / "bin" / "python"
    if not os.access(python, os.X_OK):
        raise Refusal(
            f"no virtual environment at {root / '.venv'}: the guest runs the checkout's own. "
            f"Make it in {root} with: {VENV_HINT}"
        )
    return python


def kernel_image(request: Request, root: Path) -> Path:
    if request.kernel is not None:
        path = request.kernel
    else:
        fragment = config.load_fragment()
        source = images.find_source()
        image = images.lookup(root, images.image_key(source, fragment)) if source else images.newest_for(root, fragment)
        if image is None:
            raise Refusal(
                f"no guest kernel cached in {root} for this source and config fragment; build it with {BUILD_HINT}"
            )
        path = image.bzimage
    problem = images.boot_problem(path)
    if problem:
        raise Refusal(f"{problem}; build a guest kernel with {BUILD_HINT}")
    return path


def results_dir(root: Path) -> Path:
    """A new directory for one run's init script, console and results; old ones pruned."""
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    runs = runs.resolve()  # the guest sees the host's real paths, not symlinks into /run or the like
    if any(runs.is_relative_to(hidden) for hidden in GUEST_HIDDEN) or any(c.isspace() for c in str(runs)):
        raise Refusal(
            f"the guest cannot reach {runs} (under {', '.join(GUEST_HIDDEN)}, or with white space "
            f"for the kernel command line); point ${images.CACHE_ENV} elsewhere"
        )
    for old in sorted(d for d in runs.iterdir() if d.is_dir())[: -(KEEP_RUNS - 1)]:
        shutil.rmtree(old, ignore_errors=True)
    out = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    out.mkdir()
    return out


def run(request: Request, env: Mapping[str, str], say: Say, clock: Callable[[], float] = time.monotonic) -> int:
    needs = prereq.for_run(env.get("PATH"))
    if needs:
        say(prereq.advice(needs, "boot the guest"))
        return 2
    root = images.cache_root(env)
    try:
        kernel = kernel_image(request, root)
        project = checkout()
        suite = Suite(
            project,
            guest_python(request, project),
            request.pytest_args,
            color=sys.stdout.isatty(),
            columns=shutil.get_terminal_size().columns,
            env=tuple((name, env[name]) for name in FORWARDED if name in env),
        )
        out = results_dir(root)
    except (Refusal, config.FragmentError) as err:
        say(f"guest run: {err}")
        return 2
    nonce = secrets.token_hex(8)
    init = out / "init"
    init.write_text(render(suite, nonce), encoding="utf-8")
    init.chmod(0o755)
    boot = Boot(kernel, init, out, request.npt)
    say(f"guest run: booting {kernel} (npt={int(request.npt)}); console log {out / 'console.log'}")
    with (out / "console.log").open("wb") as log:
        console = Console(nonce, log, None if request.quiet else sys.stdout, say)
        try:
            with (
                proc.TerminationAsException(),
                proc.running(
                    boot.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                ) as qemu,
            ):
                ending = watch(qemu, console, Limits(request.boot_timeout, request.timeout), clock)
        except KeyboardInterrupt:
            say("guest run: interrupted; the guest was stopped")
            return 130
        except proc.Interrupted as stop:
            say(f"guest run: {stop}; the guest was stopped")
            return 128 + stop.signum
    return bring_back(request, out, console, ending, say)


def fault(ending: Ending, started: bool, request: Request) -> str | None:
    if ending.how == "boot-timeout":
        return f"the guest did not reach the suite within {request.boot_timeout:g} s (--boot-timeout)"
    if ending.how == "run-timeout":
        return f"the guest did not finish within {request.timeout:g} s (--timeout)"
    if ending.how == "exited" and not started:
        return "the guest stopped before it reached the suite (a panic, or QEMU refused to start)"
    return None


def bring_back(request: Request, out: Path, console: Console, ending: Ending, say: Say) -> int:
    status = read_status(out / STATUS)
    problem = fault(ending, console.started, request)
    if problem is None and status is None:
        problem = "the guest stopped while the suite was running (a panic or a crash); no exit status came back"
    if problem is not None:
        say(f"guest run: {problem} after {duration(ending.seconds)}. Last console lines:")
        for line in console.tail():
            say(f"  | {line}")
        say(f"guest run: whole console: {out / 'console.log'}")
        return FAULT
    assert status is not None
    facts = read_facts(out / FACTS)
    npt = {"Y": "1", "N": "0"}.get(facts.get("npt", ""), str(int(request.npt)))
    where = {"machine": MACHINE, "npt": npt}
    results = read_results(out / RESULTS)
    boot = f"boot {duration(ending.boot_seconds)}, " if ending.boot_seconds is not None else ""
    say(
        f"results from {MACHINE}: Linux {facts.get('kernel') or '?'}, tdp_mmu={facts.get('tdp_mmu') or '?'}, "
        f"npt={npt} ({boot}total {duration(ending.seconds)}; {out})"
    )
    if npt != str(int(request.npt)):
        say(f"guest run: note: npt={int(request.npt)} was asked for, the guest's kvm_amd says npt={npt}")
    if results is None:
        say(f"guest run: the guest's pytest exited with status {status} and wrote no results")
    else:
        tagged = tag_where(results, where)
        for line in report.matrix_lines(r.as_dict() for r in tagged.results):  # skip reasons: the guest's output
            say(line)
        if request.json_out is not None:
            try:
                dump(tagged, request.json_out)
            except OSError as err:
                say(f"guest run: cannot write {request.json_out}: {err.strerror}; the results are in {out / RESULTS}")
                return status or 2
            say(f"guest run: results written to {request.json_out}")
    if status != 0 and request.quiet:
        say("guest run: the guest's pytest failed; the end of its output:")
        for line in console.tail():
            say(f"  | {line}")
    if status != 0:
        say(
            f"guest run: the guest's pytest exited with status {status}"
            + (" (nothing collected)" if status == 5 else "")
        )
        return status
    return 0 if results is not None else FAULT


def read_status(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def read_facts(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def read_results(path: Path) -> Results | None:
    try:
        return load_results(path)
    except ResultsError:
        return None


def tag_where(results: Results, where: Mapping[str, str]) -> Results:
    """Every item and backend marked with the guest's facts; a backend's own fact of the same name stays."""
    runs = tuple(
        replace(run, backends=tuple(replace(b, where={**where, **b.where}) for b in run.backends))
        for run in results.runs
    )
    return Results(runs, tuple(replace(r, where={**where, **r.where}) for r in results.results))
