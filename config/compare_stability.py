# The stability sweep: gpt and contextlm, paired seeds, at every width x learning rate, on
# characters (docs/method.md, "Scale", has the result). The char study's settings, shortened to
# 150 steps. Measured on 2 cores, two processes of one thread: a run takes 1.5-2 min at width 128,
# 4.5-6 min at 256, 9-11 min at 384, so a cell of 6 runs 10, 32 and 60 min:
#   python prepare.py shakespeare_char
#   python compare.py config/compare_stability.py           # 36 runs in one process: ~2 h
#   python compare.py config/compare_stability.py --learning_rates=[1e-3] & \
#   python compare.py config/compare_stability.py --learning_rates=[2e-3]; wait; \
#   python compare.py config/compare_stability.py           # ~1 h 45 min on 2 cores, then the report
#   python compare.py config/compare_stability.py --context_scale=none --seeds=1   # the old default
#   python compare.py config/compare_stability.py --context_gain_init=1.0          # a candidate default
# Each cell trains in out_dir/w<width>-lr<lr>/; the report is out_dir/sweep.{md,json,png}. A sweep
# with other context options names its contextlm runs and report after them (contextlm-none,
# sweep-context_gain_init=1.0.md, ...) and reuses the gpt runs already there.
out_dir = "runs/stability"
dataset = "shakespeare_char"
sweep = True
widths = [128, 256, 384]
learning_rates = [1e-3, 2e-3]
seed = 1337
seeds = 3

n_layer = 4
n_head = 4
n_embd = 128                # each cell sets its own
block_size = 128
dropout = 0.0
bias = False
n_ctx_layer = 2
chunk_size = 4
n_enc_layer = 0

batch_size = 32
gradient_accumulation_steps = 1
max_iters = 150             # 150 x 32 x 128 = 614K tokens, 0.6 epochs
learning_rate = 2e-3        # each cell sets its own; min_lr keeps the ratio
min_lr = 2e-4
warmup_iters = 15
weight_decay = 0.1
grad_clip = 1.0

eval_interval = 25
eval_iters = 10             # 10 x 32 x 128 = 41K tokens per estimate
log_interval = 1
always_save_checkpoint = False
device = "cpu"
dtype = "float32"
compile = False
