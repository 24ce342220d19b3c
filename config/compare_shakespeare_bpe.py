# The default study on GPT-2 BPE tokens: gpt vs contextlm vs gpt+2L on tiny Shakespeare in
# GPT-2's tokenizer, at a shape where the predictor is a GPT-2-like share of the model
# (docs/study.md has the result).
#   python prepare.py shakespeare
#   python compare.py config/compare_shakespeare_bpe.py     # 5 seeds x 3 arms
# Predictor share (model.param_breakdown, embeddings counted as in the paper's 124M): 1.57M
# predictor parameters beside a 16.06M token pathway, 9.8% (GPT-2 124M + a 2-layer predictor:
# 14.18M beside 124.48M, 11.4%). The 50,304 x 256 embedding is most of the token pathway, and
# its output layer most of the compute (FLOPs per token: gpt 97.7M, contextlm 100.1M, gpt+2L 108.0M).
# Speed: gpt ~2.3 s a step on one core (OMP_NUM_THREADS=1, ~890 tokens/s), ~6 min a run with its
# evaluations, ~1.5 h for the 15 runs (7-10 min a run with three studies sharing two cores).
# The budget, 100 steps (205K tokens), is what one CPU session could afford for 15 runs: the
# earliest phase of training (docs/study.md); a longer one is --max_iters=N (the decay follows).
# The hyperparameters are shared by every arm and tuned for none of them.
out_dir = "runs/compare-bpe"
dataset = "shakespeare"
seed = 1337
seeds = 5

n_layer = 4
n_head = 4
n_embd = 256
block_size = 128
dropout = 0.0
bias = False
n_ctx_layer = 2
chunk_size = 4
n_enc_layer = 0

batch_size = 16
gradient_accumulation_steps = 1
max_iters = 100             # 100 x 16 x 128 = 205K tokens, two thirds of an epoch of the 302K-token text
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 20
weight_decay = 0.1
grad_clip = 1.0

eval_interval = 20
eval_iters = 6              # 6 x 16 x 128 = 12K tokens per estimate, the same for every run (val split: 36K)
log_interval = 1
always_save_checkpoint = False
device = "cpu"
dtype = "float32"
compile = False
