"""Tests for bnn_shift.priors.EmpCov: covariance alpha*Sigma + eps*I built from input data."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from threadpoolctl import threadpool_limits

from bnn_shift.priors import EmpCov, Gaussian, input_covariance

D = 6
EPS = 1e-6
ALPHA = 0.05


def synthetic_inputs(n: int = 400, seed: int = 0) -> np.ndarray:
    """(n, 6): x2 = x0 + x1 (a planted linear dependency), x5 constant (a dead feature)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, D))
    x[:, 0] = rng.normal(0, 1.0, n)
    x[:, 1] = 0.5 * x[:, 0] + rng.normal(0, 0.7, n)
    x[:, 2] = x[:, 0] + x[:, 1]
    x[:, 3] = rng.normal(1.0, 2.0, n)
    x[:, 4] = rng.normal(0, 0.3, n)
    x[:, 5] = -0.4242  # a dead pixel: the same value in every example
    return x


# unit vectors of the two null directions of the synthetic inputs
U_DEAD = np.eye(D)[5]
U_DEP = np.array([1.0, 1.0, -1.0, 0, 0, 0]) / math.sqrt(3)


def prior_cov(prior: EmpCov) -> np.ndarray:
    """The prior covariance V diag(prior_var) V^T in float64, from what the prior stores."""
    vecs = np.asarray(prior.eigvecs, np.float64)
    return (vecs * np.asarray(prior.prior_var, np.float64)) @ vecs.T


@pytest.fixture(scope="module")
def x_syn() -> np.ndarray:
    return synthetic_inputs()


@pytest.fixture(scope="module")
def emp(x_syn) -> EmpCov:
    return EmpCov.from_data(x_syn, alpha=ALPHA, eps=EPS)


def test_input_covariance_matches_numpy(x_syn):
    np.testing.assert_allclose(input_covariance(x_syn), np.cov(x_syn, rowvar=False), atol=1e-12)
    images = x_syn.reshape(len(x_syn), 2, 3, 1)  # flattened before the covariance
    np.testing.assert_allclose(input_covariance(images), input_covariance(x_syn))


def test_prior_covariance_is_symmetric_positive_definite(emp):
    cov = prior_cov(emp)
    np.testing.assert_allclose(cov, cov.T, atol=1e-12)
    eig = np.linalg.eigvalsh(0.5 * (cov + cov.T))
    assert eig.min() > 0
    # the smallest prior variance is eps (the two null directions), up to float32 storage
    assert eig.min() == pytest.approx(EPS, rel=1e-4)


def test_prior_covariance_is_alpha_sigma_plus_eps(emp, x_syn):
    expected = ALPHA * np.cov(x_syn, rowvar=False) + EPS * np.eye(D)
    # eigenvectors and variances are stored in float32 (relative spacing 2^-24 = 6e-8); summing
    # d = 6 such terms bounds the reconstruction error by ~4e-7 of the largest entry
    np.testing.assert_allclose(prior_cov(emp), expected, rtol=0, atol=1e-6 * expected.max())


@pytest.mark.parametrize("u", [U_DEAD, U_DEP], ids=["dead feature", "x2 = x0 + x1"])
def test_null_directions_get_variance_eps(emp, u):
    # Sigma u = 0, so u^T C u = alpha * 0 + eps * |u|^2 = eps
    assert u @ prior_cov(emp) @ u == pytest.approx(EPS, rel=1e-4)


def test_data_directions_get_alpha_lambda_plus_eps(emp, x_syn):
    lam, vecs = np.linalg.eigh(np.cov(x_syn, rowvar=False))
    cov = prior_cov(emp)
    for k in range(D):
        v = vecs[:, k]
        assert v @ cov @ v == pytest.approx(ALPHA * max(lam[k], 0) + EPS, rel=1e-4, abs=1e-10)
    assert np.sum(lam > 1e-9) == 4  # the test data really have two null directions


def test_alpha_none_matches_mean_prior_variance_to_scale(x_syn):
    prior = EmpCov.from_data(x_syn, scale=0.1)
    assert np.mean(np.asarray(prior.prior_var, np.float64)) == pytest.approx(0.01, rel=1e-6)
    assert prior.scale == pytest.approx(0.1, rel=1e-6)
    # alpha = (scale^2 - eps) / mean input variance
    expected_alpha = (0.01 - 1e-8) / np.mean(np.var(x_syn, axis=0, ddof=1))
    assert prior.alpha == pytest.approx(expected_alpha, rel=1e-12)


def test_log_prob_matches_scipy_multivariate_normal(emp, x_syn):
    rng = np.random.default_rng(1)
    cov = ALPHA * np.cov(x_syn, rowvar=False) + EPS * np.eye(D)  # float64 reference
    # rows drawn from the prior itself (so the null-direction components are ~sqrt(eps)),
    # rounded to float32 as the model stores them
    w = rng.multivariate_normal(np.zeros(D), cov, size=5).astype(np.float32)
    expected = scipy.stats.multivariate_normal(np.zeros(D), cov).logpdf(w.astype(np.float64))
    got = float(emp.log_prob({"layers.0.weight": jnp.asarray(w)}))
    # Each row's log density is O(10). The whitened coordinate along a null direction is
    # (w . u)/sqrt(eps); float32 rounding of w and of the eigenvectors (~6e-8 relative on
    # |w| ~ 0.7) moves it by ~0.7*6e-8*sqrt(6)/1e-3 ~ 1e-4, so z^2/2 moves by ~1e-4 per row.
    assert got == pytest.approx(expected.sum(), abs=5e-3)


def test_log_prob_diff_matches_difference(emp):
    key_a, key_b = jax.random.split(jax.random.key(3))
    like = jnp.zeros((4, D))
    a, b = emp.sample(key_a, like), emp.sample(key_b, like)

    @jax.jit
    def values(a, b):
        return emp.log_prob_diff([a], [b]), emp.log_prob(a) - emp.log_prob(b)

    diff, naive = (float(v) for v in values(a, b))
    precision = np.linalg.inv(prior_cov(emp))
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    truth = -0.5 * (np.sum((a64 @ precision) * a64) - np.sum((b64 @ precision) * b64))
    # per row, the whitened null-direction coordinate carries float32 error ~1e-4 (see above)
    assert diff == pytest.approx(truth, abs=1e-3)
    assert diff == pytest.approx(naive, abs=1e-3)


def test_samples_have_covariance_c(emp):
    n = 20_000
    draws = emp.sample(jax.random.key(0), {"w": jnp.zeros((n, D), jnp.float32)})["w"]
    assert draws.dtype == jnp.float32
    w = np.asarray(draws, np.float64)
    cov = prior_cov(emp)
    sample_cov = w.T @ w / n  # the mean is known to be 0
    # For zero-mean Gaussian rows, Var[(w_i w_j)] = C_ii C_jj + C_ij^2, so each entry of the
    # sample covariance has standard error sqrt((C_ii C_jj + C_ij^2) / n); allow 5 of them.
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(sample_cov - cov) < 5 * se)
    # along the null directions the draws have variance eps (SE eps*sqrt(2/n))
    for u in (U_DEAD, U_DEP):
        assert np.var(w @ u) == pytest.approx(EPS, abs=5 * EPS * math.sqrt(2 / n))


def test_std_along_data_directions_is_ordered(emp):
    data_std, prior_std = emp.std_along_data_directions()
    assert data_std.shape == prior_std.shape == (D,)
    assert np.all(np.diff(data_std) <= 0)  # largest first
    assert np.all(np.diff(prior_std) <= 1e-12)  # prior std increases with data std
    np.testing.assert_allclose(prior_std, np.sqrt(ALPHA * data_std**2 + EPS), rtol=1e-6)
    assert prior_std[-1] == pytest.approx(math.sqrt(EPS), rel=1e-4)


def test_describe_mentions_null_directions(emp):
    text = emp.describe()
    assert "2 null directions" in text
    assert "d=6" in text


def test_preconditioner_factors_are_inverse_square_roots(emp):
    (factor,) = emp.preconditioner({"w": jnp.zeros((3, D))})
    a = np.asarray(factor.sqrt_inv_mass, np.float64)
    m = np.asarray(factor.sqrt_mass, np.float64)
    np.testing.assert_allclose(a, a.T, atol=1e-7)
    np.testing.assert_allclose(a @ m, np.eye(D), atol=1e-3)
    # inverse mass A A = prior covariance / scale^2
    target = prior_cov(emp) / emp.scale**2
    np.testing.assert_allclose(a @ a, target, rtol=0, atol=1e-6 * np.abs(target).max())


@pytest.mark.parametrize(
    "data",
    [
        np.array([[1.0, 2.0], [np.nan, 0.0], [0.0, 1.0]]),
        np.array([[1.0, np.inf], [0.0, 0.0]]),
    ],
    ids=["nan", "inf"],
)
def test_non_finite_data_raise(data):
    with pytest.raises(ValueError, match="NaN or inf"):
        EmpCov.from_data(data)


def test_fewer_than_two_rows_raise():
    with pytest.raises(ValueError, match="at least 2"):
        EmpCov.from_data(np.ones((1, 4)))


@pytest.mark.parametrize("eps", [0.0, -1e-8, float("nan")])
def test_bad_eps_raise(x_syn, eps):
    with pytest.raises(ValueError, match="eps"):
        EmpCov.from_data(x_syn, alpha=0.1, eps=eps)


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("inf")])
def test_bad_alpha_raise(x_syn, alpha):
    with pytest.raises(ValueError, match="alpha"):
        EmpCov.from_data(x_syn, alpha=alpha)


def test_constant_data_cannot_match_scale():
    with pytest.raises(ValueError, match="no variance"):
        EmpCov.from_data(np.ones((5, 3)), scale=0.1)


@pytest.mark.parametrize("shape", [(4, D + 1), (D, 4), ()])
def test_wrong_parameter_shape_raise(emp, shape):
    bad = {"w": jnp.zeros(shape)}
    with pytest.raises(ValueError, match=rf"rows of shape \({D},\)"):
        emp.log_prob(bad)
    with pytest.raises(ValueError, match=rf"rows of shape \({D},\)"):
        emp.sample(jax.random.key(0), bad)
    with pytest.raises(ValueError, match=rf"rows of shape \({D},\)"):
        emp.preconditioner(bad)


# --- real MNIST -------------------------------------------------------------------------------

_SHARED_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def mnist_subset():
    from bnn_shift.data import load_mnist
    from bnn_shift.data.mnist import local_mnist_dir

    directory = local_mnist_dir(_SHARED_MNIST)  # or $BNN_SHIFT_MNIST_DIR, or the cache
    if directory is None:
        pytest.skip(f"no MNIST copy: set BNN_SHIFT_MNIST_DIR or provide {_SHARED_MNIST}")
    data = load_mnist(directory, download=False, progress=False).subset(2000, 100, seed=0)
    return data.flat("train")


@pytest.fixture
def one_blas_thread():
    # 784 x 784 eigendecompositions: multithreaded BLAS slows down 10x when the cores are shared
    with threadpool_limits(1):
        yield


@pytest.mark.usefixtures("one_blas_thread")
def test_mnist_dead_pixels_get_prior_std_sqrt_eps(mnist_subset):
    x = mnist_subset  # (2000, 784) normalised
    dead = np.flatnonzero(np.ptp(x, axis=0) == 0)
    assert len(dead) >= 50  # the border pixels (77 over the full training set)
    scale, eps = 0.1, 1e-10  # eps = the reference code's jitter
    prior = EmpCov.from_data(x, scale=scale, eps=eps)
    cov = prior_cov(prior)
    # each dead pixel i is a null direction e_i: prior variance e_i^T C e_i = eps
    dead_std = np.sqrt(np.diag(cov)[dead])
    np.testing.assert_allclose(dead_std, math.sqrt(eps), rtol=1e-3)
    assert np.all(dead_std < 1e-3 * Gaussian(scale).scale)
    # ... and a draw has (nearly) no weight on them, against ~scale on a live pixel
    w = np.asarray(prior.sample(jax.random.key(0), jnp.zeros((256, 784)))).astype(np.float64)
    assert np.abs(w[:, dead]).max() < 10 * math.sqrt(eps)
    assert np.abs(w).max() > 100 * math.sqrt(eps)
    eig = np.linalg.eigvalsh(0.5 * (cov + cov.T))
    assert eig.min() > 0
    assert "null directions" in prior.describe()


_PRIOR_DIGEST = """
import hashlib, sys
import numpy as np
from bnn_shift.priors import EmpCov
prior = EmpCov.from_data(np.load(sys.argv[1]))
arrays = (prior.eigvecs, prior.prior_var, prior.data_var)
print(hashlib.sha256(b"".join(np.asarray(a).tobytes() for a in arrays)).hexdigest())
"""


def test_mnist_prior_is_bit_identical_for_any_blas_thread_count(mnist_subset, tmp_path):
    # multithreaded LAPACK changes eigh's last bits, which an HMC chain amplifies into other draws
    inputs = tmp_path / "x.npy"
    np.save(inputs, mnist_subset)
    digests = set()
    for threads in ("1", "2"):
        env = os.environ | {"OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        run = subprocess.run(
            [sys.executable, "-c", _PRIOR_DIGEST, str(inputs)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        digests.add(run.stdout.strip())
    assert len(digests) == 1
