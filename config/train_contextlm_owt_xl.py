# ContextLM-XL on OpenWebText (the paper's Table 1: 48 layers, 25 heads, 1600, lr 4e-4), the same
# ~0.5M-token step and 9B tokens as ContextLM-Base. The GPT-2 baseline: add --n_ctx_layer=0
# --out_dir=out-gpt2-owt-xl. Smaller micro-batches, more accumulation, to fit 80 GB GPUs.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_contextlm_owt.py")).read())
out_dir = "out-contextlm-owt-xl"
wandb_run_name = "contextlm-xl"
n_layer = 48
n_head = 25
n_embd = 1600
learning_rate = 4e-4
min_lr = 4e-05
batch_size = 4                          # 4 x 1024 x 128 = 524,288 tokens per step
gradient_accumulation_steps = 128
