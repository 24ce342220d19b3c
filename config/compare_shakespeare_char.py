# The default study: does next-context prediction help a small character-level model?
# gpt (4 layers) vs contextlm (4 token layers + a 2-layer context predictor, w=4) vs gpt+2L
# (6 layers, parameter-matched), 8 seeds each, identical batches and schedule for every arm
# (docs/study.md has the result).
#   python prepare.py shakespeare_char
#   python compare.py                   # this file: 24 runs of 5-8 min on one core (gpt 5 min 15 s,
#                                       # contextlm ~6 min, gpt+2L ~8 min), ~2.6 h in all
#   python compare.py --seeds=4 & python compare.py --seed=1341 --seeds=4; wait; python compare.py
#                                       # on two cores: two processes, then the report; a run
#                                       # is 1.5-2x slower beside another (contextlm ~11 min,
#                                       # gpt+2L ~14 min), ~2.2 h in all
#   python compare.py --ablation=True --seeds=3   # chunk size {2,4,8,16} x encoder depth {0,2}:
#                                       # 14 more runs, 60 min on 2 idle cores (--seeds=1: 7 runs, 28 min)
# On cores shared with other busy processes two-thread PyTorch stalls (a step 10x slower):
# there, run OMP_NUM_THREADS=1 python compare.py.
# The hyperparameters are shared by every arm and tuned for none of them.
out_dir = "runs/compare"
dataset = "shakespeare_char"
seed = 1337
seeds = 8

n_layer = 4
n_head = 4
n_embd = 128
block_size = 128
dropout = 0.0
bias = False
n_ctx_layer = 2
chunk_size = 4
n_enc_layer = 0

batch_size = 32
gradient_accumulation_steps = 1
max_iters = 1000            # 1000 x 32 x 128 = 4.1M tokens, ~4 epochs of the 1M-character text
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 100
weight_decay = 0.1
grad_clip = 1.0

eval_interval = 100
eval_iters = 25             # 25 x 32 x 128 = 102K tokens per estimate (val split: 112K)
log_interval = 1
always_save_checkpoint = False
device = "cpu"
dtype = "float32"
compile = False
