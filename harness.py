"""
This repo's GPT as an lm-evaluation-harness model, for eval.py --tasks (imported only then: lm_eval is
an optional dependency, pip install -r requirements-eval.txt). The harness's TemplateLM turns each
request's text into token ids its own way (context and continuation encoded together, then split;
trailing spaces of the context moved to the continuation); the scoring is eval.py's.
"""

import torch
from lm_eval.api.model import TemplateLM

from configurator import UserError
from engine import Engine


class HarnessLM(TemplateLM):

    def __init__(self, model, tokenizer, name, stride, batch_size, device, autocast, score_pairs, score_text):
        """model scores with eval.py's functions: score_pairs (score_continuations) the harness's
        continuations, score_text (sliding_window_nll) its rolling texts, every token once."""
        super().__init__()
        self.model, self.tok, self.name = model, tokenizer, name
        self.engine = Engine(model)  # generate_until's KV-cache decoding
        self.block_size = model.config.block_size
        self.stride, self.batch_size = stride, batch_size
        self._device, self.autocast = device, autocast
        self.score_pairs, self.score_text = score_pairs, score_text

    @property
    def eot_token_id(self):
        """<|endoftext|>: the harness's context for a text that has none (BPE tokenizers only)."""
        if self.tok.eot_token is None:
            raise UserError(f"{self.name}: this task scores text with no context before it, and a character-level "
                            "model has no <|endoftext|> to start from: evaluate a GPT-2 BPE checkpoint on it")
        return self.tok.eot_token

    def tok_encode(self, string, add_special_tokens=None, **kwargs):
        try:
            return self.tok.encode(string)
        except UserError as e:  # a character the model's vocabulary lacks
            raise UserError(f"{self.name} cannot read this task: {e}; evaluate a GPT-2 BPE checkpoint on it, "
                            "or a task written in the model's characters")

    def _loglikelihood_tokens(self, requests, disable_tqdm=False, **kwargs):
        """[(log-likelihood, is_greedy)] of each request ((context, continuation), context ids,
        continuation ids)."""
        pairs = [(context, continuation) for _, context, continuation in requests]
        return self.score_pairs(self.model, pairs, self.block_size, self.batch_size, self._device, self.autocast)

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        """The log-likelihood of each request's text, every token scored once by eval.py's sliding
        window, after <|endoftext|> (GPT-2 BPE; a character-level model scores all but the first)."""
        prefix = [] if self.tok.eot_token is None else [self.eot_token_id]
        out = []
        for (text,) in [r.args for r in requests]:
            ids = torch.tensor(prefix + self.tok_encode(text))
            total, _ = self.score_text(self.model, ids, self.block_size, self.stride, self.batch_size,
                                       self._device, self.autocast)
            out.append(-total)
        return out

    def generate_until(self, requests, disable_tqdm=False):
        """Each request's (context, generation kwargs) -> the text Engine.generate (KV cache)
        appends, cut before the first of the `until` strings; greedy unless do_sample."""
        out = []
        for context, kwargs in [r.args for r in requests]:
            kwargs = dict(kwargs)
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_gen_toks = int(kwargs.pop("max_gen_toks", 256))
            temperature = float(kwargs.pop("temperature", 1.0))
            if not kwargs.pop("do_sample", False):
                temperature = 0.0  # greedy, as the harness's models decode unless a task samples
            top_k = kwargs.pop("top_k", None)
            if kwargs.pop("top_p", 1.0) not in (None, 1.0) or kwargs:
                raise UserError(f"generation_kwargs {sorted(kwargs) or ['top_p']} are not supported "
                                "(Engine.generate takes until, max_gen_toks, do_sample, temperature, top_k): "
                                "drop them from the task's YAML")
            if self.tok.eot_token is not None:
                until.append(self.tok.decode([self.eot_token_id]))
            ids = self.tok_encode(context) if context else [self.eot_token_id]
            # leave room for the answer in the window, as the harness's own models do, so that
            # it decodes from one KV cache; a window too short for that slides (Engine.generate)
            keep = self.block_size - max_gen_toks if max_gen_toks < self.block_size else self.block_size
            ids = torch.tensor([ids[-keep:]], device=self._device)
            with self.autocast:
                new = self.engine.generate(ids, max_gen_toks, temperature=temperature, top_k=top_k,
                                           vocab_size=self.tok.vocab_size,
                                           stop_token=self.tok.eot_token)[0, ids.size(1):]
            text = self.tok.decode(new.tolist())
            for stop in until:
                text = text.split(stop)[0]
            out.append(text)
        return out
