"""Issue 34's two rules, for the scripts whose own tests do not hold them (export.py's are in
test_export.py, compare.py's in test_compare.py): every removal touches only what the script
wrote (configurator.why_not_own, then new_folder's swap; prepare.py's datasets; plot.py's
figures, replaced atomically and only as .png), and every input a run needs later is read and
checked before its first expensive step (prepare.py's text files before tokenising, eval.py's
checkpoints and --json before evaluating). Each refusal is one line and leaves every file as it
was. Tiny, CPU, offline."""

import json
import os
from dataclasses import asdict

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import ROOT, assert_one_line_error, cli, sharp_model

import eval as eval_script
import plot
import prepare
from checkpoint import save_checkpoint
from configurator import WriteError, new_folder, why_not_own
from dataset import load_meta

with open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf-8") as f:
    TINY_TEXT = f.read(3000)


def folder_bytes(folder):
    """{path under folder: its bytes, a link's target, or None for a folder}: all a folder holds."""
    return {str(p.relative_to(folder)): os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


# ---------------------------------------------------------------- the helpers

def test_why_not_own_names_what_is_not_the_scripts(tmp_path):
    """A missing or empty folder may go; one with only the script's files and its mark too; else
    the reason names what is in the way: other files and subfolders (the first three), no mark, a
    mark that is not the script's, a link, a file."""
    own, mark = ("meta.json", "*.bin"), ("meta.json", lambda path: open(path).read() == "ours")
    folder = tmp_path / "d"
    assert why_not_own(str(folder), own, mark) is None
    folder.mkdir()
    assert why_not_own(str(folder), own, mark) is None
    (folder / "train.bin").write_bytes(b"\0\0")
    assert why_not_own(str(folder), own) is None
    assert why_not_own(str(folder), own, mark) == "it has no meta.json"
    (folder / "meta.json").write_text("theirs")
    assert why_not_own(str(folder), own, mark) == "its meta.json was written by something else"
    (folder / "meta.json").write_text("ours")
    assert why_not_own(str(folder), own, mark) is None
    for name in ("a.txt", "b", "c.txt", "d.txt", "e.txt"):
        (folder / name).mkdir() if name == "b" else (folder / name).write_text("")
    assert why_not_own(str(folder), own, mark) == "it holds a.txt, b/, c.txt and 2 more"
    (tmp_path / "link").symlink_to(folder)
    assert why_not_own(str(tmp_path / "link"), own) == "it is a symbolic link"
    assert why_not_own(str(folder / "a.txt"), own) == "it is a file"


def test_new_folder_leaves_the_old_one_when_the_block_fails(tmp_path):
    """The with-block's failure removes only its temporary folder; the old folder stays as it was."""
    target = tmp_path / "t"
    target.mkdir()
    (target / "meta.json").write_text("old")
    with pytest.raises(WriteError, match="cannot write .*No space left on device.*; kept"):
        with new_folder(str(target), "; kept") as tmp:
            open(os.path.join(tmp, "meta.json"), "w").write("new")
            raise OSError(28, "No space left on device")
    assert folder_bytes(tmp_path) == {"t": None, "t/meta.json": b"old"}
    with new_folder(str(target), "; kept") as tmp:
        open(os.path.join(tmp, "meta.json"), "w").write("new")
    assert folder_bytes(tmp_path) == {"t": None, "t/meta.json": b"new"}


# ---------------------------------------------------------------- prepare.py

def test_prepare_replaces_only_a_dataset_it_wrote(tmp_path, capsys, monkeypatch):
    """<data_root>/<name> is replaced only if it holds nothing but what prepare.py writes (a
    damaged dataset too: the error that names it says to prepare it again); a user's folder there
    (a file of theirs, a subfolder, a link) is refused before any work, each byte as it was."""
    source = tmp_path / "tiny.txt"
    source.write_text(TINY_TEXT, encoding="utf-8")
    real = prepare.DATASETS["shakespeare_char"]
    monkeypatch.setitem(prepare.DATASETS, "shakespeare_char", (lambda c: pytest.fail("prepared"), *real[1:]))
    for user, why in (("notes.txt", "it holds notes.txt"), ("sub", "it holds sub/"), (None, "it is a symbolic link")):
        data_root = tmp_path / f"data-{user}"
        folder = data_root / "shakespeare_char"
        if user:
            folder.mkdir(parents=True)
            (folder / "meta.json").write_text('{"tokenizer": "char"}')
            (folder / user).mkdir() if user == "sub" else (folder / user).write_text("mine")
        else:
            data_root.mkdir()
            folder.symlink_to(source.parent)
        before = folder_bytes(tmp_path)
        status, _, err = cli(capsys, prepare, "shakespeare_char", f"--data_root={data_root}", f"--source={source}")
        assert_one_line_error(status, err, f"{folder} is not a dataset that prepare.py wrote ({why}): move it away, "
                              "or give another --data_root")
        assert folder_bytes(tmp_path) == before
    monkeypatch.undo()
    data_root = tmp_path / "data"
    folder = data_root / "shakespeare_char"
    args = ["shakespeare_char", f"--data_root={data_root}", f"--source={source}"]
    folder.mkdir(parents=True)  # an empty folder, then a damaged dataset of prepare.py's: prepared, whole
    assert cli(capsys, prepare, *args)[0] == 0
    good = folder_bytes(folder)
    (folder / "meta.json").write_text("{ cut sh")
    (folder / "val.bin").write_bytes(b"\1")
    assert cli(capsys, prepare, *args)[0] == 0
    assert folder_bytes(folder) == good and load_meta(str(data_root), "shakespeare_char")["vocab_size"] > 0
    assert sorted(os.listdir(data_root)) == ["shakespeare_char"]  # no temporary or old folder left


def test_text_files_are_all_read_before_any_is_tokenized(tmp_path, capsys, monkeypatch):
    """prepare.py text: a file that is not UTF-8 text, after good ones, is refused before any is
    tokenized (it was found halfway through)."""
    (tmp_path / "a.txt").write_text("Hello there.\n")
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe binary")
    monkeypatch.setattr(prepare, "bpe", lambda *a, **k: pytest.fail("tokenized"))
    status, _, err = cli(capsys, prepare, "text", f"--files={tmp_path / 'a.txt'},{tmp_path / 'b.txt'}",
                         f"--data_root={tmp_path / 'data'}")
    assert_one_line_error(status, err, "b.txt is not UTF-8 text")
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------- eval.py

@pytest.fixture
def run_and_data(char_data, tmp_path):
    """A checkpoint of a tiny ContextLM on shakespeare_char's characters: its folder."""
    meta = load_meta(char_data, "shakespeare_char")
    model = sharp_model(dict(block_size=16, vocab_size=meta["vocab_size"], n_layer=2, n_head=2, n_embd=16,
                             chunk_size=4, n_ctx_layer=1))
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint({"model": model.state_dict(), "model_args": asdict(model.config), "meta": meta},
                    str(run / "ckpt.pt"))
    return run, char_data


def test_eval_reads_every_checkpoint_and_its_json_before_evaluating(run_and_data, tmp_path, capsys, monkeypatch):
    """A damaged checkpoint after a good one, a --json that holds something other than eval.py's
    results (compare.py's report, a list), a LAMBADA none of whose examples fits in --max_tokens,
    are refused before anything is evaluated (evaluating fails the test), the file as it was;
    eval.py's own --json is merged into."""
    run, data_root = run_and_data
    lambada = tmp_path / "data" / "tinylambada"
    lambada.mkdir(parents=True)
    np.arange(20, dtype=np.uint16).tofile(lambada / "test.bin")
    meta = load_meta(data_root, "shakespeare_char")
    (lambada / "meta.json").write_text(json.dumps({"tokenizer": "char", "vocab_size": meta["vocab_size"],
                                                   "chars": meta["chars"], "examples": [[0, 6, 10]]}))
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "ckpt.pt").write_bytes((run / "ckpt.pt").read_bytes()[:500])
    report = tmp_path / "results.json"
    common = ["--datasets=shakespeare_char", f"--data_root={data_root}", "--max_tokens=200", "--device=cpu"]
    monkeypatch.setattr(eval_script, "sliding_window_nll", lambda *a: pytest.fail("evaluated"))
    status, _, err = cli(capsys, eval_script, f"--ckpt={run},{damaged}", *common)
    assert_one_line_error(status, err, f"{damaged}/ckpt.pt: the file is truncated or corrupt")
    status, _, err = cli(capsys, eval_script, f"--ckpt={run}", "--datasets=tinylambada", "--max_tokens=8",
                         f"--data_root={tmp_path / 'data'}", "--device=cpu")
    assert_one_line_error(status, err, "no LAMBADA example of 'tinylambada' fits in --max_tokens=8")
    for text in ('{"study": "main", "seeds": [1337], "arms": {}}', "[1, 2]"):
        report.write_text(text)
        status, _, err = cli(capsys, eval_script, f"--ckpt={run}", *common, f"--json={report}")
        assert_one_line_error(status, err, f"--json={report} does not hold eval.py results", "give another --json")
        assert report.read_text() == text
    monkeypatch.undo()
    report.write_text('{"other": {"wikitext": {"ppl": 30.0}}}')
    status, _, err = cli(capsys, eval_script, f"--ckpt={run}", *common, f"--json={report}")
    assert status == 0, err
    assert '"other": {\n    "wikitext"' in report.read_text() and str(run) in report.read_text()


# ---------------------------------------------------------------- plot.py

def test_a_figure_replaces_only_a_png_and_whole(tmp_path, monkeypatch):
    """save_figure writes a .png only (--out=notes.txt, or a checkpoint, is refused and left as it
    was), and replaces one atomically: a write that fails (a full disk) leaves the old figure and
    no temporary file."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(WriteError, match="a figure is a PNG file, give a path ending in .png"):
        plot.save_figure(plt.figure(), str(notes))
    png = tmp_path / "curves.png"
    plot.save_figure(plt.figure(), str(png))
    before = folder_bytes(tmp_path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # as the new figure reaches the disk
    fig = plt.figure()
    fig.gca().plot([0, 1], [1, 0])
    with pytest.raises(WriteError, match="cannot write .*curves.png \\(No space left on device"):
        plot.save_figure(fig, str(png))
    assert folder_bytes(tmp_path) == before
