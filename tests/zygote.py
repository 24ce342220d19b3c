"""Runs the repo's scripts as `python SCRIPT ARGS` would, each in a process of its own, forked from
this one after the libraries they load have been imported once: a script's run costs its own
work, not the ~1.5 s of importing torch again (tests/test_bad_input.py runs dozens of them).

Reads one job a line on stdin, JSON: {"script", "args", "cwd", "env", "stdout", "stderr",
"fault"}; runs it in a child (its own folder, environment, stdin from /dev/null, stdout and stderr
to those files, `fault` Python code run first, to plant a failure), and answers with the exit
status on a line: 0, the code it exited with, or 1 after printing the traceback of an uncaught
exception, as Python itself does. Only third-party libraries are imported here; the repo's own
modules load afresh in each child."""

import json
import os
import runpy
import sys
import traceback

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401
import numpy  # noqa: E402,F401
import torch  # noqa: E402,F401
import transformers  # noqa: E402,F401  (sample.py's Hugging Face folders)


def run(job):
    """In the child: become `python job["script"] *job["args"]`; never returns."""
    os.chdir(job["cwd"])
    os.environ.update(job["env"])
    written = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, job["stdout"], written), (2, job["stderr"], written)):
        os.dup2(os.open(path, flags, 0o644), fd)
    sys.argv = [job["script"], *job["args"]]
    sys.path[0] = os.path.dirname(job["script"])  # as for `python SCRIPT`: its folder first
    code = 0
    try:
        if job["fault"]:
            exec(job["fault"], {})
        runpy.run_path(job["script"], run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main():
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            run(job)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    main()
