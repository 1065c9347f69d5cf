"""Acceptance of HMC with float32 vs bfloat16 leapfrog gradients (the accept test stays float32)."""

import os
import time

import jax

os.environ.setdefault("BNN_SHIFT_MNIST_DIR", "/work/shared/data/mnist")
from bnn_shift.data import load_mnist
from bnn_shift.inference import hmc
from bnn_shift.models import paper_mlp
from bnn_shift.priors import Gaussian

d = load_mnist().subset(2000, 500, seed=0)
for prec in ("float32", "bfloat16"):
    t = time.perf_counter()
    p = hmc(
        paper_mlp(key=jax.random.key(0)),
        Gaussian(0.1),
        d.x_train,
        d.y_train,
        step_size=1e-3,
        n_iterations=12,
        n_burnin=2,
        precision=prec,
        progress=False,
    )
    print(
        prec,
        "acceptance",
        round(float(p.stats["acceptance_rate"][2:].mean()), 3),
        "accepted",
        int(p.stats["accepted"][2:].sum()),
        "of 10",
        f"{time.perf_counter() - t:.0f}s",
    )
