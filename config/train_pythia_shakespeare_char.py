# config/train_shakespeare_char.py on Pythia's block: the same small character-level ContextLM
# (4 layers, 4 heads, 128 wide, a 2-layer context predictor, w=4) and optimizer, with the
# GPT-NeoX block of Pythia (rotary positions on 25% of each head, parallel residual, untied head,
# exact GELU, biases) in place of GPT-2's, on a shorter schedule (600 steps) that runs in minutes:
#   python prepare.py shakespeare_char
#   python train.py config/train_pythia_shakespeare_char.py
#   python sample.py --out_dir=out-shakespeare-char-pythia
# Measured with OMP_NUM_THREADS=1 on a 2-core CPU shared with other jobs: 6m36s, val loss 4.19 at
# step 0, 2.35 at 100, 1.95 at 300, 1.81 at 600 (train 1.63).
# The Pythia-block GPT baseline: add --n_ctx_layer=0 --out_dir=out-shakespeare-char-pythia-gpt.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_shakespeare_char.py")).read())
out_dir = "out-shakespeare-char-pythia"

# the GPT-NeoX block of Pythia (config.BACKBONES["pythia"]), with biases; the head is 32 wide, so
# RoPE turns 8 of its dims
rotary_pct = 0.25
rotary_base = 10000.0
parallel_residual = True
tie_embeddings = False
gelu_approximate = "none"
layer_norm_eps = 1e-5
bias = True

# the shorter schedule
max_iters = 600
lr_decay_iters = 600
warmup_iters = 60
eval_interval = 100
