"""
Sample from a trained ContextLM (or a GPT-2 or Pythia) with KV-cache decoding.

    python sample.py                                          # the most recent ./out*/ckpt.pt
    python sample.py --out_dir=out-shakespeare-char
    python sample.py --out_dir=out-contextlm-owt --start="The meaning of life is" --num_samples=3
    python sample.py --out_dir=out-contextlm-owt --start=FILE:prompt.txt --temperature=0
    python sample.py --init_from=gpt2-xl --start="Hello"      # OpenAI's weights (or pythia-160m, a local folder,
                                                              # one that export.py wrote; needs transformers)

A model fine-tuned on instructions (docs/finetuning.md) is prompted in its template, and its
answers end at end-of-text; --mtbench answers MT-Bench's questions for FastChat's judge:
    python sample.py --out_dir=out-alpaca-contextlm --template=alpaca --start="Name three colours."
    python sample.py --out_dir=out-alpaca-contextlm --template=alpaca --max_new_tokens=1024 \
        --mtbench=data/mt_bench/question.jsonl       # -> data/mt_bench/model_answer/out-alpaca-contextlm.jsonl
"""

import glob
import json
import os
import sys
import time
import uuid

import torch

from checkpoint import load_run
from configurator import SEED, UserError, at_least, one_of, or_none, parse_config, run_main, write_text
from dataset import TEMPLATES, Tokenizer, alpaca_prompt
from device import setup_device, synchronize
from engine import Engine

DEFAULTS = dict(
    init_from="resume",   # 'resume' (out_dir/ckpt.pt), a GPT-2 or Pythia name, or a local Hugging Face folder
    out_dir="",           # '' = the most recently written ./out*/ckpt.pt (where train.py's runs go)
    start="\n",           # the prompt, or FILE:path to read it from a file
    num_samples=3,        # sampled together, as one batch
    max_new_tokens=500,
    temperature=0.8,      # 0 = greedy; < 1 sharper, > 1 more random
    top_k=200,            # keep only the top_k most likely tokens (None = all)
    seed=1337,
    device="auto",
    dtype="auto",
    compile=False,        # torch.compile the per-token decoding step
    template="",          # 'alpaca': --start is an instruction, asked in the Alpaca prompt; stop at end-of-text
    mtbench="",           # MT-Bench's question.jsonl: write answers to --answers instead of printing samples
    answers="",           # the answer file; '' = model_answer/<run>.jsonl beside the question file
)

# the valid values of the options above that need a check (config's; the prompt: read_prompt)
CHECKS = dict(
    num_samples=at_least(1), max_new_tokens=at_least(1),
    temperature=at_least(0, "0 = greedy"),  # a negative one would quietly favour the least likely tokens
    top_k=or_none(at_least(1), "None = all"), seed=SEED, template=one_of("", *TEMPLATES),
)


# the README's first command: it trains the model that `python sample.py` then finds
FIRST_RUN = "python prepare.py shakespeare_char && python train.py config/train_shakespeare_char.py"


def latest_run():
    """The run directory of the most recently written ./out*/ckpt.pt (train.py's out_dirs are
    out, out-shakespeare-char, ...), said on stderr; a one-line error naming a first run if none."""
    found = glob.glob(os.path.join("out*", "ckpt.pt"))
    if not found:
        raise UserError(f"no checkpoint to sample from in ./out*/ckpt.pt: train one first "
                        f"(`{FIRST_RUN}`), or pass --out_dir=DIR or --init_from=gpt2")
    path = max(found, key=os.path.getmtime)
    print(f"sampling from {path}, the most recent checkpoint; --out_dir=DIR picks another", file=sys.stderr)
    return os.path.dirname(path)


def read_prompt(start):
    if start.startswith("FILE:"):
        path = start[len("FILE:"):]
        try:
            with open(path, encoding="utf-8") as f:
                start = f.read()
        except OSError as e:
            raise UserError(f"cannot read the prompt file {path}: {e.strerror}")
    if not start:
        raise UserError("the prompt is empty: pass --start=TEXT or --start=FILE:path with some text")
    return start


def until_eot(ids, eot):
    """ids up to, not including, the first end-of-text token."""
    return ids[:ids.index(eot)] if eot in ids else ids


# ---------------------------------------------------------------- the speed line

def speed_line(num_samples, new_tokens, seconds, first_seconds, device):
    """What generating new_tokens tokens per sample in `seconds` took. first_seconds: until the
    first decode step had ended (its second token), None without a decode step (one token, or a
    prompt that fills the window: every token a prefill). Steady is the pace after it."""
    line = (f"{num_samples * new_tokens} tokens in {seconds:.2f}s ({num_samples} samples of {new_tokens} tokens, "
            f"KV-cache decoding on {device})")
    if first_seconds is None or new_tokens <= 2:
        return f"{line}: {num_samples * new_tokens / seconds:,.0f} tokens/s"
    steady = num_samples * (new_tokens - 2) / (seconds - first_seconds)
    return (f"{line}: {steady:,.0f} tokens/s steady; the first 2 tokens took {first_seconds:.2f}s "
            "(the prefill and the first decode step: compiling, first-time setup)")


# ---------------------------------------------------------------- MT-Bench answers

# FastChat's sampling temperature for each MT-Bench category (fastchat/llm_judge/common.py, used by
# its gen_model_answer.py), 0.7 for any other category; 0 is greedy decoding
MTBENCH_TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                       "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}


def read_questions(path):
    """The questions of MT-Bench's question.jsonl: a JSON object a line, with question_id,
    category and turns (the questions of a conversation, asked one after the other)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UserError(f"cannot read the MT-Bench question file {path}: {e.strerror}")
    questions = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError:
            q = None
        if not (isinstance(q, dict) and "question_id" in q and isinstance(q.get("category"), str)
                and isinstance(q.get("turns"), list) and q["turns"] and all(isinstance(t, str) for t in q["turns"])):
            raise UserError(f"{path}:{n} is not an MT-Bench question (JSON with question_id, category and "
                            "turns, a list of texts): give MT-Bench's question.jsonl")
        questions.append(q)
    if not questions:
        raise UserError(f"{path} holds no questions: give MT-Bench's question.jsonl")
    return questions


def answer_turns(engine, tokenizer, turns, temperature, c, device):
    """The model's answers to the turns of one conversation, as texts. Turn 1 is asked in the
    Alpaca prompt; each later one follows the conversation so far, answers and their end-of-text
    tokens included, as its next "### Instruction:" (FastChat's Alpaca conversation). Each answer
    is generated until end-of-text."""
    eot = tokenizer.eot_token
    ids, answers = [], []
    for j, question in enumerate(turns):
        ids += tokenizer.encode_ordinary(alpaca_prompt(question, intro=j == 0))
        x = torch.tensor([ids], dtype=torch.long, device=device)
        y = engine.generate(x, c["max_new_tokens"], temperature=temperature, top_k=c["top_k"],
                            vocab_size=tokenizer.vocab_size, stop_token=eot)
        reply = until_eot(y[0, len(ids):].tolist(), eot)
        ids += reply + [eot]
        answers.append(tokenizer.decode(reply).strip())
    return answers


def answers_path(c, run_name):
    """Where the MT-Bench answers go (--answers, or model_answer/<run>.jsonl beside the questions),
    checked before any question is asked: never the question file, nor a file that is not an
    earlier answer file (a JSON object with question_id and answer_id a line), which it replaces."""
    path = c["answers"] or os.path.join(os.path.dirname(c["mtbench"]), "model_answer", f"{run_name}.jsonl")
    if os.path.realpath(path) == os.path.realpath(c["mtbench"]):
        raise UserError(f"--answers={path} is the question file itself: give another --answers")
    if os.path.lexists(path):
        try:
            with open(path, encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError):
            rows = None
        if not (rows is not None and all(isinstance(r, dict) and {"question_id", "answer_id"} <= set(r) for r in rows)):
            raise UserError(f"{path} is not an MT-Bench answer file that sample.py wrote: move it away, or give "
                            "another --answers")
    return path


def write_mtbench_answers(engine, tokenizer, questions, c, path, device, autocast):
    """Answer every question (of c["mtbench"]) and write the answer file FastChat's judge reads
    (fastchat/llm_judge: gen_judgment.py) to path: a JSON object a line with question_id,
    answer_id, model_id (the file's name, which the judge knows the model by), choices [{index:
    0, turns: [answer, ...]}] and tstamp. Written to a temporary file renamed into place at the end."""
    model_id = os.path.basename(path).removesuffix(".jsonl")
    rows, t0 = [], time.time()
    for i, q in enumerate(questions, 1):
        temperature = MTBENCH_TEMPERATURE.get(q["category"], 0.7)
        torch.manual_seed(c["seed"])  # each question as if it were the only one (FastChat seeds each too)
        with torch.no_grad(), autocast:
            turns = answer_turns(engine, tokenizer, q["turns"], temperature, c, device)
        rows.append({"question_id": q["question_id"], "answer_id": uuid.uuid4().hex, "model_id": model_id,
                     "choices": [{"index": 0, "turns": turns}], "tstamp": time.time()})
        print(f"[{i}/{len(questions)}] question {q['question_id']} ({q['category']}, temperature {temperature}): "
              f"{', '.join(str(len(t)) for t in turns)} characters, {time.time() - t0:.0f}s so far", file=sys.stderr)
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(f"wrote {len(rows)} answers of {model_id} to {path}", file=sys.stderr)


def main():
    c = parse_config(DEFAULTS, sys.argv[1:], CHECKS)
    if c["mtbench"] and not c["template"]:
        raise UserError("--mtbench asks questions in the template the model was fine-tuned with: add --template=alpaca")
    questions = read_questions(c["mtbench"]) if c["mtbench"] else None
    prompt = None if c["mtbench"] else read_prompt(c["start"])
    device, _, _, autocast = setup_device(c["device"], c["dtype"])
    torch.manual_seed(c["seed"])
    out_dir = c["out_dir"] or (latest_run() if c["init_from"] == "resume" else "")
    if c["mtbench"]:
        answers = answers_path(c, os.path.basename(os.path.normpath(out_dir if c["init_from"] == "resume"
                                                                    else c["init_from"])))
    # a train.py run, or GPT-2's or Pythia's weights as published (no predictor)
    model, meta, _ = load_run(out_dir, hf=False) if c["init_from"] == "resume" else load_run(c["init_from"])
    model, tokenizer = model.eval().to(device), Tokenizer(meta)
    if c["template"] and tokenizer.eot_token is None:
        raise UserError("--template needs a model with an end-of-text token; this one reads characters")
    engine = Engine(model, compile=c["compile"])  # compiled at the first decode step, once
    if c["mtbench"]:
        write_mtbench_answers(engine, tokenizer, questions, c, answers, device, autocast)
        return

    # an instruction is asked in the template, as in fine-tuning: its text never becomes special tokens
    ids = tokenizer.encode_ordinary(alpaca_prompt(prompt)) if c["template"] else tokenizer.encode(prompt)
    x = torch.tensor([ids] * c["num_samples"], dtype=torch.long, device=device)
    step_ends = []  # when each decode step ended (GPU included): the speed line's first tokens apart

    def step_ended():  # Engine.generate's on_step
        synchronize(device)
        step_ends.append(time.perf_counter())

    t0 = time.perf_counter()
    with torch.no_grad(), autocast:  # only the tokenizer's ids: BPE models pad their vocabulary to 50304
        y = engine.generate(x, c["max_new_tokens"], temperature=c["temperature"], top_k=c["top_k"],
                            vocab_size=tokenizer.vocab_size, stop_token=tokenizer.eot_token if c["template"] else None,
                            on_step=step_ended)
    synchronize(device)
    dt = time.perf_counter() - t0
    for row in y.tolist():
        if c["template"]:  # the answer ends at end-of-text
            row = ids + until_eot(row[len(ids):], tokenizer.eot_token)
        print(tokenizer.decode(row))
        print("---------------")
    new_tokens = y.size(1) - len(ids)  # max_new_tokens, or fewer when every answer ended
    print(speed_line(c["num_samples"], new_tokens, dt, step_ends[0] - t0 if step_ends else None, device),
          file=sys.stderr)


if __name__ == "__main__":
    run_main(main)
