"""prepare.py, offline on CPU: every dataset's code path on the shipped Tiny Shakespeare or on
tiny local stand-ins for the Hugging Face datasets; uint16 files that match meta.json and decode
back to their text; one-line errors; an interrupted run that leaves nothing half-written; and
no PyTorch loaded to do any of it."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_script

import prepare
from common import MODEL_KEYS, Tokenizer, UserError, load_meta, open_split, run_main

EOT = "<|endoftext|>"
SHAKESPEARE = open(os.path.join(ROOT, "data", "tinyshakespeare.txt")).read()


def prep(data_root, name, **options):
    """Run prepare.py NAME in-process; the meta.json it wrote."""
    prepare.main([name, f"--data_root={data_root}", *(f"--{k}={v}" for k, v in options.items())])
    return load_meta(data_root, name)


def splits_of(data_root, name):
    """{split: ids} of a prepared dataset, after checking each file against meta.json."""
    meta = load_meta(data_root, name)
    names = [key[:-len("_tokens")] for key in meta if key.endswith("_tokens")]
    assert sorted(f for f in os.listdir(os.path.join(data_root, name))) == sorted([f"{s}.bin" for s in names] + ["meta.json"])
    out = {}
    for split in names:
        ids = open_split(data_root, name, split)
        assert isinstance(ids, np.memmap) and ids.dtype == np.uint16
        assert len(ids) == meta[f"{split}_tokens"] > 0
        assert os.path.getsize(os.path.join(data_root, name, f"{split}.bin")) == 2 * len(ids)
        assert ids.max() < meta["vocab_size"]
        out[split] = ids
    return out


def write_jsonl(path, texts):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")


def test_shakespeare_char(char_data):
    meta = load_meta(char_data, "shakespeare_char")
    assert meta["tokenizer"] == "char" and meta["vocab_size"] == 65 == len(meta["chars"])
    assert meta["chars"] == sorted(set(SHAKESPEARE)) and all(len(c) == 1 for c in meta["chars"])
    assert (meta["train_tokens"], meta["val_tokens"]) == (1_003_854, 111_540)  # nanoGPT's numbers
    assert isinstance(meta["source"], str)
    ids = splits_of(char_data, "shakespeare_char")
    tok = Tokenizer(meta)
    assert tok.decode(ids["train"].tolist()) + tok.decode(ids["val"].tolist()) == SHAKESPEARE
    assert tok.encode(SHAKESPEARE[-500:]) == ids["val"][-500:].tolist()


def test_shakespeare_bpe_cli(tmp_path):
    proc = run_script("prepare.py", "shakespeare", f"--data_root={tmp_path}")
    assert "train: 301,966 tokens" in proc.stdout and "val: 36,059 tokens" in proc.stdout  # nanoGPT's
    assert os.listdir(tmp_path) == ["shakespeare"]
    meta = load_meta(tmp_path, "shakespeare")
    assert meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50257 and "chars" not in meta
    ids = splits_of(tmp_path, "shakespeare")
    tok = Tokenizer(meta)
    n = int(len(SHAKESPEARE) * 0.9)
    assert tok.decode(ids["train"].tolist()) == SHAKESPEARE[:n]
    assert tok.decode(ids["val"].tolist()) == SHAKESPEARE[n:]
    assert tok.encode(SHAKESPEARE[n:]) == ids["val"].tolist()


def test_text_documents(tmp_path):
    """12 documents: split by document, 10 train / 2 val; folders recursive and sorted."""
    docs = {f"docs/a{i:02d}.txt": f"Document {i}: naïve café, line one.\r\nline two {'x' * i}\n" for i in range(9)}
    docs.update({f"docs/sub/b{i}.txt": f"Sub-document {i} — ünïcödé ✓" for i in range(3)})
    for path, body in docs.items():
        os.makedirs(os.path.dirname(tmp_path / path), exist_ok=True)
        with open(tmp_path / path, "w", newline="") as f:
            f.write(body)
    (tmp_path / "docs" / "notes.md").write_text("not a .txt: left out")
    meta = prep(tmp_path / "data", "text", files=tmp_path / "docs")
    assert meta["tokenizer"] == "gpt2" and meta["eot_token"] == 50256
    ids = splits_of(tmp_path / "data", "text")
    bodies = [docs[p] for p in sorted(docs)]  # a00..a08, then sub/b0..b2
    tok = Tokenizer(meta)
    assert tok.decode(ids["train"].tolist()) == "".join(b + EOT for b in bodies[:10])
    assert tok.decode(ids["val"].tolist()) == "".join(b + EOT for b in bodies[10:])
    assert (ids["train"] == 50256).sum() == 10 and (ids["val"] == 50256).sum() == 2


def test_text_few_files_split_tokens(tmp_path):
    """Fewer than 10 documents: the token stream is split 90/10; files in the order given."""
    (tmp_path / "b.txt").write_text("Second file. " * 40)
    (tmp_path / "a.txt").write_text("First file, listed second. " * 30)
    meta = prep(tmp_path / "data", "text", files=f"{tmp_path / 'b.txt'},{tmp_path / 'a.txt'}")
    ids = splits_of(tmp_path / "data", "text")
    both = np.concatenate([ids["train"], ids["val"]]).tolist()
    assert len(ids["train"]) == int(0.9 * len(both))
    expected = ("Second file. " * 40) + EOT + ("First file, listed second. " * 30) + EOT
    assert Tokenizer(meta).decode(both) == expected


def test_openwebtext_local(tmp_path):
    """nanoGPT's openwebtext path (load, train_test_split, map, sharded memmap write), through the
    CLI with 2 worker processes, on 30 local documents."""
    docs = [f"Web page {i}. " + " ".join(f"word{j * i % 17}" for j in range(i + 3)) + ("\n\nÜber €5." if i % 4 == 0 else "")
            for i in range(30)]
    write_jsonl(tmp_path / "owt" / "train.jsonl", docs)
    run_script("prepare.py", "openwebtext", f"--data_root={tmp_path / 'data'}", f"--source={tmp_path / 'owt'}",
               "--num_proc=2", "--val_fraction=0.1")
    assert os.listdir(tmp_path / "data") == ["openwebtext"]
    meta = load_meta(tmp_path / "data", "openwebtext")
    assert meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50257 and meta["source"] == str(tmp_path / "owt")
    ids = splits_of(tmp_path / "data", "openwebtext")
    assert (ids["train"] == 50256).sum() == 27 and (ids["val"] == 50256).sum() == 3
    assert ids["train"][-1] == ids["val"][-1] == 50256
    tok = Tokenizer(meta)
    got = [d for split in ("train", "val") for d in tok.decode(ids[split].tolist()).split(EOT)[:-1]]
    assert sorted(got) == sorted(docs)


WIKI = {  # rows as in Hugging Face's wikitext: each line keeps its newline, blank lines are ""
    "train": ["", " = Train Page = \n", "", " The train text , with @-@ hyphens . \n"],
    "validation": ["", " = Valkyria = \n", "", " Senjō no Valkyria 3 : Unrecorded Chronicles . \n",
                   "", " = = Gameplay = = \n", "", " Played 1 @,@ 000 times . \n", "   \n"],
    "test": ["", " = Robert Boulter = \n", "", " Robert Boulter is an English actor . \n"],
}


def test_wikitext_local(tmp_path):
    for split, rows in WIKI.items():
        write_jsonl(tmp_path / "wt" / f"{split}.jsonl", rows)
    data_root = tmp_path / "data"
    meta = prep(data_root, "wikitext", source=tmp_path / "wt", num_proc=1)
    assert "train_tokens" not in meta  # by default only the evaluation splits
    ids = splits_of(data_root, "wikitext")
    assert set(ids) == {"val", "test"}
    for split, theirs in (("val", "validation"), ("test", "test")):
        joined = "".join(WIKI[theirs])
        assert ids[split].tolist() == prepare.bpe(joined)  # the joined text's ids exactly
        assert Tokenizer(meta).decode(ids[split].tolist()) == joined
    prep(data_root, "wikitext", source=tmp_path / "wt", num_proc=1, splits="train,val")
    ids = splits_of(data_root, "wikitext")
    assert set(ids) == {"train", "val"}
    assert Tokenizer(meta).decode(ids["train"].tolist()) == "".join(WIKI["train"])
    with pytest.raises(UserError, match="--splits"):
        prep(data_root, "wikitext", source=tmp_path / "wt", splits="dev")


def test_lambada_local(tmp_path):
    texts = ["The cat sat on the mat and then the dog came in and sat next to the cat",
             'She looked at him and said "I will never forgive you, Jonathan',
             "Numbers like 1,000 and 3.14 appear before the final word: café",
             "Two  spaces before the last  word"]
    write_jsonl(tmp_path / "lambada" / "test.jsonl", texts)
    meta = prep(tmp_path / "data", "lambada", source=tmp_path / "lambada", num_proc=1)
    ids = splits_of(tmp_path / "data", "lambada")
    assert ids["val"].tolist() == ids["test"].tolist()
    test = ids["test"].tolist()
    assert 50256 not in test
    examples = meta["examples"]
    assert len(examples) == len(texts) and examples[0][0] == 0 and examples[-1][2] == len(test)
    tok = Tokenizer(meta)
    for (start, target_start, end), text, nxt in zip(examples, texts, examples[1:] + [[len(test)]]):
        i = len(text[:text.rindex(" ")].rstrip())  # where lm-evaluation-harness's lambada splits
        assert start < target_start < end == nxt[0]
        assert tok.decode(test[start:target_start]) == text[:i]
        assert tok.decode(test[target_start:end]) == text[i:]  # the last word, with its space
        assert test[target_start:end] == prepare.bpe(text[i:])
    assert tok.decode(test[examples[3][1]:examples[3][2]]) == "  word"  # both spaces: the harness's split


@pytest.mark.parametrize("args, message", [
    ([], "name the dataset first"),
    (["shakespear"], "unknown dataset 'shakespear': did you mean shakespeare?"),
    (["text", "--files=nowhere/missing.txt"], "nowhere/missing.txt not found"),
    (["text"], "text needs --files"),
    (["shakespeare_char", "--bogus=1"], "unknown config key 'bogus'"),
    (["shakespeare_char", "--files=a.txt"], "--files does not apply to shakespeare_char"),
    (["shakespeare_char", "--source=nowhere.txt"], "nowhere.txt not found"),
    (["openwebtext", "--val_fraction=0"], "--val_fraction"),
    (["lambada", "--source=./nowhere"], "./nowhere not found"),
    (["lambada", f"--source={os.path.join(ROOT, 'prepare.py')}"], "is a file: put it in a folder"),
])
def test_bad_input(tmp_path, capsys, args, message):
    data_root = tmp_path / "data"
    with pytest.raises(SystemExit) as exit:
        run_main(lambda: prepare.main(args + [f"--data_root={data_root}"]))
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not data_root.exists() or os.listdir(data_root) == []


def test_bad_input_cli(tmp_path):
    proc = run_script("prepare.py", "nosuch", f"--data_root={tmp_path}", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "unknown dataset 'nosuch'" in proc.stderr
    for name in prepare.DATASETS:
        assert name in proc.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("previous", [False, True])
def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch, char_data, previous):
    """A run stopped after train.bin, before val.bin and meta.json: no <NAME>/ folder appears, an
    earlier complete one stays as it was, and no temporary folder is left; the next run works."""
    data_root = tmp_path / "data"
    folder = data_root / "shakespeare_char"
    if previous:
        shutil.copytree(os.path.join(char_data, "shakespeare_char"), folder)
        (folder / "meta.json").write_text('{"tokenizer": "char", "marker": "the old one"}')
    before = {f: (folder / f).read_bytes() for f in os.listdir(folder)} if previous else None
    write_split = prepare.write_split

    def interrupted(path, ids):
        if path.endswith("val.bin"):
            raise KeyboardInterrupt
        return write_split(path, ids)

    monkeypatch.setattr(prepare, "write_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prep(data_root, "shakespeare_char")
    assert os.listdir(data_root) == (["shakespeare_char"] if previous else [])
    if previous:
        assert {f: (folder / f).read_bytes() for f in os.listdir(folder)} == before

    monkeypatch.setattr(prepare, "write_split", write_split)
    meta = prep(data_root, "shakespeare_char")
    assert os.listdir(data_root) == ["shakespeare_char"] and "marker" not in meta
    splits_of(data_root, "shakespeare_char")


def test_prepare_does_not_import_torch(tmp_path):
    """Preparing data needs no PyTorch: importing prepare.py, and preparing shakespeare_char with
    it, leave torch unloaded (a module-level `import torch` in common.py or prepare.py fails here)."""
    code = ("import sys, prepare; assert 'torch' not in sys.modules, 'import prepare loaded torch'; "
            f"prepare.main(['shakespeare_char', '--data_root={tmp_path}']); "
            "assert 'torch' not in sys.modules, 'preparing shakespeare_char loaded torch'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "train: 1,003,854 tokens" in proc.stdout


def test_model_keys_are_the_model_config_fields():
    """common.MODEL_KEYS is written out (so that common.py need not import model.py and torch):
    it must name GPTConfig's fields, in their order."""
    from model import GPTConfig
    assert MODEL_KEYS == tuple(GPTConfig.__dataclass_fields__)
