# What `python bench.py --quick` means: the tiny shape and short measurements, about a minute on a
# 2-core CPU; arguments after --quick still win (tests/test_bench.py runs it with a smaller shape).
# One thread: ops this small gain little from more, and on a busy CPU threads that wait on each
# other can cost 10x.
shape = "tiny"
warmup_steps = 2
train_rounds = 3
steps_per_round = 3
gen_lengths = (32, 96)
gen_batch_size = 4
gen_rounds = 3
threads = 1
