"""``recbole-mamex <command>``: the console script offers the package's command lines as subcommands, each
with the parser of its module entry point (which keeps working on its own); ``recbole-mamex --help``
lists them, and training flags without a command train, as before the script had subcommands."""

import configparser
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_mamex import cli
from recbole_mamex.cli import console_main

REPO = Path(__file__).resolve().parents[1]
SUBCOMMANDS = [
    (["run"], "recbole_mamex.cli"),
    (["compare"], "recbole_mamex.compare"),
    (["serve"], "recbole_mamex.serving"),
    (["interpret"], "recbole_mamex.interpret"),
    (["split"], "dataset_prep.coldstart"),
    *[(["prepare", name], f"dataset_prep.{name}") for name in ("amazon", "attributes", "images", "lattice", "mmrec", "s3rec")],
]


def words(text: str) -> str:
    return " ".join(text.split())  # argparse wraps a usage line by its program name's length


def stderr(exit, captured) -> str:
    """What the user sees on stderr: argparse prints its error, ``SystemExit("...")`` is printed by Python."""
    return captured.err + (exit.value.code if isinstance(exit.value.code, str) else "")


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit:
        console_main(["--help"])
    out = capsys.readouterr().out
    assert exit.value.code == 0 and out.startswith("usage: recbole-mamex <command>")
    listed = re.findall(r"^    (\w+)", out, flags=re.M)
    assert listed == ["run", "compare", "serve", "interpret", "prepare", "split"]
    assert "(python -m recbole_mamex.compare)" in words(out) and "(python run_recbole_mamex.py)" in words(out)
    with pytest.raises(SystemExit) as exit:
        console_main(["prepare", "--help"])
    out = capsys.readouterr().out
    assert exit.value.code == 0
    assert re.findall(r"^    (\w+)", out, flags=re.M) == ["amazon", "attributes", "images", "lattice", "mmrec", "s3rec"]


@pytest.mark.parametrize("command, module", SUBCOMMANDS, ids=lambda x: " ".join(x) if isinstance(x, list) else x)
def test_a_subcommand_has_its_module_entry_points_parser(command, module, capsys):
    """Same help, flag for flag, as ``python -m <module> --help`` (named after the subcommand), and the
    same usage error."""
    entry = importlib.import_module(module)
    own_prog = inspect.signature(entry.main).parameters["prog"].default
    prog = "recbole-mamex " + " ".join(command)
    for argv in (["--help"], ["--no-such-flag=1", "--no-such-flag"]):
        with pytest.raises(SystemExit) as direct:
            entry.main(argv)
        alone = capsys.readouterr()
        with pytest.raises(SystemExit) as console:
            console_main([*command, *argv])
        via = capsys.readouterr()
        assert bool(console.value.code) == bool(direct.value.code)
        assert words(via.out) == words(alone.out.replace(own_prog, prog))
        assert words(stderr(console, via)) == words(stderr(direct, alone).replace(own_prog, prog))
    assert stderr(console, via).strip().splitlines()[-1].startswith(f"{prog}: error: ")


def test_every_module_entry_point_is_a_subcommand():
    """A command line added to the package (a module with a ``__main__`` block, or a package with a
    ``__main__.py``) is offered by the console."""
    entry_points = {
        ".".join(path.relative_to(REPO).with_suffix("").parts)
        for package in ("recbole_mamex", "dataset_prep")
        for path in (REPO / package).rglob("*.py")
        if re.search(r"^if __name__ == .__main__.:", path.read_text(encoding="utf-8"), flags=re.M)
    } | {".".join(path.parent.relative_to(REPO).parts) for package in ("recbole_mamex", "dataset_prep")
         for path in (REPO / package).rglob("__main__.py")}
    offered = {m for m in [*cli.COMMANDS.values(), *cli.IMPORTERS.values()] if m and m != cli.__name__}
    assert entry_points == offered
    assert (REPO / "run_recbole_mamex.py").read_text().count("from recbole_mamex.cli import main") == 1


def test_the_console_script_is_the_dispatcher():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    scripts = dict(line.split(" = ") for line in parser["options.entry_points"]["console_scripts"].strip().splitlines())
    module, function = scripts["recbole-mamex"].split(":")
    assert getattr(importlib.import_module(module), function) is console_main


def test_training_flags_without_a_command_train_as_before(monkeypatch):
    trained = []
    monkeypatch.setattr(cli, "_train", lambda args, files, overrides: trained.append((args.model, args.dataset, overrides)) or 0)
    assert console_main(["--model=BPR", "--dataset=tiny", "--epochs=1"]) == 0
    assert console_main(["run", "--model=BPR", "--dataset=tiny", "--epochs=1"]) == 0
    assert console_main(["-m", "BPR", "--epochs=1"]) == 0
    assert cli.main(["--model=BPR", "--dataset=tiny", "--epochs=1"]) == 0  # run_recbole_mamex.py's
    assert trained == [("BPR", "tiny", ["--epochs=1"])] * 2 + [("BPR", "lastfm-2k-cold", ["--epochs=1"]), ("BPR", "tiny", ["--epochs=1"])]


@pytest.mark.parametrize("argv, expected", [
    (["compre", "--dataset", "x"], "recbole-mamex: error: argument <command>: invalid choice: 'compre' (choose from 'run', 'compare'"),
    (["prepare"], "recbole-mamex prepare: error: the following arguments are required: <importer>"),
    (["prepare", "mmrc"], "recbole-mamex prepare: error: argument <importer>: invalid choice: 'mmrc' (choose from 'amazon'"),
    (["prepare", "mmrec"], "recbole-mamex prepare mmrec: error: the following arguments are required: src, --name"),
    (["run", "--epochs", "2"], "recbole-mamex run: error: config overrides must be written --key=value"),
])
def test_a_wrong_command_is_one_usage_error(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit:
        console_main(argv)
    err = stderr(exit, capsys.readouterr()).strip().splitlines()
    assert exit.value.code and err[-1].startswith(expected), err
    assert sum("error" in line for line in err) == 1


def test_no_argument_lists_the_commands_and_fails(capsys):
    with pytest.raises(SystemExit) as exit:
        console_main([])
    assert exit.value.code == 2 and "split" in capsys.readouterr().out


def test_listing_the_commands_loads_no_heavy_package():
    """``recbole-mamex --help`` is as light as ``run_recbole_mamex.py --help`` (bench/results/help_timing.md):
    a subcommand's module is imported only when it runs."""
    code = (
        "import sys\nfrom recbole_mamex.cli import console_main\n"
        "for argv in (['--help'], ['prepare', '--help']):\n"
        "    try:\n        console_main(argv)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'recbole', 'pandas', 'recbole_mamex.compare', 'dataset_prep.amazon') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_split_then_run_through_the_console(tiny_dataset, workdir, capsys):
    assert console_main(["split", "--dataset", "tiny", "--seed", "1"]) == 0
    assert (workdir / "dataset" / "tiny-cold" / "tiny-cold.cold_items.json").is_file()
    argv = ["run", "--model=BPR", "--dataset=tiny-cold", "--epochs=1", "--show_progress=False", "--state=WARNING"]
    assert console_main(argv) == 0
    out = capsys.readouterr().out
    assert "best valid [cold candidates]:" in out and "test [warm candidates]:" in out
