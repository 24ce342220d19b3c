# A small character-level ContextLM on tiny Shakespeare that trains to a readable sample on a
# 2-core CPU in about 5 minutes (val loss 1.596 at step 1800):
#   python prepare.py shakespeare_char
#   python train.py config/train_shakespeare_char.py
#   python sample.py                    # samples the most recent checkpoint: this run
# The GPT baseline is the same command with --n_ctx_layer=0 --out_dir=out-shakespeare-char-gpt.
# On a GPU, scale it up as nanoGPT's recipe does (val loss ~1.47 in a few minutes):
#   --device=cuda --compile=True --n_layer=6 --n_head=6 --n_embd=384 --block_size=256
#   --batch_size=64 --dropout=0.2 --learning_rate=1e-3 --max_iters=5000 --lr_decay_iters=5000
#   --min_lr=1e-4 --warmup_iters=100 --eval_interval=250 --eval_iters=200

out_dir = "out-shakespeare-char"
eval_interval = 300
eval_iters = 40
log_interval = 50
always_save_checkpoint = False  # keep the best model by val loss: the small data overfits late

dataset = "shakespeare_char"
gradient_accumulation_steps = 1
batch_size = 32
block_size = 128  # 32 chunks of 4 characters for the context predictor

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
chunk_size = 4
n_ctx_layer = 2
n_enc_layer = 0

learning_rate = 2e-3  # small models tolerate a large learning rate
max_iters = 1800
lr_decay_iters = 1800
min_lr = 2e-4
warmup_iters = 100
beta2 = 0.99  # few tokens per step

device = "cpu"  # runs anywhere; use --device=cuda (and --compile=True) on a GPU
dtype = "float32"
compile = False  # compiling costs more than it saves on a run this short
