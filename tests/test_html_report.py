"""The merged HTML report in a real headless Chromium: three runs (the
models, the kernel backend on this host, and that run made to look like a
kernel on another machine with failures), merged by `report`, then checked
in the page's DOM against counts computed here: the matrix per backend,
profile and machine, the totals, a failure's diff after a click, skips
grouped by reason, the bug-class drill-down; and a screenshot. A second
test loads a page of 100,000 synthetic items."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from conformance import html_report, merge
from conformance.browser import Chromium, find
from conformance.registry import find_sources
from conformance.results import Result, Results, dump, load_results

REPO = Path(__file__).resolve().parent.parent
READY = "document.documentElement.dataset.ready === '1'"
FAILING = ("failed", "error", "crashed", "timeout")
SETTLE = "await new Promise(r => setTimeout(r, 50));"  # a <details> announces its toggle in a later task
DIFF = "step 1 (memslot_delete, line 12): flush: expected true, observed false"

pytestmark = pytest.mark.skipif(find() is None, reason="chromium not installed: apt-get install chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium(height=1000, timeout=60) as chromium:
        yield chromium


def suite_run(out: Path, *backends: str) -> subprocess.Popen[str]:
    args = [a for b in backends for a in ("--backend", b)]
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                             "suites", *args, "--conformance-json", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def elsewhere(kernel: Results) -> Results:
    """The kernel run as if on another machine (a TDP MMU guest), two items
    failing with a diff and one crashed."""
    [run] = kernel.runs
    where = {"kernel": "6.12.117", "tdp_mmu": "Y", "npt": "1"}
    other = replace(run, host="lab-b", kernel="6.12.117", source="",
                    backends=tuple(replace(b, where={**b.where, **where}) for b in run.backends))
    picked = [i for i, r in enumerate(kernel.results) if r.outcome == "passed"][:3]
    if len(picked) < 3:  # no usable /dev/kvm here: every kernel item was skipped
        picked = [0, 1, 2]
    changed = {picked[0]: ("failed", DIFF), picked[1]: ("failed", DIFF.replace("true", "false", 1)),
               picked[2]: ("crashed", "backend kernel crashed: SIGSEGV")}
    items = tuple(
        replace(r, where={**r.where, **where}, outcome=changed[i][0], detail=changed[i][1]) if i in changed
        else replace(r, where={**r.where, **where})
        for i, r in enumerate(kernel.results)
    )
    return Results((other,), items)


@pytest.fixture(scope="module")
def merged_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Results, Path, Path]:
    tmp = tmp_path_factory.mktemp("report")
    installed = set(find_sources()[0])
    models = [b for b in ("reference", "rust", "tdx-v10-posted") if b in installed]
    runs = [suite_run(tmp / "models.json", *models), suite_run(tmp / "kernel.json", "kernel")]
    for process in runs:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    dump(elsewhere(load_results(tmp / "kernel.json")), tmp / "lab-b.json")
    page, merged = tmp / "report.html", tmp / "merged.json"
    out = subprocess.run([sys.executable, "-m", "conformance", "report", *(str(tmp / f) for f in
                          ("models.json", "kernel.json", "lab-b.json")), "--html", str(page), "--json", str(merged)],
                         cwd=tmp, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"written: {page}" in out.stdout
    return load_results(merged), page, tmp


def expected_matrix(results: Results) -> dict[tuple[str, str, str], dict[str, int]]:
    counts: dict[tuple[str, str, str], Counter[str]] = {}
    for column, r in zip(merge.columns(results), results.results):
        counts.setdefault((column.backend, column.profile, column.where), Counter())[r.outcome] += 1
    return {key: {**c, "total": sum(c.values())} for key, c in counts.items()}


def test_the_merged_page_shows_every_run_in_chromium(merged_page: tuple[Results, Path, Path],
                                                      browser: Chromium) -> None:
    results, page, tmp = merged_page
    schema = json.loads((REPO / "conformance" / "schemas" / "results.schema.json").read_text())
    jsonschema.validate(json.loads((tmp / "merged.json").read_text()), schema)
    assert len(results.runs) == 3 and {r.host for r in results.runs} >= {"lab-b"}
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(""", html)  # fetches nothing
    browser.open(page.as_uri(), READY)

    # the matrix: one row per backend x profile x machine, each count as computed here
    rows = browser.evaluate("""[...document.querySelectorAll('#matrix tr.column')].map(r => [
        r.dataset.backend, r.dataset.profile, r.querySelector('.machine').textContent,
        Object.fromEntries([...r.querySelectorAll('[data-outcome]')].map(c => [c.dataset.outcome, +c.textContent]))])""")
    shown = {(b, p, m): {o: n for o, n in cells.items() if n} for b, p, m, cells in rows}
    assert shown == expected_matrix(results)
    kernels = [key for key in shown if key[0] == "kernel"]
    assert len(kernels) == 2 and any("lab-b (" in m and "tdp_mmu=Y" in m for _, _, m in kernels)  # two machines
    totals = browser.evaluate("""Object.fromEntries([...document.querySelectorAll('#totals .card')].map(
        c => [c.dataset.outcome, +c.querySelector('b').textContent]))""")
    outcomes = Counter(r.outcome for r in results.results)
    assert {o: n for o, n in totals.items() if o not in ("total", "ignored") and n} == dict(outcomes)
    assert totals["total"] == len(results.results)
    assert browser.evaluate("document.getElementById('summary').textContent").startswith(
        f"{len(results.results)} items from 3 run(s) on 2 host(s)")

    # failures: listed, and a click shows the diff
    failing = [r for r in results.results if r.outcome in FAILING]
    assert browser.evaluate("+document.querySelector('#failures .paged').dataset.total") == len(failing) == 3
    diff = browser.evaluate(f"""(async () => {{
        const item = [...document.querySelectorAll('#failures details.item')].find(d => d.dataset.outcome === 'failed');
        if (item.querySelector('pre')) return 'built before the click';
        item.querySelector('summary').click();
        {SETTLE}
        return item.querySelector('pre.diff').textContent; }})()""")
    assert diff in {r.detail for r in failing if r.outcome == "failed"} and "flush: expected" in diff

    # skips, grouped by their exact reason, with the count per column
    browser.evaluate(f"(async () => {{ document.querySelector('#skips summary').click(); {SETTLE} }})()")
    groups = browser.evaluate("""[...document.querySelectorAll('#skips details.group')].map(
        g => [g.querySelector('.group-reason').textContent, +g.dataset.count])""")
    skipped = Counter(r.detail for r in results.results if r.outcome == "skipped")
    assert dict(groups) == dict(skipped) and len(groups) == len(skipped) > 1
    assert [n for _, n in groups] == sorted(skipped.values(), reverse=True)
    first = browser.evaluate(f"""(async () => {{ const g = document.querySelector('#skips details.group');
        g.querySelector('summary').click();
        {SETTLE}
        return [...g.querySelectorAll('.per-column tr')].reduce((n, r) => n + +r.querySelector('.n').textContent, 0);
        }})()""")
    assert first == groups[0][1]

    # a matrix count opens exactly its items
    key = next(k for k in kernels if "lab-b" in k[2])
    listed = browser.evaluate(f"""(() => {{
        const row = [...document.querySelectorAll('#matrix tr.column')].find(r => r.querySelector('.machine').textContent === {json.dumps(key[2])});
        row.querySelector('[data-outcome=failed] button').click();
        const list = document.querySelector('#items .paged');
        return [+list.dataset.total, [...list.querySelectorAll('details.item')].map(d => d.dataset.outcome)]; }})()""")
    assert listed == [2, ["failed", "failed"]]

    # the item filters: a text matches vector ids and descriptions, case-insensitively
    typed = browser.evaluate(f"""(async () => {{
        document.querySelectorAll('#items select').forEach(s => {{ s.value = ''; }});
        const box = document.querySelector('#items input[name=text]');
        box.value = 'MEMSLOT';
        box.dispatchEvent(new Event('input'));
        await new Promise(r => setTimeout(r, 400));  // the filter waits for typing to pause
        return +document.querySelector('#items .paged').dataset.total; }})()""")
    assert typed == sum("memslot" in r.vector or "memslot" in r.description.lower() for r in results.results) > 0

    # declared failures, grouped by their declared reason
    known = Counter(r.known_failure for r in results.results if r.outcome == "xfailed")
    browser.evaluate(f"(async () => {{ document.querySelector('#xfails summary').click(); {SETTLE} }})()")
    declared = browser.evaluate("""[...document.querySelectorAll('#xfails details.group')].map(
        g => [g.querySelector('.group-reason').textContent, +g.dataset.count])""")
    assert dict(declared) == dict(known)

    # bug classes open into their flags; a flag's total is every item of its vectors
    browser.evaluate(f"(async () => {{ document.querySelector('#classes summary').click(); {SETTLE} }})()")
    flag_items = Counter(f.name for r in results.results for f in r.flags)
    opened = browser.evaluate("""(() => { const row = document.querySelector('#classes tr.bug-class');
        row.querySelector('button').click();
        const flags = [];
        for (let r = row.nextElementSibling; r && r.classList.contains('flag'); r = r.nextElementSibling)
          flags.push([r.dataset.flag, +r.querySelector('[data-outcome=total]').textContent]);
        return flags; })()""")
    assert opened and all(flag_items[name] == n for name, n in opened), opened

    browser.evaluate("window.scrollTo(0, 0)")
    shot = tmp / "report.png"
    browser.screenshot(shot, full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_a_page_of_100000_items_is_ready_quickly(tmp_path: Path, browser: Chromium) -> None:
    spec = importlib.util.spec_from_file_location("report_page", REPO / "bench" / "report_page.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.synthetic(100_000)
    page = tmp_path / "big.html"
    page.write_text(html_report.render(results), encoding="utf-8")
    browser.open(page.as_uri(), READY)
    timing = browser.evaluate("window.reportTiming")
    assert timing["readyAt"] < 5000, timing  # measured about 0.2 s (docs/results.md)
    total = browser.evaluate("+document.querySelector('#totals [data-outcome=total] b').textContent")
    assert total == 100_000
    assert browser.evaluate("document.querySelectorAll('#failures details.item').length") == 50  # one page built
    assert isinstance(results.results[0], Result)
