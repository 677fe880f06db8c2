"""The package's shape: no import cycle, the layer contract of .importlinter kept (and able to fail)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent


def import_cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle():
    graph = grimp.build_graph("recbole_mamex", "dataset_prep")
    assert import_cycles(graph) == []
    # the check sees a cycle when there is one
    graph.add_import(importer="recbole_mamex.paths", imported="recbole_mamex.cli")
    assert import_cycles(graph)


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_layer_contract_holds_and_breaks_on_an_upward_import(tmp_path):
    kept = lint_imports(ROOT)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "2 kept, 0 broken" in kept.stdout
    # a copy of the package where the data layer imports the command line: the contract fails
    for name in ("recbole_mamex", "dataset_prep"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "bundled"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    planted = tmp_path / "recbole_mamex" / "data" / "features.py"
    planted.write_text(planted.read_text() + "\nfrom recbole_mamex import cli  # noqa\n")
    # and one where the statistics of a comparison import its command line
    stats = tmp_path / "recbole_mamex" / "compare" / "stats.py"
    stats.write_text(stats.read_text() + "\nfrom recbole_mamex.compare import cli  # noqa\n")
    broken = lint_imports(tmp_path)
    assert broken.returncode != 0
    assert "recbole_mamex.data is not allowed to import recbole_mamex.cli" in broken.stdout
    assert "recbole_mamex.compare.stats is not allowed to import recbole_mamex.compare.cli" in broken.stdout


def test_importing_the_package_loads_nothing_heavy():
    """`import recbole_mamex` and the importers' modules load neither torch nor RecBole (so `--help` and
    every dataset_prep command start at once); a Config applies the shims."""
    code = (
        "import sys, recbole_mamex, recbole_mamex.cli, dataset_prep.mmrec\n"
        "print(sorted(m for m in ('torch', 'recbole', 'ray', 'pandas') if m in sys.modules))\n"
        "from recbole_mamex import compat\n"
        "print(compat.applied_shims())\n"
        "import recbole_mamex.config\n"
        "print(compat.applied_shims() == list(compat.SHIMS))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["[]", "[]", "True"]


def test_no_generated_split_ships_with_the_package():
    # compare --split-seeds makes <dataset>-split<seed> (its yaml in ./properties/dataset/) on first use; a
    # committed one made that refuse on a fresh clone ("already exists") while its data was not there.
    # .gitignore keeps the ones a comparison run from the checkout makes out of commits.
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "properties/dataset"], cwd=ROOT, capture_output=True, text=True, check=True)
    shipped = tracked.stdout.split()
    assert shipped and not [name for name in shipped if re.search(r"-split\d+\.yaml$", name)]
    ignored = subprocess.run(["git", "check-ignore", "-q", "properties/dataset/lastfm-2k-cold-split2030.yaml"], cwd=ROOT)
    assert ignored.returncode == 0
