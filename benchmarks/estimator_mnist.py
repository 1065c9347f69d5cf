"""The estimator as a new user runs it on the 2,000-image MNIST subset: seconds, gradients,
step, acceptance and test accuracy per configuration (issue 15 part 8). One JSON line a fit.

    python benchmarks/estimator_mnist.py                      # the three documented cases
    python benchmarks/estimator_mnist.py '[{"inference": "hmc", "max_leapfrogs": null}]'
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
from _common import gradient_parts, prefer_shared_mnist

from bnn_shift.data import load_mnist
from bnn_shift.sklearn import BNNClassifier

CASES = (
    {"inference": "hmc", "hidden": [32]},
    {"inference": "hmc", "prior": "empcov", "hidden": [64]},
    {"inference": "hmc", "hidden": [256, 256]},
)


def measure(case: dict, x, y, x_test, y_test) -> dict:
    """Fit one configuration; its cost and result, or the error it ended with."""
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf = BNNClassifier(**case, random_state=0).fit(x, y)
    except Exception as error:  # a failed fit is a result here
        return {"case": case, "seconds": time.perf_counter() - started, "error": str(error)}
    post, n_burnin = clf.posterior_, clf.n_burnin
    stats = {k: np.asarray(v) for k, v in post.stats.items()}
    return {
        "case": case,
        "seconds": round(time.perf_counter() - started, 1),
        "accuracy": float(clf.score(x_test, y_test)),
        "draws": post.n_draws,
        "step_size": post.attrs.get("step_size"),
        "leapfrogs": post.attrs.get("n_leapfrog_steps"),
        "gradients": sum(gradient_parts(post).values()),
        "acceptance": (
            float(np.mean(stats["acceptance_rate"][n_burnin:]))
            if "acceptance_rate" in stats
            else None
        ),
        "warnings": [str(w.message)[:160] for w in caught][:4],
    }


def main() -> None:
    cases = json.loads(sys.argv[1]) if len(sys.argv) > 1 else CASES
    prefer_shared_mnist()
    data = load_mnist(progress=False).subset(2000, 2000, seed=0)
    flat = [a.reshape(len(a), -1) for a in (data.x_train, data.x_test)]
    for case in cases:
        row = measure(case, flat[0], data.y_train, flat[1], data.y_test)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
