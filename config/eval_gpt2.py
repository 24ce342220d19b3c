# Loss of OpenAI's pretrained GPT-2 on OpenWebText's val split (needs `pip install transformers`
# and the weights): python train.py config/eval_gpt2.py [--init_from=gpt2-medium|gpt2-large|gpt2-xl]
# n_ctx_layer = 0: the pretrained weights are evaluated as they are, without a context predictor.
batch_size = 8
eval_iters = 500  # 500 x 8 x 1024 = 4M tokens
eval_only = True
wandb_log = False
init_from = "gpt2"
dataset = "openwebtext"
n_ctx_layer = 0
out_dir = "out-eval-gpt2"
