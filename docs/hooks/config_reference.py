"""MkDocs hook: the configuration reference page, written at build time from what the code reads.

Sources, so the page cannot drift from what a run accepts:

- the shipped yaml layers (``properties/overall.yaml``, ``properties/model/*.yaml``,
  ``properties/dataset/*.yaml``; installed as ``recbole_mamex.properties``): every key with its default
  and the yaml comments beside or above it as its description;
- the value checks of :mod:`recbole_mamex.config` (``VALUE_RULES``, ``WEIGHT_RULE``, ``LEARNERS``) and
  the keys a comparison ignores when it compares settings (``NEUTRAL_KEYS``);
- the shipped search spaces (``properties/hyper/*.hyper``), read by
  :func:`recbole_mamex.tuning.read_params_file`, the reader ``--tune`` and ``--hyper`` use.

The page is added to the site as a generated file (``reference/configuration.md``); nothing is written
into ``docs/``.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import yaml
from mkdocs.structure.files import File

PAGE = "reference/configuration.md"
KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):(.*)$")
NOT_SET = object()  # a key a yaml file describes in a comment but leaves to the layer below


def on_files(files, config):
    files.append(File.generated(config, PAGE, content=render()))
    return files


# ----------------------------------------------------------------------------- yaml files with comments
def _inline_comment(rest: str) -> str:
    """The ``# comment`` after a key's value on its line ('' when none; a '#' inside quotes is not one)."""
    quote = None
    for i, ch in enumerate(rest):
        if ch in "'\"":
            quote = None if quote == ch else (quote or ch)
        elif ch == "#" and quote is None and (i == 0 or rest[i - 1] in " \t"):
            return rest[i + 1:].strip()
    return ""


def documented_keys(path: Path, known: frozenset = frozenset()) -> tuple[str, list[tuple[str, object, str]]]:
    """(the file's leading comment, [(key, default, description), ...]) of a yaml layer, in file order.

    A key's description is its own inline comment, then the comment block right above it. A block also
    describes a key right after the first one when it names that key (``stopping_step`` / ``eval_step``).
    Inside a block, a paragraph that opens with another config key (one of ``known``, not set in this
    file) and a parenthesis, as ``learner (RecBole's key; ...)``, and runs to the first line that ends a
    sentence, describes that key: it gets its own row, with no default of its own (the layer below sets it)."""
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    lines = path.read_text(encoding="utf-8").splitlines()
    header, block, keys = [], [], []
    seen_key = False
    shared = None  # (owner key, block text) of the last block, for a following key it names
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            opener = re.match(r"^([a-z_]+) \(", text)
            owner = opener.group(1) if opener and opener.group(1) in known and opener.group(1) not in values else None
            if owner:
                block.append(("", None))  # a paragraph break: the lines before are about another key
            elif block and block[-1][1]:  # inside a paragraph about another key
                owner = block[-1][1]
            block.append((text, owner))
            if owner and text.endswith("."):  # that paragraph ends with its first sentence ending a line
                block.append(("", None))
            continue
        if not stripped:
            if block and not seen_key:
                header, block = [t for t, _ in block if t], []
            continue
        match = KEY_LINE.match(line)
        if not match:  # an indented line of a nested value
            continue
        key = match.group(1)
        if not seen_key and block and not header:
            header, block = [t for t, _ in block if t], []
        seen_key = True
        # split the block at the paragraph breaks: paragraphs about other keys become their own rows
        paragraphs, current = [], []
        for text, owner in block + [("", None)]:
            if not text:
                if current:
                    paragraphs.append(current)
                current = []
                continue
            current.append((text, owner))
        own = []
        for paragraph in paragraphs:
            owner = paragraph[0][1]
            text = " ".join(t for t, _ in paragraph)
            if owner:
                keys.append((owner, NOT_SET, text))
            else:
                own.append(text)
        above = " ".join(own)
        if above:
            shared = (key, above)
        elif shared and re.search(rf"\b{re.escape(key)}\b", shared[1]):
            above = f"See `{shared[0]}`."
        else:
            shared = None
        inline = _inline_comment(match.group(2))
        keys.append((key, values.get(key), "<br>".join(part for part in (inline, above) if part)))
        block = []
    return " ".join(header), keys


def recbole_defaults() -> dict:
    """RecBole 1.2.1's own ``properties/overall.yaml`` (layer 1), for the keys our files leave to it."""
    import recbole

    path = Path(recbole.__file__).parent / "properties" / "overall.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


# ----------------------------------------------------------------------------- markdown
_CODE_OR_PATH = re.compile(r"(`[^`]+`|(?:[\w.*<>-]+/)+[\w.*{},<>-]+\.(?:md|yaml|json|py|png|npy|npz|txt|pth|inter)\b|[\w.*-]+\.(?:md|yaml|npy|npz|json|png|txt|pth|hyper)\b)")


def cell(text: str) -> str:
    """Free text for a table cell: file paths as code, code spans kept, ``<br>`` kept as line breaks,
    everything else with HTML and Markdown emphasis escaped; ``|`` escaped everywhere (table syntax)."""
    lines = []
    for line in text.split("<br>"):
        out = []
        for i, part in enumerate(_CODE_OR_PATH.split(line)):
            if i % 2:
                out.append(part if part.startswith("`") else f"`{part}`")
            else:
                out.append(html.escape(part, quote=False).replace("*", r"\*").replace("_", r"\_"))
        lines.append("".join(out))
    return "<br>".join(lines).replace("|", r"\|")


def value_text(value, key: str = "") -> str:
    if value is NOT_SET:
        return f"{value_text(recbole_defaults().get(key))} (RecBole's)"
    if value is None:
        text = "~"
    elif isinstance(value, (dict, list)):
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    else:
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return "`" + text.replace("|", r"\|").replace("`", "'") + "`"


def key_table(keys, rules: dict, weight_rule: str) -> list[str]:
    rows = ["| key | default | accepted | description |", "|---|---|---|---|"]
    for key, value, description in keys:
        accepted = rules.get(key) or (weight_rule if key.endswith("_weight") else "")
        rows.append(f"| `{key}` | {value_text(value, key)} | {cell(accepted)} | {cell(description)} |")
    return rows


def hyper_range(kind: str, values: str) -> str:
    if kind == "choice":
        return f"one of `{values}`"
    numbers = [float(x) for x in values.split(",")]
    if kind == "loguniform":
        low, high = (math.exp(x) for x in numbers)
        return f"{low:.3g} to {high:.3g}, log-uniform (file: `{values}`, natural-log bounds)"
    if kind == "quniform":
        return f"{numbers[0]:g} to {numbers[1]:g} in steps of {numbers[2]:g}"
    return f"{numbers[0]:g} to {numbers[1]:g}, uniform"



def yaml_sections(props, folder: str, known, rules, weight_rule) -> list[str]:
    """One section per yaml file of ``properties/<folder>/``: its header comment and its keys' table."""
    out = []
    for path in sorted((props / folder).glob("*.yaml")):
        header, keys = documented_keys(path, known)
        out += [f"### {path.stem}", "", f"`properties/{folder}/{path.name}`. {cell(header)}", ""]
        out += [*key_table(keys, rules, weight_rule), ""]
    return out

def render() -> str:
    from recbole_mamex import config as cfg
    from recbole_mamex.paths import properties_dir
    from recbole_mamex.tuning import read_params_file

    props = properties_dir()
    rules = {key: expected for key, (_, expected) in cfg.VALUE_RULES.items()}
    weight_rule = cfg.WEIGHT_RULE[1]
    out = [
        "# Configuration reference",
        "",
        "<!-- generated at build time by docs/hooks/config_reference.py; edit the yaml files or "
        "recbole_mamex/config.py, not this page -->",
        "",
        "This page is generated when the site is built, from the yaml files the package ships "
        "(`properties/`, installed as `recbole_mamex.properties`) and from the value checks in "
        "`recbole_mamex/config.py`: it lists exactly the defaults and checks a run uses. How the layers "
        "combine, and how to set a key, is in [Configuration](../user-guide/configuration.md). "
        "Every key RecBole 1.2.1 defines is accepted too (see RecBole's own "
        "[parameter documentation](https://recbole.io/docs/user_guide/config_settings.html)); "
        "a key no layer defines is an error unless it is listed under `unchecked_keys`.",
        "",
        "## Value checks",
        "",
        "Checked whenever the key is set, in any layer (`recbole_mamex.config.VALUE_RULES`); a value "
        "outside is one `error:` line naming the key, the expected and the found.",
        "",
        "| key | accepted |",
        "|---|---|",
    ]
    out += [f"| `{key}` | {cell(expected)} |" for key, expected in rules.items()]
    out += [
        f"| every `*_weight` key | {cell(weight_rule)} (or a list of such numbers; `WEIGHT_RULE`) |",
        "",
        f"`learner` takes RecBole's names only (`LEARNERS`: {', '.join(f'`{x}`' for x in cfg.LEARNERS)}; "
        "case does not matter): another name is an error, where RecBole would warn and train with Adam.",
        "",
        "Keys a comparison ignores when it checks that a stored run was made with the same settings "
        "(`NEUTRAL_KEYS`: they change nothing a run trains or reports): "
        + ", ".join(f"`{k}`" for k in sorted(cfg.NEUTRAL_KEYS)) + ".",
        "",
        "## properties/overall.yaml",
        "",
    ]
    known = cfg.known_config_keys()
    header, keys = documented_keys(props / "overall.yaml", known)
    out += [cell(header), "", *key_table(keys, rules, weight_rule), ""]

    out += ["## Model defaults (properties/model/)", ""]
    out += yaml_sections(props, "model", known, rules, weight_rule)

    out += [
        "## Dataset yaml (properties/dataset/)",
        "",
        "The datasets the package knows by name. A dataset you import gets its yaml in "
        "`./properties/dataset/` of the working directory (layer 3).",
        "",
    ]
    out += yaml_sections(props, "dataset", known, rules, weight_rule)

    out += [
        "## Search spaces (properties/hyper/)",
        "",
        "What `compare --tune N` and `run_recbole_mamex.py --hyper=<Model>.hyper` search per model "
        "(a `<Model>.hyper` in the working directory's `properties/hyper/` comes first).",
        "",
        "| model | parameter | range |",
        "|---|---|---|",
    ]
    for path in sorted((props / "hyper").glob("*.hyper")):
        for i, (name, (kind, values)) in enumerate(read_params_file(path).items()):
            model = f"`{path.stem}`" if i == 0 else ""
            out.append(f"| {model} | `{name}` | {hyper_range(kind, values)} |")
    out.append("")
    return "\n".join(out)
