# The study at nanoGPT's GPU recipe for tiny Shakespeare (config/train_shakespeare_char.py's GPU
# flags), cut to 2,000 iterations as in issue 23: gpt vs contextlm vs gpt+2L, 3 seeds, bf16 and
# compiled on one GPU. The models are small enough to leave an H100 mostly idle, so the seeds
# train side by side in three processes, then one more call writes the report:
#   python prepare.py shakespeare_char
#   for s in 1337 1338 1339; do python compare.py config/compare_gpu.py --seed=$s --seeds=1 & done; wait
#   python compare.py config/compare_gpu.py          # runs/compare-gpu/results.{md,json}, curves.png
# Cost, ESTIMATED (not measured: no GPU run of this file yet): nanoGPT's recipe runs ~25 ms an
# iteration on one A100 alone, so 2,000 iterations, 8 evaluations of 200 batches and compiling
# take 1.5-2 min a run, 3 runs a process one after another: under 10 minutes in all.
# Measured on one H200 at main 749dfd2 with context_scale='none' (the old default; seeds 1337, 2, 3),
# final val loss: gpt 1.4592, contextlm 1.4785, contextlm − gpt +0.019 [+0.005, +0.034] (docs/study.md).
out_dir = "runs/compare-gpu"
dataset = "shakespeare_char"
seed = 1337
seeds = 3

n_layer = 6
n_head = 6
n_embd = 384
block_size = 256
dropout = 0.2
bias = False
n_ctx_layer = 2
chunk_size = 4
n_enc_layer = 0

batch_size = 64
gradient_accumulation_steps = 1
max_iters = 2000
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 100
weight_decay = 0.1
beta2 = 0.99

eval_interval = 250
eval_iters = 200
log_interval = 10
always_save_checkpoint = False
device = "cuda"
dtype = "bfloat16"
compile = True
