"""
Configuration, as every entry script reads it: defaults -> config/*.py files -> --key=value
(parse_config, and --quick), each option's valid values (the CHECKS helpers), and bad input
reported as one line (UserError, run_main) with writes that fail the same way (writing;
atomic_write, the one way a file is replaced; new_folder, the one way a folder is, once
why_not_own has found nothing in it that the script did not write). No torch here: prepare.py
reads its options through this module and needs no second spent loading PyTorch.
"""

import ast
import difflib
import fnmatch
import json
import math
import os
import shutil
import sys
import types
from contextlib import contextmanager

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config")


# ---------------------------------------------------------------- one-line errors, atomic writes

class UserError(Exception):
    """Bad input: reported as one line naming the fix, exit status 1, no traceback."""


class WriteError(UserError, OSError):
    """A file that cannot be written (a full disk, no permission, a file where a folder should
    be): a UserError, so one line, and still an OSError for a caller that catches those."""


@contextmanager
def writing(path, kept=""):
    """Turn a failure to write `path` inside the with-block into a one-line WriteError; `kept`
    says what was left as it was."""
    try:
        yield
    except WriteError:
        raise
    except OSError as e:
        where = f": {e.filename}" if e.filename and str(e.filename) != str(path) else ""
        raise WriteError(f"cannot write {path} ({e.strerror or e}{where}){kept}: free some space, or fix the "
                         "path or its permissions") from e


def atomic_write(path, write, kept="; any previous file there is unchanged"):
    """Replace path atomically: write(f) fills a temporary binary file beside it, which is flushed
    to disk and then renamed over path, so a crash or a failed write (a full disk) leaves the
    previous file intact; a failure is one line (WriteError) ending with `kept`."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with writing(path, kept):
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Write text (UTF-8) to path atomically (atomic_write), making its folder if need be."""
    with writing(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


# ---------------------------------------------------------------- folders a script replaces
# A script removes or replaces only what it wrote (docs/bad_input.md, "Removing and replacing"):
# a folder is its own when it holds nothing but files named as the script names what it writes
# and, where the script leaves one, its mark (export.py's config.json, compare.py's train.log).

def why_not_own(folder, own, mark=None):
    """Why a script may not replace or clear folder, in a few words ('it holds notes.txt, src/'),
    or None where it may: folder is missing or empty, or holds only files whose names match own
    (fnmatch patterns of what the script writes) and, given mark = (name, is_its(path)), a file
    of that name that is_its recognises."""
    if os.path.islink(folder):
        return "it is a symbolic link"
    if not os.path.isdir(folder):
        return "it is a file" if os.path.lexists(folder) else None
    names = sorted(os.listdir(folder))
    foreign = [name + "/" * os.path.isdir(path) for name in names
               if os.path.islink(path := os.path.join(folder, name)) or not os.path.isfile(path)
               or not any(fnmatch.fnmatchcase(name, pattern) for pattern in own)]
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        return f"it holds {', '.join(foreign[:3])}{more}"
    if names and mark:
        name, is_its = mark
        if name not in names:
            return f"it has no {name}"
        if not is_its(os.path.join(folder, name)):
            return f"its {name} was written by something else"
    return None


@contextmanager
def new_folder(target, kept):
    """A fresh temporary folder beside target (.NAME.tmp-PID) for the with-block to fill, swapped
    in for target when the block ends well: target renamed aside (.NAME.old-PID), the new folder
    renamed to it, the old one removed, or put back if that rename fails. A block that fails
    leaves target as it was and no temporary folder; a failure to write is one line (WriteError)
    ending with kept. Whoever calls it has checked that target may go (why_not_own)."""
    parent, name = os.path.split(os.path.normpath(target))
    tmp, old = (os.path.join(parent, f".{name}.{kind}-{os.getpid()}") for kind in ("tmp", "old"))
    try:
        with writing(target, kept):
            os.makedirs(parent or ".", exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier process of this id that was killed
            os.makedirs(tmp)
            yield tmp
            if os.path.lexists(target):
                os.replace(target, old)
            os.replace(tmp, target)
    finally:
        if os.path.lexists(old) and not os.path.lexists(target):  # the second rename failed: the old one back
            os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def own_json(path, is_own, refusal):
    """The JSON file a script is about to replace at path: None if there is none, else its content,
    which is_own(content) must accept (a file of the script's own); anything else, unreadable
    included, is refused with the one-line UserError `refusal`, before the long work."""
    if not os.path.lexists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, ValueError):
        content = None
    if not is_own(content):
        raise UserError(refusal)
    return content


def run_main(main):
    """Run an entry script's main(), turning a UserError into a one-line message."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


# ---------------------------------------------------------------- configuration

def parse_config(defaults, argv, checks=None):
    """nanoGPT's configurator as a function: `defaults`, then each config file in argv (plain
    Python, run in order), then each --key=value (a Python literal, or else a string).
    Only known keys, with the default's type (an int is fine where a float is expected), and
    each final value valid by `checks`, the script's CHECKS (see check_options)."""
    config, origins = dict(defaults), {}  # origins: the config file that set a key last, if one did
    for arg in argv:
        if arg.startswith("--"):
            key, eq, text = arg[2:].partition("=")
            if not eq:
                raise UserError(f"{arg}: write overrides as --key=value")
            config[key] = _coerce(key, text, defaults, from_text=True)
            origins.pop(key, None)
        else:
            if not os.path.isfile(arg):
                raise UserError(f"config file {arg} not found (arguments are config files or --key=value)")
            namespace = {"__file__": arg}  # lets a config build on another one next to it
            try:
                exec(compile(open(arg).read(), arg, "exec"), namespace)
            except Exception as e:
                raise UserError(f"config file {arg} failed: {type(e).__name__}: {e}")
            for key, value in namespace.items():
                if not key.startswith("_") and not isinstance(value, types.ModuleType):
                    config[key] = _coerce(key, value, defaults, origin=arg)
                    origins[key] = arg
    if checks:
        check_options(config, checks, origins)
    return config


def _coerce(key, value, defaults, from_text=False, origin="command line"):
    if key not in defaults:
        hint = difflib.get_close_matches(key, defaults, n=3)
        hint = f" (did you mean {', '.join(hint)}?)" if hint else f"; known keys: {', '.join(defaults)}"
        raise UserError(f"unknown config key '{key}' in {origin}{hint}")
    default = defaults[key]
    if from_text:
        if isinstance(default, str):
            return value  # strings are taken as written: --start=123 is the text "123"
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # not a literal: keep it as a string, and let the type check below judge it
    if default is None or value is None:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise UserError(f"config key '{key}' wants a {type(default).__name__} "
                        f"(like {default!r}), got {value!r} from {origin}")
    return value


def expand_quick(argv, script):
    """argv with each `--quick` (or --quick=True) replaced, in its place, by the config file
    config/<script>_quick.py, and --quick=False left out: what --quick means in every script that
    has it (bench.py, compare.py). Arguments after it still win, as after any config file."""
    quick = os.path.join(CONFIG_DIR, f"{script}_quick.py")
    return [quick if arg in ("--quick", "--quick=True") else arg for arg in argv if arg != "--quick=False"]


# ---------------------------------------------------------------- each option's valid values
# Every entry script keeps a CHECKS dict beside its DEFAULTS: {option: check}, a check being
# (ok, must): ok(value) is True for a valid value, and `must` ends the error for any other one,
# `--batch_size=0: must be at least 1`. The helpers below make the common ones; a check refuses
# None unless it says otherwise. Options that only make sense together are checked where they
# meet (GPTConfig, train.check_config, bench.resolve).

def check_options(config, checks, origins=None):
    """A one-line UserError for the first config[key] that fails checks[key], naming where the
    value came from (origins: {key: config file}; otherwise the command line)."""
    for key, (ok, must) in checks.items():
        if not ok(config[key]):
            origin = (origins or {}).get(key)
            where = f"{key}={config[key]!r} in {origin}" if origin else f"--{key}={config[key]!r}"
            raise UserError(f"{where}: must be {must}")


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _must(text, why):
    return f"{text} ({why})" if why else text


def at_least(low, why=""):
    """A check: a number >= low (why, if given, follows the error in brackets)."""
    return (lambda v: is_number(v) and v >= low), _must(f"at least {low}", why)


def above(low, why=""):
    """A check: a number > low."""
    return (lambda v: is_number(v) and v > low), _must(f"more than {low}", why)


def between(low, high, why="", low_open=False, high_closed=False):
    """A check: a number in [low, high), or (low, high) with low_open, or [low, high] with high_closed."""
    return ((lambda v: is_number(v) and (v > low if low_open else v >= low)
             and (v <= high if high_closed else v < high)),
            _must(f"in {'(' if low_open else '['}{low}, {high}{']' if high_closed else ')'}", why))


def one_of(*choices):
    """A check: one of choices, also by type (True is not 1)."""
    return ((lambda v: any(type(v) is type(c) and v == c for c in choices)),
            "one of " + ", ".join(repr(c) if c == "" else str(c) for c in choices))


def or_none(check, why=""):
    """A check: None, or what check accepts."""
    ok, must = check
    return (lambda v: v is None or ok(v)), _must(f"None or {must}", why)


def counts(why=""):
    """A check: a non-empty list or tuple of whole numbers, each at least 1."""
    return ((lambda v: isinstance(v, (list, tuple)) and len(v) > 0
             and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in v)),
            _must("a non-empty list of whole numbers, each at least 1", why))


def named_settings(keys, must):
    """A check: {name: {key: value}} with every key among keys (a study's cells, options)."""
    return ((lambda v: isinstance(v, dict) and all(isinstance(name, str) and isinstance(changes, dict)
                                                   and set(changes) <= set(keys) for name, changes in v.items())),
            must)


NOT_EMPTY = (lambda v: isinstance(v, str) and v != ""), "a non-empty string"
SEED = ((lambda v: isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**64),
        "a whole number that fits in 64 bits (what torch.manual_seed takes)")
