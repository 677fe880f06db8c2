"""Config overrides on a command line: RecBole's ``--key=value``, the one override syntax of every command
line of the package (light: importable before RecBole is)."""

from __future__ import annotations

import yaml

from recbole_mamex.errors import ConfigError


def split_config_args(extra: list[str], prog: str) -> list[str]:
    """The command-line arguments a parser did not know, as config overrides: every one must be written
    ``--key=value`` (RecBole's syntax, the one override syntax of every command line); anything else is a
    usage error (RecBole would silently drop it)."""
    bad = [arg for arg in extra if not (arg.startswith("--") and arg.count("=") == 1 and len(arg.split("=")[0]) > 2)]
    if bad:
        raise SystemExit(f"{prog}: error: config overrides must be written --key=value; could not use {bad}")
    return list(extra)


def overrides_dict(args: list[str]) -> dict:
    """``--key=value`` arguments as a config dict, values read as yaml (``--use_modalities=[text]``)."""
    pairs = [arg[2:].split("=", 1) for arg in args]
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ConfigError(f"config overrides: expected each key once, found {repeated} repeated")
    return {key: override_value(key, value) for key, value in pairs}


def override_value(key: str, text: str):
    """One ``--key=value``'s value read as yaml (:func:`recbole_mamex.files.load_yaml`: plain values only,
    no aliases)."""
    from recbole_mamex.files import load_yaml, yaml_problem

    try:
        return load_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"--{key}: expected a yaml value, found {text!r} ({yaml_problem(err)})") from None
