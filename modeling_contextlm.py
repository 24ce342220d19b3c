"""
ContextLM as a Hugging Face transformers model: export.py copies this file into the folder it writes,
beside a verbatim copy of model.py, so that AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)
loads a run with torch and transformers alone. The forward pass is model.py's GPT, wrapped, never written
a second time. There is no KV cache in transformers' format: generate() runs the window (the last
block_size tokens) in full at every step, as engine.Engine.generate does. This file imports `.model`, so
it only runs from such a folder (docs/export.md).
"""

import dataclasses

import torch
from torch.nn import functional as F
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .model import GPT, GPTConfig

GPT_FIELDS = {f.name: f.default for f in dataclasses.fields(GPTConfig)}  # what config.json holds for GPTConfig


class ContextLMConfig(PretrainedConfig):
    """GPTConfig's fields, by their names in model.py, plus what every transformers config holds."""
    model_type = "contextlm"
    # the standard names that libraries read: lm-evaluation-harness its window, transformers the tying
    attribute_map = {"hidden_size": "n_embd", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head",
                     "max_position_embeddings": "block_size", "tie_word_embeddings": "tie_embeddings"}

    def __init__(self, **kwargs):
        fields = {name: kwargs.pop(name, default) for name, default in GPT_FIELDS.items()}
        super().__init__(**kwargs)
        for name, value in fields.items():  # after the base class, which sets its own tie_word_embeddings
            setattr(self, name, value)

    def gpt_config(self):
        return GPTConfig(**{name: getattr(self, name) for name in GPT_FIELDS})


class ContextLMForCausalLM(PreTrainedModel, GenerationMixin):
    """model.py's GPT (self.model) behind transformers' causal-LM interface."""
    config_class = ContextLMConfig
    base_model_prefix = "model"
    _no_split_modules = ["Block"]
    # a tied head is saved once, as the embedding, and tied again on loading
    _tied_weights_keys = {"model.lm_head.weight": "model.transformer.wte.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.model = GPT(config.gpt_config())
        self.post_init()

    def _init_weights(self, module):
        """Nothing: GPT.__init__ initialised every weight its own way (docs/method.md), and loading replaces them."""

    def get_input_embeddings(self):
        return self.model.transformer.wte

    def get_output_embeddings(self):
        return self.model.lm_head

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        """input_ids (B, T), T <= block_size -> logits (B, T, vocab) at every position; with labels
        (B, T), the mean cross-entropy of each position's next token (labels shifted here; -100 is
        ignored), as every transformers causal LM. attention_mask (B, T) may pad rows on the left or
        the right: each row then runs alone on its own tokens, which start at position 0 as in
        training. No cache is returned (the module docstring)."""
        if attention_mask is None or bool(attention_mask.all()):
            logits, _ = self.model(input_ids, all_logits=True)
        else:
            logits = torch.zeros(*input_ids.shape, self.config.vocab_size, dtype=self.dtype,
                                 device=input_ids.device)  # (B, T, vocab); padding scores 0
            for row, mask in enumerate(attention_mask.bool()):
                kept = mask.nonzero()[:, 0]  # (n,): where the row's tokens are
                if len(kept) == 0:
                    continue
                if kept[-1] - kept[0] + 1 != len(kept):
                    raise ValueError("attention_mask has a gap inside a row: pad on the left or the right only")
                logits[row, kept] = self.model(input_ids[row:row + 1, kept], all_logits=True)[0][0]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten().to(logits.device),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        """Each step of generate(): the window, the last block_size tokens, run in full (no cache)."""
        window = self.config.block_size
        return {"input_ids": input_ids[:, -window:],
                "attention_mask": None if attention_mask is None else attention_mask[:, -window:]}
