"""The package's structure (docs/design.md, "Layers"): no import cycle, imports that point down through the layers
of pyproject.toml's import-linter contracts, and every module placed in a layer. Checked with import-linter and
its graph builder grimp, which see every import statement, those inside functions included."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _lint_imports(config: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    exe = str(exe) if exe.exists() else shutil.which("lint-imports")
    assert exe, "lint-imports (import-linter) is not installed; pip install -e '.[test]'"
    return subprocess.run([exe, "--no-logo", "--no-cache", str(config)], capture_output=True, text=True, cwd=ROOT)


def _cycles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("difflab")


def test_no_import_cycle(graph):
    """No module reaches itself through imports (a package's __init__ importing its own children aside)."""
    cycles = [c for c in _cycles(graph) if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert cycles == [], f"import cycles: {cycles}"


def test_the_cycle_finder_finds_a_cycle(graph):
    """The check above would see a cycle: add one import that closes a loop through two layers."""
    graph.add_import(importer="difflab.process", imported="difflab.samplers.ddim", line_number=1, line_contents="x")
    assert any({"difflab.process", "difflab.samplers.ddim"} <= set(c) for c in _cycles(graph))
    graph.remove_import(importer="difflab.process", imported="difflab.samplers.ddim")


def test_imports_point_down_the_layers():
    done = _lint_imports(ROOT / "pyproject.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The same contracts with the training and sampler layers swapped must fail: the check reads real imports."""
    text = (ROOT / "pyproject.toml").read_text()
    swapped = text.replace('    "difflab.training",\n', '    "difflab.TMP",\n').replace(
        '    "difflab.samplers",\n', '    "difflab.training",\n').replace('    "difflab.TMP",\n', '    "difflab.samplers",\n')
    assert swapped != text
    config = tmp_path / "pyproject.toml"
    config.write_text(swapped)
    done = _lint_imports(config)
    assert done.returncode != 0 and "difflab.training is not allowed to import difflab" in done.stdout, done.stdout


def test_every_module_has_a_layer(graph):
    """A new top-level module must be placed in a layer, or the layer rules would not see it."""
    layered = set()
    for layer in CONFIG["contracts"][0]["layers"]:
        layered |= {m.strip() for m in re.split(r"[:|]", layer)}
    top = {".".join(m.split(".")[:2]) for m in graph.modules if m.count(".") >= 1}
    top -= {"difflab.__main__"}
    assert sorted(top - layered) == []
    assert sorted(layered - top) == []  # no stale name either


def test_rules_the_design_states(graph):
    """docs/design.md: training never imports the CLI, run or tasks; samplers, tasks and metrics never import
    training; loading a saved run, classifier or autoencoder needs no trainer."""
    def chain(importer: str, imported: str) -> bool:
        return graph.chain_exists(importer=importer, imported=imported, as_packages=True)

    for low in ("difflab.cli", "difflab.run", "difflab.tasks"):
        assert not chain("difflab.training", low), low
    for high in ("difflab.samplers", "difflab.tasks", "difflab.metrics", "difflab.saved", "difflab.run",
                 "difflab.pretrained"):
        assert not chain(high, "difflab.training"), high
    assert not chain("difflab.data", "difflab.models")
