"""prepare.py, offline on CPU: every dataset's code path on the shipped Tiny Shakespeare or on
tiny local stand-ins for the Hugging Face datasets; uint16 files that match meta.json and decode
back to their text; one-line errors; an interrupted run that leaves nothing half-written; and
no PyTorch loaded to do any of it. The GPT-NeoX BPE of Pythia and the Pile (issue 15): pile from a
local folder laid out like the Pile (.jsonl and .jsonl.zst), the files it asks the hub for, the
NeoX copies of wikitext and lambada next to the GPT-2 ones, with a small BPE built in the tests."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_script

import prepare
from configurator import UserError, run_main
from dataset import Tokenizer, load_meta, open_split
from train import MODEL_KEYS

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


def test_prepare_does_not_import_torch(tmp_path, neox_tokenizer_dir):
    """Preparing data needs no PyTorch: importing prepare.py, and preparing shakespeare_char with
    it, leave torch unloaded (a module-level `import torch` in configurator.py, dataset.py or
    prepare.py fails here); so does the NeoX BPE, through a Hugging Face dataset (pile)."""
    write_jsonl(tmp_path / "pile_source" / "train.jsonl", ["a train document"])  # (not the pile/ it writes)
    code = ("import sys, prepare; assert 'torch' not in sys.modules, 'import prepare loaded torch'; "
            f"prepare.main(['shakespeare_char', '--data_root={tmp_path}']); "
            "assert 'torch' not in sys.modules, 'preparing shakespeare_char loaded torch'; "
            f"prepare.main(['pile', '--data_root={tmp_path}', '--source={tmp_path / 'pile_source'}', '--splits=train', "
            f"'--tokenizer_path={neox_tokenizer_dir}', '--num_proc=1']); "
            "assert 'torch' not in sys.modules, 'preparing pile in the neox tokenizer loaded torch'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "train: 1,003,854 tokens" in proc.stdout and "neox tokenizer" in proc.stdout


def test_model_keys_are_the_model_config_fields():
    """train.MODEL_KEYS, the config keys train.py builds a GPTConfig from, are GPTConfig's fields,
    in their order."""
    from model import GPTConfig
    assert MODEL_KEYS == tuple(GPTConfig.__dataclass_fields__)


# ---------------------------------------------------------------- the NeoX BPE and the Pile

PILE_DOCS = {  # file in a local folder laid out like the Pile -> its documents
    "train/00.jsonl": ["The first shard's first document.\n\nIt has two paragraphs.", "Speak, speak.    Four spaces."],
    "train/01.jsonl.zst": ["A document that writes <|endoftext|> as text.", "Café ünïcode ✓"],
    "val.jsonl.zst": ["First Citizen: Before we proceed any further, hear me speak."],
    "test.jsonl": ["All: Speak, speak.", "  indented"],
}


def write_pile(folder):
    """PILE_DOCS as JSON lines with the Pile's fields (text, meta); .zst files compressed."""
    for name, docs in PILE_DOCS.items():
        data = "".join(json.dumps({"text": d, "meta": {"pile_set_name": "Pile-CC"}}) + "\n" for d in docs).encode()
        if name.endswith(".zst"):
            data = pytest.importorskip("zstandard").ZstdCompressor().compress(data)
        os.makedirs(os.path.dirname(folder / name), exist_ok=True)
        (folder / name).write_bytes(data)


def test_pile_local_folder(tmp_path, neox_tokenizer_dir):
    """`prepare.py pile --source=<folder laid out like the Pile>` through the CLI with 2 worker
    processes: train/ (a .jsonl and a .jsonl.zst shard, in order), val.jsonl.zst and test.jsonl in
    the NeoX BPE; each document followed by <|endoftext|> (id 0) and nowhere else (its text as
    text); the ids are what transformers' tokenizer gives for each document; meta.json says which
    tokenizer, by absolute path, so sample.py and eval.py find it from anywhere."""
    write_pile(tmp_path / "pile")
    proc = run_script("prepare.py", "pile", f"--data_root={tmp_path / 'data'}", f"--source={tmp_path / 'pile'}",
                      f"--tokenizer_path={neox_tokenizer_dir}", "--num_proc=2")
    assert "wrote" in proc.stdout and os.listdir(tmp_path / "data") == ["pile"]
    meta = load_meta(tmp_path / "data", "pile")
    assert meta["tokenizer"] == "neox" and meta["tokenizer_path"] == str(neox_tokenizer_dir)
    assert meta["vocab_size"] == 302 and meta["eot_token"] == 0 and meta["source"] == str(tmp_path / "pile")
    ids = splits_of(tmp_path / "data", "pile")
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(str(neox_tokenizer_dir), split_special_tokens=True)
    tok = Tokenizer(meta)
    for split, files in (("train", ["train/00.jsonl", "train/01.jsonl.zst"]), ("val", ["val.jsonl.zst"]),
                         ("test", ["test.jsonl"])):
        docs = [d for f in files for d in PILE_DOCS[f]]
        assert ids[split].tolist() == [i for d in docs for i in hf.encode(d, add_special_tokens=False) + [0]]
        assert (ids[split] == 0).sum() == len(docs) and tok.decode(ids[split].tolist()) == "".join(d + EOT for d in docs)


def test_pile_asks_the_hub_for_the_splits_it_writes(tmp_path, neox_tokenizer_dir, monkeypatch):
    """By default pile reads monology/pile-uncopyrighted, and only the files of the splits asked
    for (the Pile's val.jsonl.zst and test.jsonl.zst for --splits=val,test: no train shard is
    downloaded to evaluate). load_dataset is stood in for by local documents."""
    import datasets
    seen = []

    def load_dataset(*args, **kwargs):
        seen.append((args, kwargs))
        return [datasets.Dataset.from_dict({"text": [f"{split} document."], "meta": [{}]}) for split in kwargs["split"]]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    meta = prep(tmp_path, "pile", splits="val,test", tokenizer_path=neox_tokenizer_dir, num_proc=1)
    [(args, kwargs)] = seen
    assert args == ("monology/pile-uncopyrighted",) and kwargs["split"] == ["validation", "test"]
    assert kwargs["data_files"] == {"validation": ["val.jsonl.zst"], "test": ["test.jsonl.zst"]}
    assert meta["source"] == "monology/pile-uncopyrighted" and set(splits_of(tmp_path, "pile")) == {"val", "test"}
    assert Tokenizer(meta).decode(splits_of(tmp_path, "pile")["test"].tolist()) == "test document." + EOT


def test_neox_copies_sit_next_to_the_gpt2_ones(tmp_path, neox_tokenizer_dir):
    """wikitext and lambada with --tokenizer=neox go to wikitext_neox/ and lambada_neox/, next to
    the GPT-2 copies, with the same layout: wikitext's ids are the joined text's in the NeoX BPE
    (as transformers' tokenizer gives them), lambada's offsets split each example at its last word."""
    for split, rows in WIKI.items():
        write_jsonl(tmp_path / "wt" / f"{split}.jsonl", rows)
    texts = ["The cat sat on the mat and then the dog came in", "Speak, speak.  First Citizen"]
    write_jsonl(tmp_path / "lambada" / "test.jsonl", texts)
    data_root = tmp_path / "data"
    neox = {"tokenizer": "neox", "tokenizer_path": neox_tokenizer_dir}
    for name, source in (("wikitext", tmp_path / "wt"), ("lambada", tmp_path / "lambada")):
        prep(data_root, name, source=source, num_proc=1)
        prepare.main([name, f"--data_root={data_root}", f"--source={source}", "--num_proc=1",
                      *(f"--{k}={v}" for k, v in neox.items())])
    assert sorted(os.listdir(data_root)) == ["lambada", "lambada_neox", "wikitext", "wikitext_neox"]
    assert load_meta(data_root, "wikitext")["tokenizer"] == "gpt2"
    meta = load_meta(data_root, "wikitext_neox")
    assert (meta["dataset"], meta["tokenizer"], meta["vocab_size"]) == ("wikitext_neox", "neox", 302)
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(str(neox_tokenizer_dir))
    ids = splits_of(data_root, "wikitext_neox")
    for split, theirs in (("val", "validation"), ("test", "test")):
        assert ids[split].tolist() == hf.encode("".join(WIKI[theirs]), add_special_tokens=False)
    meta = load_meta(data_root, "lambada_neox")
    test = splits_of(data_root, "lambada_neox")["test"].tolist()
    tok = Tokenizer(meta)
    for (start, target_start, end), text in zip(meta["examples"], texts):
        i = text.rindex(" ")
        assert tok.decode(test[start:target_start]) == text[:i] and tok.decode(test[target_start:end]) == text[i:]


@pytest.mark.parametrize("args, message", [
    (["shakespeare_char", "--tokenizer=neox"], "--tokenizer does not apply to shakespeare_char"),
    (["shakespeare", "--tokenizer=bpe"], "--tokenizer=bpe: use gpt2 or neox"),
    (["shakespeare", "--tokenizer_path=somewhere"], "--tokenizer_path applies to the neox tokenizer"),
    (["shakespeare", "--tokenizer=neox", "--tokenizer_path=./nowhere"], "cannot load the neox tokenizer from './nowhere'"),
    (["pile", "--splits=train,dev"], "--splits=train,dev: give a comma-separated subset of train, val, test"),
])
def test_bad_tokenizer_input(tmp_path, capsys, args, message):
    data_root = tmp_path / "data"
    with pytest.raises(SystemExit) as exit:
        run_main(lambda: prepare.main(args + [f"--data_root={data_root}"]))
    err = capsys.readouterr().err
    assert exit.value.code == 1 and err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not data_root.exists() or os.listdir(data_root) == []


def test_pile_folder_without_a_split_and_too_large_vocabularies(tmp_path, neox_tokenizer_dir, monkeypatch):
    """A local Pile folder lacking a split asked for names the layout; a tokenizer whose ids do
    not fit in uint16 is refused before anything is written."""
    write_jsonl(tmp_path / "pile" / "train" / "00.jsonl", ["only a train shard"])
    with pytest.raises(UserError, match="has no val files: lay it out like the Pile"):
        prep(tmp_path / "data", "pile", source=tmp_path / "pile", tokenizer_path=neox_tokenizer_dir)
    prep(tmp_path / "data", "pile", source=tmp_path / "pile", tokenizer_path=neox_tokenizer_dir, splits="train")
    monkeypatch.setattr(prepare, "bpe_encoder", lambda kind, path: (None, 0, 70_000))
    with pytest.raises(UserError, match="70000 ids: token ids are stored as uint16"):
        prep(tmp_path / "data2", "shakespeare", tokenizer="neox", tokenizer_path=neox_tokenizer_dir)
    assert not (tmp_path / "data2").exists()
