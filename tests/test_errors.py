"""One base for user-facing errors; every command line prints one as a single `error:` line, status 2."""

import importlib
import inspect
import pkgutil

import pytest

import dataset_prep
import recbole_mamex
from recbole_mamex.errors import RecboleMamexError, report_user_errors

FAST_ARGS = ["--epochs=1", "--train_batch_size=256", "--show_progress=False", "--state=WARNING", "--use_gpu=False"]


def package_error_classes():
    found = {}
    for package in (recbole_mamex, dataset_prep):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == info.name:
                    found[f"{info.name}.{name}"] = value
    return found


def test_every_error_class_has_the_common_base():
    classes = package_error_classes()
    assert len(classes) >= 15
    # TrialPruned is a signal inside a search, not an error a user sees
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, RecboleMamexError) and not name.endswith("TrialPruned"))
    assert outside == []


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_training_command_line(tiny_dataset, workdir, capsys):
    from recbole_mamex.cli import main

    assert main(["--model=BPR", "--dataset=tiny", "--eval_candidates=bogus", *FAST_ARGS]) == 2
    assert "eval_candidates" in one_error_line(capsys)
    assert main(["--model=MAMEX", "--dataset=tiny", "--tower_scope=everything", *FAST_ARGS]) == 2
    assert "tower_scope: expected one of" in one_error_line(capsys)


def test_other_command_lines(tiny_dataset, workdir, capsys):
    from dataset_prep.coldstart import main as coldstart
    from recbole_mamex.compare import main as compare
    from recbole_mamex.interpret import main as interpret
    from recbole_mamex.serving import main as serve

    assert compare(["--dataset", "tiny", "--models", "NoSuchModel", "--protocol", "warm"]) == 2
    assert "Unknown model 'NoSuchModel'" in one_error_line(capsys)
    assert serve(["missing.pth", "--users", "1"]) == 2
    assert "missing.pth" in one_error_line(capsys)
    assert interpret(["missing.pth", "--out", "w.csv"]) == 2
    assert "missing.pth" in one_error_line(capsys)
    assert coldstart(["--dataset", "tiny", "--fraction", "2"]) == 2
    assert "cold fraction: expected a number in (0, 1), found 2.0" in one_error_line(capsys)


def test_a_bug_keeps_its_traceback(monkeypatch):
    from recbole_mamex.errors import report_user_errors

    def broken():
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        report_user_errors(broken)


def test_missing_recbole_is_one_error_line_with_the_install_command(tmp_path):
    """Python 3.12+ installs RecBole in a second step (its ray pin has no wheel there); without it, a
    command says how to install it instead of a traceback."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class NoRecBole:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'recbole' or name.startswith('recbole.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'recbole'\", name='recbole')\n"
        "sys.meta_path.insert(0, NoRecBole())\n"
        "from recbole_mamex.cli import main\n"
        "sys.exit(main(['--model=BPR', '--dataset=tiny']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: RecBole 1.2.1 is not installed")
    assert 'pip install --no-deps "recbole==1.2.1"' in lines[0]


def test_ctrl_c_is_one_line_and_status_130(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert report_user_errors(interrupted) == 130
    assert capsys.readouterr().err == "interrupted\n"
