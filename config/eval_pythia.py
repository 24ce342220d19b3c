# Loss of EleutherAI's pretrained Pythia on the Pile's val split (needs `pip install transformers`,
# `python prepare.py pile --splits=val,test` and the weights):
#   python train.py config/eval_pythia.py [--init_from=pythia-70m|pythia-410m|pythia-1b|pythia-1.4b]
# n_ctx_layer = 0: the pretrained weights are evaluated as they are, without a context predictor.
batch_size = 8
block_size = 2048
eval_iters = 250  # 250 x 8 x 2048 = 4.1M tokens
eval_only = True
wandb_log = False
init_from = "pythia-160m"
dataset = "pile"
n_ctx_layer = 0
out_dir = "out-eval-pythia"
