# ContextLM-Base on OpenWebText, the paper's Table 1: GPT-2 124M (12 layers, 12 heads, 768) plus
# a 2-layer context predictor with chunk size 4, lr 1e-3, ~0.5M tokens a step, 9B tokens.
# That run is train.py's DEFAULTS: this file names it and sets nothing else of its own
# (tests/test_train.py checks that it trains exactly the defaults).
# Sized for one node of 8 GPUs (80 GB each):
#   python prepare.py openwebtext
#   torchrun --standalone --nproc_per_node=8 train.py config/train_contextlm_owt.py
# On fewer GPUs the same global batch is kept by gradient accumulation (it must divide by the
# number of GPUs); on one GPU: python train.py config/train_contextlm_owt.py

out_dir = "out-contextlm-owt"
wandb_run_name = "contextlm-base"

# train.py's defaults too, said here for compare.py, whose own differ: config/compare_owt.py builds on this file
dataset = "openwebtext"
lr_decay_iters = 17166  # = max_iters: the cosine decays over the whole run
