"""PAC-Bayes compression bound on full MNIST (docs/results.md, "Compression bounds").

Defaults are the CPU-sized headline run: LeNet-5, Kronecker+QR subspace d = 1,000, 8 epochs of
Adam plus 2 of quantisation-aware training, 15 uniform-init levels, no regulariser, 10
hyperparameter bits (a 1,024-configuration search budget). Any flag of `bnn-shift bound` can be
appended to override them (about 10 minutes on 2 shared CPU cores):

    .venv/bin/python benchmarks/bound_mnist.py [--model mlp --hidden 64,64 --epochs 20 ...]
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("BNN_SHIFT_MNIST_DIR", "/work/shared/data/mnist")

from bnn_shift.cli import main

HEADLINE = [
    "bound",
    "--dataset", "mnist",
    "--model", "lenet",
    "--prior", "none",
    "--intrinsic-dim", "1000",
    "--projector", "kron-qr",
    "--levels", "15",
    "--level-init", "uniform",
    "--epochs", "8",
    "--quant-epochs", "2",
    "--quant-learning-rate", "3e-3",
    "--batch-size", "500",
    "--learning-rate", "0.1",
    "--hyper-bits", "10",
    "--out", "runs/bound-mnist",
]  # fmt: skip

if __name__ == "__main__":
    started = time.perf_counter()
    code = main(HEADLINE + sys.argv[1:])  # later flags override the defaults above
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    sys.exit(code)
