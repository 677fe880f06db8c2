"""The commands the docs give cannot rot: every shell block (```bash, ```sh, ```shell, ```console) of
README.md and docs/**/*.md is read, and each command in it that calls one of the package's entry points
(``python run_recbole_mamex.py``, ``python -m recbole_mamex.<module>``, ``python -m dataset_prep.<module>``,
``recbole-mamex <command>``, ``make <target> ARGS=...``) is parsed by that entry point's real parser,
without running it: the module exists, every flag is one it takes, every value has its type, every
``--key=value`` config entry is well formed and names a key some config layer defines
(:func:`recbole_mamex.config.known_config_keys`). A code span of the prose that calls an entry point
(``python -m recbole_mamex.compare --jobs 2``) is checked the same way, short of the required arguments
prose may leave out. Scripts a command runs (``bash bench/x.sh``) must exist, and the extras a
``pip install`` names must be in setup.cfg. Parsing opens no file, so placeholders
(``/path/to/data``, ``saved/MAMEX-<date>.pth``) are fine; ``...`` stands for arguments left out, so
a command with it is not asked for its required ones.
"""

from __future__ import annotations

import configparser
import contextlib
import difflib
import importlib
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "zsh"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*\{?[ \t]*\.?(?P<lang>[\w+-]*)")
CONTROL = {"&&", "||", ";", "|", "&", ";;", "(", ")"}
WRAPPERS = {"nohup", "time", "exec", "env", "sudo", "command"}
PYTHON = re.compile(r"(^|/)python(3(\.\d+)?)?$")
PROJECT_MODULES = ("recbole_mamex.", "dataset_prep.")


@dataclass
class Command:
    doc: Path
    line: int
    text: str

    def __str__(self):
        return f"{self.doc.relative_to(REPO) if self.doc.is_relative_to(REPO) else self.doc.name}:{self.line}: {self.text}"


def doc_files(root: Path = REPO) -> list[Path]:
    """README.md and every page under docs/ (whatever exists when the tests run)."""
    readme = [root / "README.md"] if (root / "README.md").is_file() else []
    return readme + sorted((root / "docs").rglob("*.md"))


def shell_blocks(text: str):
    """(line number of the block's first line, its language, its lines) of each fenced shell block; a
    fence may be indented (inside a list, an admonition or a tab) and its lines lose that indent."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        indent, fence, lang = opened["indent"], opened["fence"], opened["lang"].lower()
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j]):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if lang in SHELL_LANGUAGES:
            yield i + 2, lang, body
        i = j + 1


def strip_comment(line: str) -> str:
    """``line`` up to a shell comment: a ``#`` that starts a word, outside quotes."""
    quote, escaped = None, False
    for k, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k]
    return line


def block_commands(first_line: int, lang: str, body: list[str]):
    """(line number, command text) of each command of a block: ``$ `` prompts dropped (in a console block
    only the prompted lines are commands, the others are output), comments dropped, ``\\`` continuations
    joined."""
    pending, start = "", None
    for offset, raw in enumerate(body):
        line = raw.rstrip()
        if not pending:
            prompted = re.match(r"^\s*\$ ", line)
            if lang == "console" and not prompted:
                continue
            line = line[prompted.end():] if prompted else line
            start = first_line + offset
        line = strip_comment(line).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text:
            yield start, text


def doc_commands(root: Path = REPO) -> list[Command]:
    found = []
    for doc in doc_files(root):
        for first_line, lang, body in shell_blocks(doc.read_text(encoding="utf-8")):
            found += [Command(doc, line, text) for line, text in block_commands(first_line, lang, body)]
    return found


INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
INLINE_COMMAND = re.compile(r"^(python3? (run_recbole_mamex\.py|-m (recbole_mamex|dataset_prep)\.\w+)|recbole-mamex( prepare)? (?!<)|make run)")


def inline_commands(root: Path = REPO) -> list[Command]:
    """The ``code spans`` of the prose (outside fenced blocks) that call an entry point; prose names a
    command and some of its flags, not always a whole call, so these are checked as if ending in ``...``."""
    found = []
    for doc in doc_files(root):
        fence = None
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
            opened = FENCE.match(line)
            if fence is None and opened:
                fence = opened["fence"]
            elif fence and re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", line):
                fence = None
            elif fence is None:
                found += [Command(doc, number, f"{m[1]} ...") for m in INLINE_CODE.finditer(line) if INLINE_COMMAND.match(m[1])]
    return found


def simple_commands(text: str) -> list[list[str]]:
    """The words of each simple command of a command line (split at ``&&``, ``|``, ``;``, ...), with
    redirections dropped; a ``<placeholder>`` is one word."""
    text = re.sub(r"<(\S[^<>\n]*\S|\S)>", lambda m: re.sub(r"\s+", "_", m[1]), text)  # <first machine>: a word
    text = re.sub(r"(?<!\S)\d*[<>]&\d+(?!\S)", " ", text)  # 2>&1
    text = re.sub(r"(?<!\S)\d+(?=[<>])", " ", text)  # the 2 of 2> log
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    commands, words, skip = [], [], False
    for word in lexer:
        if skip:
            skip = False
        elif word in CONTROL:
            commands.append(words)
            words = []
        elif set(word) <= set("<>&") and ("<" in word or ">" in word):
            skip = True  # a redirection and its target
        else:
            words.append(word)
    return [c for c in commands + [words] if c]


def setup_cfg_extras() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    return set(parser["options.extras_require"])


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return {name for line in text.splitlines() if (m := re.match(r"^([\w.-]+(?:\s+[\w.-]+)*)\s*:(?!=)", line)) for name in m[1].split()}


def relaxed(build_parser):
    """``build_parser`` whose parser asks for no required argument (a command with ``...`` leaves some out)."""

    def build(*args, **kwargs):
        parser = build_parser(*args, **kwargs)
        for action in parser._actions:
            action.required = False
        for group in parser._mutually_exclusive_groups:
            group.required = False
        return parser

    return build


def parse_entry_point(module_name: str, prog: str, args: list[str]) -> list[str]:
    """Problems of ``args`` for the entry point ``module_name`` (its real parser, as its ``main`` parses;
    nothing runs)."""
    from recbole_mamex.config import known_config_keys
    from recbole_mamex.errors import RecboleMamexError
    from recbole_mamex.overrides import overrides_dict

    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        return [f"no module {module_name} ({err})"]
    if not hasattr(module, "build_parser") or not hasattr(module, "main"):
        return [f"{module_name} is not a command line (no build_parser and main)"]
    elided = "..." in args
    args = [a for a in args if a != "..."]
    parsed, problem = _parse(module, prog, args, relax=elided)
    if problem and " required" in problem:  # argparse says so before naming a wrong flag
        problem = _parse(module, prog, args, relax=True)[1] or problem
    if problem is not None:
        return [problem] if problem else []
    try:
        keys = set(overrides_dict(getattr(parsed, "overrides", [])))
        if module_name == "recbole_mamex.compare":  # its other ways to set config entries
            keys |= set(module.parse_set(parsed.set))
            keys |= {key for _, settings in module.parse_variants(parsed.variant).values() for key in settings}
        unchecked = overrides_dict([a for a in getattr(parsed, "overrides", []) if a.startswith("--unchecked_keys=")])
    except RecboleMamexError as error:
        return [str(error)]
    unchecked = unchecked.get("unchecked_keys") or []
    allowed = set(known_config_keys()) | set(map(str, [unchecked] if isinstance(unchecked, str) else unchecked))
    names = [f for f in module.build_parser(prog)._option_string_actions if f.startswith("--")] + [f"--{k}" for k in allowed]
    problems = []
    for key in sorted(keys - allowed):
        close = difflib.get_close_matches(f"--{key}", names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"--{key}: neither a flag of {prog} nor a config key any layer defines{hint}")
    return problems


def _parse(module, prog: str, args: list[str], relax: bool):
    """(the parsed arguments, None) or (None, argparse's error line; "" for --help)."""
    err = io.StringIO()
    with contextlib.ExitStack() as stack:
        if relax:  # where the parser is built (a package's command line may live in a submodule)
            home = sys.modules[getattr(module, "parse_command_line", module.build_parser).__module__]
            stack.enter_context(mock.patch.object(home, "build_parser", relaxed(home.build_parser)))
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        try:
            if hasattr(module, "parse_command_line"):  # a parser whose unknown --key=value are config entries
                return module.parse_command_line(args, prog), None
            return module.build_parser(prog).parse_args(args), None
        except SystemExit as exit:
            if exit.code in (0, None):  # --help
                return None, ""
            return None, (err.getvalue().strip().splitlines() or [str(exit.code)])[-1]


def check_words(words: list[str]) -> list[str]:
    """Problems of one simple command; [] for a command that calls none of the package's entry points."""
    from recbole_mamex import cli

    while words and (re.match(r"^[A-Za-z_]\w*=", words[0]) or words[0] in WRAPPERS):
        words = words[1:]
    if words[:1] == ["timeout"]:
        words = words[2:]
    if not words:
        return []
    head, rest = words[0], words[1:]
    if PYTHON.search(head):
        while rest and rest[0].startswith("-") and rest[0] != "-m":
            if rest[0] == "-c":
                return []
            rest = rest[1:]
        if rest[:1] == ["-m"] and len(rest) > 1:
            module, args = rest[1], rest[2:]
            if module == "pip":
                return check_pip(args)
            if module.startswith(PROJECT_MODULES):
                return parse_entry_point(module, f"python -m {module}", args)
            return []
        if rest:
            script, args = rest[0], rest[1:]
            if Path(script).name == "run_recbole_mamex.py":
                return parse_entry_point(cli.__name__, cli.RUN_PROG, args)
            if not script.startswith(("/", "<", "~")) and not (REPO / script).is_file():
                return [f"no file {script}"]
        return []
    if head == cli.CONSOLE_PROG:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                module, prog, args = cli.entry_point(rest)
            except SystemExit as exit:
                return [] if exit.code == 0 else [(err.getvalue().strip().splitlines() or [str(exit.code)])[-1]]
        return parse_entry_point(module, prog, args)
    if head == "make":
        variables = dict(w.split("=", 1) for w in rest if "=" in w and not w.startswith("-"))
        targets = [w for w in rest if "=" not in w and not w.startswith("-") and w != "..."]
        problems = [f"no make target {t}" for t in targets if t not in makefile_targets()]
        if "run" in targets and "ARGS" in variables:
            problems += parse_entry_point(cli.__name__, cli.RUN_PROG, shlex.split(variables["ARGS"]))
        return problems
    if head in ("bash", "sh", "source", "."):
        scripts = [w for w in rest if not w.startswith("-")][:1]
        return [f"no file {s}" for s in scripts if not s.startswith(("/", "<", "~", ".venv")) and not (REPO / s).is_file()]
    if head in ("pip", "pip3") or head.endswith("/pip"):
        return check_pip(rest)
    return []


def check_pip(args: list[str]) -> list[str]:
    """The package's extras a ``pip install`` names (``.[hyper]``, ``recbole-mamex[images]``) exist."""
    named = [m for a in args if (m := re.match(r"^(?:\.|recbole-mamex)\[([^\]]*)\]$", a))]
    known = setup_cfg_extras()
    return [f"no extra {e} in setup.cfg" for m in named for e in map(str.strip, m[1].split(",")) if e not in known]


def command_problems(command: Command) -> list[str]:
    return [p for words in simple_commands(command.text) for p in check_words(words)]


COMMANDS = doc_commands()


def calls_entry_point(command: Command) -> bool:
    for words in simple_commands(command.text):
        heads = [w for w in words if not re.match(r"^[A-Za-z_]\w*=", w) and w not in WRAPPERS][:1]
        if heads and (PYTHON.search(heads[0]) or heads[0] in ("recbole-mamex", "make", "pip", "pip3", "bash", "sh")):
            return True
    return False


@pytest.mark.parametrize("command", [c for c in COMMANDS if calls_entry_point(c)], ids=lambda c: str(c).split(": ")[0])
def test_doc_command_parses(command):
    assert command_problems(command) == [], str(command)


@pytest.mark.parametrize("command", inline_commands(), ids=lambda c: str(c).split(": ")[0])
def test_doc_inline_command_parses(command):
    assert command_problems(command) == [], str(command)


def test_the_docs_give_commands_of_every_kind():
    """The reader above finds the README's commands (a broken reader would pass every doc)."""
    texts = [c.text for c in COMMANDS if c.doc == REPO / "README.md"]
    assert any(t.startswith("python run_recbole_mamex.py") for t in texts)
    assert any(t.startswith("python -m recbole_mamex.") for t in texts)
    assert any(t.startswith("python -m dataset_prep.") for t in texts)
    assert any(t.startswith("make ") for t in texts)


# ----------------------------------------------------------------------------- the reader and checker


def write_doc(tmp_path, body: str, lang: str = "bash") -> Path:
    doc = tmp_path / "page.md"
    doc.write_text(f"Some text.\n\n```{lang}\n{body}\n```\n", encoding="utf-8")
    return doc


def problems_of(doc: Path) -> list[str]:
    commands = [Command(doc, line, text) for first, lang, body in shell_blocks(doc.read_text()) for line, text in block_commands(first, lang, body)]
    return [p for c in commands for p in command_problems(c)]


@pytest.mark.parametrize(
    "body, problem",
    [
        ("python run_recbole_mamex.py --model=BPR --hyper-algo=random", "(did you mean --hyper_algo?)"),  # a renamed flag
        ("python run_recbole_mamex.py --model=BPR --epoch=2", "--epoch: neither a flag of run_recbole_mamex.py nor a config key any layer defines (did you mean --epochs?)"),
        ("python run_recbole_mamex.py --model=BPR --epochs 2", "--key=value"),  # an override without '='
        ("python run_recbole_mamex.py --nproc=two", "invalid int value"),
        ("make run ARGS=\"--model=BPR --learning_rat=0.01\"", "--learning_rat"),
        ("make nosuchtarget", "no make target nosuchtarget"),
        ("python -m recbole_mamex.compare --dataset x --models BPR --seed 1", "--seed"),
        ("python -m recbole_mamex.compare --dataset x --models BPR --variant \"BPR-big=embedding_sise:128\"", "embedding_sise"),
        ("python -m recbole_mamex.compare --dataset x --models BPR --set topk=[10", "yaml"),
        ("python -m recbole_mamex.serving saved/MAMEX-<date>.pth --users 1 --topk 5", "unrecognized arguments: --topk 5"),
        ("python -m recbole_mamex.interpret saved/MAMEX-<date>.pth", "--out"),  # a required flag left out
        ("python -m dataset_prep.nosuch --name x", "no module dataset_prep.nosuch"),
        ("python -m dataset_prep.lattice /path/to/milk --nme baby", "unrecognized arguments: --nme baby"),
        ("python -m dataset_prep.coldstart --datset baby", "unrecognized arguments: --datset baby"),  # its group's required
        ("recbole-mamex compre --dataset x", "invalid choice: 'compre'"),
        ("recbole-mamex prepare mmrc /path/to/mmrec --name x", "invalid choice: 'mmrc'"),
        ("recbole-mamex split --dataset x --fracton 0.2", "--fracton"),
        ("cd somewhere && python -m dataset_prep.coldstart --dataset x --seed=abc  # a comment", "invalid int value: 'abc'"),
        ("pip install -e \".[hyperopt]\"", "no extra hyperopt"),
        ("bash bench/no_such_script.sh", "no file bench/no_such_script.sh"),
    ],
)
def test_a_wrong_command_in_a_doc_is_reported(tmp_path, body, problem):
    problems = problems_of(write_doc(tmp_path, body))
    assert len(problems) == 1 and problem in problems[0], problems


def test_a_right_command_is_accepted_in_every_form(tmp_path):
    body = "\n".join([
        "$ python run_recbole_mamex.py --model=BPR \\",
        "    --epochs=2 --use_modalities=\"[text]\"   # the prompt, a continuation and a comment (it's fine)",
        "CUDA_VISIBLE_DEVICES=0 python -u run_recbole_mamex.py --model=MAMEX --ip=<first machine> --port=5678 2>&1 | tee log",
        "python run_recbole_mamex.py --model=BPR --my_key=1 --unchecked_keys=[my_key]",
        "python -m recbole_mamex.compare ... --ray <head>:6379 --ray-cpus 4",
        "python -m recbole_mamex.compare --dataset x --models BPR --variant \"BPR-text=use_modalities:[text];embedding_size:32\" --epochs=3",
        "python -m recbole_mamex.serving saved/MAMEX-<date>.pth --users 12 40 --k 10 --candidates cold",
        "python -m dataset_prep.mmrec /path/to/mmrec/data/sports --name amazon-sports --modality image=image_feat.npy",
        "recbole-mamex --model=BPR --epochs=1",
        "recbole-mamex prepare s3rec --help",
        "recbole-mamex interpret saved/MAMEX-<date>.pth --out weights.csv",
        "make run ARGS=\"--model=BPR --epochs=2\" && make test",
        "pip install -e '.[hyper]' 'recbole-mamex[images,text]'",
        "python -m pytest -q tests/test_docs_commands.py",
    ])
    assert problems_of(write_doc(tmp_path, body)) == []


def test_a_console_block_checks_only_its_prompted_lines(tmp_path):
    body = "$ python run_recbole_mamex.py --model=BPR --epochs=1\nbest valid: recall@10: 0.1 --not-a-flag\n$ python run_recbole_mamex.py --epohcs=1"
    problems = problems_of(write_doc(tmp_path, body, lang="console"))
    assert len(problems) == 1 and "--epohcs" in problems[0], problems


def test_a_command_in_the_prose_is_checked_for_its_flags(tmp_path):
    doc = tmp_path / "README.md"
    doc.write_text(
        "Run `python -m recbole_mamex.compare --job 2` (or `recbole-mamex compare --jobs 2`), see `recbole-mamex <command>`;\n"
        "`make run ARGS=\"--epochs=20\"` and `--not-a-command` are fine.\n\n```text\n`python run_recbole_mamex.py --epohcs=1`\n```\n",
        encoding="utf-8",
    )
    commands = inline_commands(tmp_path)
    assert [c.text for c in commands] == ["python -m recbole_mamex.compare --job 2 ...", "recbole-mamex compare --jobs 2 ...",
                                          'make run ARGS="--epochs=20" ...']
    assert [command_problems(c) for c in commands] == [["python -m recbole_mamex.compare: error: config overrides must be "
                                                       "written --key=value; could not use ['--job', '2']"], [], []]


def test_indented_blocks_and_other_languages(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text(
        "1. A step:\n\n    ```bash\n    python run_recbole_mamex.py --epohcs=1\n    ```\n\n"
        "```python\nmain(['--epohcs=1'])\n```\n\n```text\npython run_recbole_mamex.py --epohcs=1\n```\n",
        encoding="utf-8",
    )
    problems = problems_of(doc)
    assert len(problems) == 1 and "--epohcs" in problems[0], problems
