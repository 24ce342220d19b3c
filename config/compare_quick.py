# The smallest study that still exercises everything: a tiny model, one seed, a few seconds per
# run on a laptop CPU (CI runs it). The numbers mean nothing; the pipeline is what is tested.
#   python compare.py --quick                  # the three arms
#   python compare.py --quick --ablation=True  # the chunk-size x encoder-depth grid
out_dir = "runs/compare-quick"
dataset = "shakespeare_char"
seeds = 1

n_layer = 2
n_head = 2
n_embd = 32
block_size = 32
dropout = 0.0
bias = False
n_ctx_layer = 2
chunk_size = 4
n_enc_layer = 0

batch_size = 16
gradient_accumulation_steps = 1
max_iters = 30
learning_rate = 3e-3
min_lr = 3e-4
warmup_iters = 5
weight_decay = 0.1
grad_clip = 1.0

eval_interval = 10
eval_iters = 5
log_interval = 1
always_save_checkpoint = False
device = "cpu"
dtype = "float32"
compile = False
