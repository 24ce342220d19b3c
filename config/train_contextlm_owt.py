# ContextLM-Base on OpenWebText, the paper's Table 1: GPT-2 124M (12 layers, 12 heads, 768) plus
# a 2-layer context predictor with chunk size 4, lr 1e-3, ~0.5M tokens a step, 9B tokens.
# This is also the run of train.py without a config: its DEFAULTS are these settings, under
# other names (out_dir "out", wandb_run_name "run"); tests/test_train.py checks they agree.
# Sized for one node of 8 GPUs (80 GB each):
#   python prepare.py openwebtext
#   torchrun --standalone --nproc_per_node=8 train.py config/train_contextlm_owt.py
# On fewer GPUs the same global batch is kept by gradient accumulation (it must divide by the
# number of GPUs); on one GPU: python train.py config/train_contextlm_owt.py

out_dir = "out-contextlm-owt"
wandb_log = False
wandb_run_name = "contextlm-base"

dataset = "openwebtext"
# 16 sequences x 1024 tokens x 32 micro-batches = 524,288 tokens per optimizer step
batch_size = 16
block_size = 1024
gradient_accumulation_steps = 32

n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
bias = False
chunk_size = 4
n_ctx_layer = 2
n_enc_layer = 0

learning_rate = 1e-3
min_lr = 1e-4
max_iters = 17166        # 17,166 x 524,288 = 9.0B tokens
lr_decay_iters = 17166
warmup_iters = 715       # GPT-3's 375M warm-up tokens
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0

eval_interval = 1000
eval_iters = 200
log_interval = 10
compile = True
