"""
Configuration, as every entry script reads it: defaults -> config/*.py files -> --key=value
(parse_config, and --quick), each option's valid values (the CHECKS helpers), the named sets of
model fields the scripts share (the backbones, the study's variants), and bad input reported as
one line (UserError, run_main) with writes that fail the same way (writing, write_text).

No torch here: prepare.py reads its options through this module and needs no second spent
loading PyTorch.
"""

import ast
import difflib
import math
import os
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


def write_text(path, text, kept="; any previous file there is unchanged"):
    """Write text to path atomically (a temporary file renamed over it); a failure is one line."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with writing(path, kept):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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


# ---------------------------------------------------------------- named sets of model fields

def model_variants(c):
    """The three models the study compares, by name: {name: the GPTConfig fields that set them
    apart}. c: a config with n_layer (L), n_ctx_layer (P), chunk_size (w) and n_enc_layer (E);
    every other field (width, heads, vocabulary, block size) is the same for all three.
        gpt        L token layers: the GPT-2 baseline
        contextlm  the same L token layers + a P-layer context predictor
        gpt+{P}L   L + P token layers: about as many parameters as contextlm, all spent on tokens
    bench.py measures these three; compare.py trains them (its ablation grid varies contextlm)."""
    L, P, w = c["n_layer"], c["n_ctx_layer"], c["chunk_size"]  # P >= 1 (bench's and compare's CHECKS)
    # chunk_size and n_enc_layer do nothing without a predictor: the GPTs keep w and no encoder
    # (and the default context options, so that a study of another option reuses their runs)
    gpt = dict(n_ctx_layer=0, chunk_size=w, n_enc_layer=0, **CONTEXT_OPTIONS)
    return {"gpt": dict(n_layer=L, **gpt),
            "contextlm": dict(n_layer=L, n_ctx_layer=P, chunk_size=w, n_enc_layer=c["n_enc_layer"],
                              **{k: c.get(k, default) for k, default in CONTEXT_OPTIONS.items()}),
            f"gpt+{P}L": dict(n_layer=L + P, **gpt)}


# GPTConfig's fields that act on the context path only (model.py has their meaning), with their
# defaults there: a GPT ignores them (tests/test_compare.py checks the defaults are GPTConfig's)
CONTEXT_OPTIONS = dict(context_scale="learned", context_gain_init=0.0, predictor_init="gpt2",
                       context_dropout=-1.0, predictor_lr_scale=1.0)


# The Transformer blocks the study runs on: GPTConfig's backbone fields, set all at once by
# bench.py's and compare.py's --backbone (docs/pythia.md). bias is not among them: train.py's
# GPT-2 recipe has none, Pythia has them (its configs say bias = True).
BACKBONES = {
    "gpt2": dict(rotary_pct=0.0, rotary_base=10000.0, parallel_residual=False, tie_embeddings=True,
                 gelu_approximate="tanh", layer_norm_eps=1e-5),
    "pythia": dict(rotary_pct=0.25, rotary_base=10000.0, parallel_residual=True, tie_embeddings=False,
                   gelu_approximate="none", layer_norm_eps=1e-5),
}


def backbone_fields(name):
    """The GPTConfig fields of the backbone called name (a key of BACKBONES)."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone '{name}': use one of {', '.join(BACKBONES)}")
    return dict(BACKBONES[name])
