"""Every inference engine against an exactly known answer.

Problems (data float32 as the engines see them; exact answers in float64 from those data):
- Bayesian linear regression with known noise, five features: a nearly collinear pair (posterior
  correlation -0.89), two ordinary ones and an all-zero column (a "dead pixel"), whose posterior
  must equal its prior. Exact posterior N(mu, S); tempered (likelihood * prior)^(1/T) it is
  N(mu, T S), so the dead weight has sd sqrt(T) times the prior's.
- The same with an intercept and an EmpCov prior on the weights (`by_path`): a non-diagonal
  Gaussian prior, still conjugate; the dead weight keeps its tiny EmpCov prior variance eps.
- 3-class logistic regression: no closed form, so a long NumPyro NUTS run is the reference.
- A 2-parameter Gaussian where HMC runs at acceptance 0.5 and keep="accepted" (the paper's
  averaging of accepted states only) is measurably too wide.

Engines: hmc (fixed and "auto" step, tempered, EmpCov) and nuts against the exact posterior;
sgld / SGHMC against the exact stationary law of their discretised dynamics; mfvi against the
exact mean-field optimum; map_fit against the exact posterior mean (= mode).

Tolerances (exact_targets.py): Z = 5 Monte Carlo standard errors, each from the draws at their
measured effective sample size (ArviZ bulk ESS for means, the ESS of the squared deviations
for variances and of the products for the whole whitened covariance), plus an ESS floor and
R-hat <= 1.1 over several chains that start from prior draws. sgld and mfvi have no chain axis:
their model holds K independent copies of the regression (K outputs, identical targets, so the
posterior is a product of K identical factors and both engines update every copy separately),
which gives K independent chains (sgld) or K independent fits (mfvi, whose optimiser noise is
measured as the spread over the K fits: a t-test at the same false-alarm rate as 5 SE).
"""

from __future__ import annotations

import functools
import math

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS
from scipy import stats

from bnn_shift.inference import (
    Posterior,
    gaussian_likelihood,
    hmc,
    mala,
    map_fit,
    mfvi,
    nuts,
    sgld,
)
from bnn_shift.inference.mclmc import adjusted_mclmc, mclmc
from bnn_shift.inference.mile import mile
from bnn_shift.models import MLP
from bnn_shift.priors import EmpCov, Gaussian, Prior, by_path

from .exact_targets import (
    MIN_ESS,
    Report,
    Z,
    check_moments,
    copies_as_chains,
    flat_draws,
    gaussian_posterior,
    langevin_stationary_cov,
    mean_field_optimum,
    posterior_chains,
)

pytestmark = pytest.mark.slow  # statistical suite, minutes of sampling: the full tier

# --- the regression problem -------------------------------------------------------------------

N_DATA, N_FEATURES, DEAD = 40, 5, 4  # DEAD: the all-zero feature column
NOISE_STD, PRIOR_STD = 0.5, 1.0
LIKELIHOOD = gaussian_likelihood(NOISE_STD)
EMPCOV_EPS = 1e-3  # prior variance EmpCov gives the dead direction


def regression_data() -> tuple[np.ndarray, np.ndarray]:
    """x (40, 5): columns z0, z0 + 0.1 noise (nearly collinear), z1, z2, 0 (dead), all * 0.2;
    y = x w + N(0, 0.5^2)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(N_DATA, 3))
    near = z[:, 0] + 0.1 * rng.normal(size=N_DATA)
    x = 0.2 * np.column_stack([z[:, 0], near, z[:, 1], z[:, 2], np.zeros(N_DATA)])
    y = x @ np.array([1.0, -0.5, 0.8, -1.2, 0.7]) + NOISE_STD * rng.normal(size=N_DATA)
    return x.astype(np.float32), y.astype(np.float32)


def gaussian_prior_posterior(temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact (tempered) posterior of the weights under the Gaussian(PRIOR_STD) prior."""
    x, y = regression_data()
    return gaussian_posterior(x, y, NOISE_STD, np.eye(N_FEATURES) / PRIOR_STD**2, temperature)


def empcov_problem() -> tuple[Prior, np.ndarray, np.ndarray]:
    """-> (prior, exact mean, exact cov) for weights + intercept: weights ~ EmpCov (paper form,
    built from x), intercept ~ Gaussian(PRIOR_STD). The prior precision is the one the EmpCov
    density uses, V diag(1 / prior_var) V^T with its own (float32) eigenvectors."""
    x, y = regression_data()
    empcov = EmpCov.from_data(x, scale=PRIOR_STD, eps=EMPCOV_EPS)
    vecs = np.asarray(empcov.eigvecs, np.float64)
    precision = np.zeros((N_FEATURES + 1, N_FEATURES + 1))
    precision[:N_FEATURES, :N_FEATURES] = (vecs / np.asarray(empcov.prior_var, np.float64)) @ vecs.T
    precision[N_FEATURES, N_FEATURES] = 1 / PRIOR_STD**2
    features = np.column_stack([x, np.ones(N_DATA)])  # flat draw order: weight, then bias
    mean, cov = gaussian_posterior(features, y, NOISE_STD, precision)
    return by_path({"weight": empcov, "bias": Gaussian(PRIOR_STD)}), mean, cov


def linear_model(
    n_in: int = N_FEATURES,
    n_out: int = 1,
    *,
    use_bias: bool = False,
    prior: Prior | None = None,
    seed: int = 0,
) -> eqx.nn.Linear:
    """eqx.nn.Linear(n_in, n_out), its parameters a draw from `prior` when one is given."""
    model = eqx.nn.Linear(n_in, n_out, use_bias=use_bias, key=jax.random.key(seed))
    if prior is None:
        return model
    params, static = eqx.partition(model, eqx.is_inexact_array)
    return eqx.combine(prior.sample(jax.random.key(seed + 1), params), static)


def regression_problem(prior_kind: str) -> tuple[eqx.nn.Linear, Prior, np.ndarray, np.ndarray]:
    """(model, prior, exact mean, exact cov) of the regression under "gaussian" (weights only)
    or "empcov" (EmpCov weights and a Gaussian intercept)."""
    if prior_kind == "gaussian":
        return linear_model(), Gaussian(PRIOR_STD), *gaussian_prior_posterior()
    return linear_model(use_bias=True), *empcov_problem()


def assert_exact(report: Report) -> None:
    print(report)  # the measured numbers, in the captured output
    assert report.ok, report


def test_closed_forms_keep_the_dead_weight_at_its_prior():
    """The story in miniature: the dead weight's exact posterior is its prior, uncorrelated with
    the rest (times T when tempered); the collinear pair is strongly anti-correlated."""
    for temperature in (1.0, 0.25):
        _, cov = gaussian_prior_posterior(temperature)
        assert cov[DEAD, DEAD] == pytest.approx(temperature * PRIOR_STD**2, rel=1e-12)
        np.testing.assert_allclose(np.delete(cov[DEAD], DEAD), 0.0, atol=1e-15)
    _, cov = gaussian_prior_posterior()
    assert cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1]) < -0.85
    _, _, cov_empcov = empcov_problem()
    assert cov_empcov[DEAD, DEAD] == pytest.approx(EMPCOV_EPS, rel=1e-3)


def test_the_checker_passes_exact_draws_and_fails_10_percent_wider_ones():
    """iid draws (ESS ~ 8000): exact ones pass, against the closed form and against a reference
    sample; scaled by 1.1 about the mean (variances +21%, ~10 SE) they fail."""
    rng = np.random.default_rng(0)
    mean, cov = gaussian_prior_posterior()
    root = np.linalg.cholesky(cov)
    exact = mean + rng.normal(size=(8, 1000, N_FEATURES)) @ root.T
    reference = mean + rng.normal(size=(4, 2000, N_FEATURES)) @ root.T
    wide = mean + 1.1 * (exact - mean)
    for target in ({"mean": mean, "cov": cov}, {"reference": reference}):
        assert_exact(check_moments(exact, **target))
        report = check_moments(wide, **target)
        assert any("variances" in failure for failure in report.failures), report


# --- hmc and nuts against the exact posterior -------------------------------------------------

HMC_SETTINGS = {"n_chains": 16, "init": "prior", "likelihood": LIKELIHOOD, "progress": False}


def run_hmc(model, prior, x, y, **settings) -> Posterior:
    """hmc from prior draws (16 chains unless overridden) whose function-space R-hat <= 1.1."""
    post = hmc(model, prior, x, y, **(HMC_SETTINGS | settings))
    assert post.attrs["converged"], post.attrs["convergence"]
    return post


@pytest.mark.parametrize(
    ("step_size", "temperature", "seed"),
    [(0.1, 1.0, 1), ("auto", 1.0, 2), (0.05, 0.25, 3)],
    ids=["fixed-step", "auto-step", "tempered"],
)
def test_hmc_samples_the_exact_regression_posterior(step_size, temperature, seed):
    """Step 0.1 (0.05 at T = 0.25, where every sd halves) accepts ~97%, "auto" tunes to 0.8;
    16 chains x 500 kept iterations give ESS ~1600-3500."""
    x, y = regression_data()
    post = run_hmc(
        linear_model(),
        Gaussian(PRIOR_STD),
        x,
        y,
        step_size=step_size,
        temperature=temperature,
        n_iterations=600,  # one compiled block of 100 iterations, run 6 times
        n_burnin=100,
        seed=seed,
    )
    assert_exact(check_moments(posterior_chains(post), *gaussian_prior_posterior(temperature)))


def test_hmc_samples_the_exact_posterior_under_an_empcov_prior():
    """A non-diagonal prior, and hmc's metric from it (inverse mass = the EmpCov covariance /
    scale^2 for the weights); the dead weight's posterior is its EmpCov prior N(0, eps)."""
    x, y = regression_data()
    prior, mean, cov = empcov_problem()
    post = run_hmc(
        linear_model(use_bias=True),
        prior,
        x,
        y,
        step_size=0.05,
        n_iterations=600,
        n_burnin=100,
        seed=4,
    )
    assert_exact(check_moments(posterior_chains(post), mean, cov))


@pytest.mark.parametrize("prior_kind", ["gaussian", "empcov"])
def test_hmc_with_an_adapted_mass_matrix_samples_the_exact_posterior(prior_kind):
    """Stan's windows adapt a diagonal mass (on the prior-whitened coordinates) and the step
    over 200 burn-in iterations; the collinear pair makes the posterior far from isotropic."""
    x, y = regression_data()
    model, prior, mean, cov = regression_problem(prior_kind)
    post = run_hmc(
        model, prior, x, y, step_size=0.05, adapt_mass=True, n_iterations=700, n_burnin=200,
        seed=12,
    )  # fmt: skip
    assert "mass_adaptation" in post.attrs
    assert_exact(check_moments(posterior_chains(post), mean, cov))


def test_hmc_with_an_adapted_step_samples_the_exact_posterior():
    """The estimators' burn-in: dual averaging of the step alone, with the MH test on; the
    leapfrog count is capped as the estimators cap it."""
    x, y = regression_data()
    model, prior, mean, cov = regression_problem("gaussian")
    post = run_hmc(
        model, prior, x, y, step_size=0.2, adapt_step=True, max_leapfrogs=256,
        n_iterations=600, n_burnin=100, seed=13,
    )  # fmt: skip
    assert "step_adaptation" in post.attrs and post.attrs["step_size"] != 0.2  # it adapted
    assert_exact(check_moments(posterior_chains(post), mean, cov))


def test_hmc_with_the_empcov_layer_whitened_samples_the_exact_posterior():
    """The same problem on a bnn_shift MLP with no hidden layer, whose first layer hmc samples
    in whitened coordinates with the inputs rotated once (whitening.py)."""
    x, y = regression_data()
    empcov, mean, cov = empcov_problem()
    model = MLP(N_FEATURES, (), 1, key=jax.random.key(0))
    prior = by_path({"layers.0.weight": empcov.priors[0], "layers.0.bias": Gaussian(PRIOR_STD)})
    post = run_hmc(model, prior, x, y, step_size=0.05, n_iterations=600, n_burnin=100, seed=11)
    assert post.attrs["whitened_first_layer"]
    assert_exact(check_moments(posterior_chains(post), mean, cov))


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_nuts_samples_the_exact_regression_posterior(temperature):
    """nuts starts every chain at the model's parameters: a prior draw here."""
    x, y = regression_data()
    post = nuts(
        linear_model(prior=Gaussian(PRIOR_STD)),
        Gaussian(PRIOR_STD),
        x,
        y,
        n_warmup=300,
        n_samples=800,
        n_chains=3,
        temperature=temperature,
        seed=5,
        likelihood=LIKELIHOOD,
        progress=False,
    )
    assert_exact(check_moments(posterior_chains(post), *gaussian_prior_posterior(temperature)))


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_mala_samples_the_exact_regression_posterior(temperature):
    """The engine added through the architecture recipe, in the same driver: 16 chains from
    prior draws, the step tuned to MALA's 0.574 acceptance."""
    x, y = regression_data()
    post = mala(
        linear_model(),
        Gaussian(PRIOR_STD),
        x,
        y,
        temperature=temperature,
        n_iterations=3000,
        n_burnin=500,
        seed=6,
        **HMC_SETTINGS,
    )
    assert post.attrs["converged"], post.attrs["convergence"]
    assert_exact(check_moments(posterior_chains(post), *gaussian_prior_posterior(temperature)))


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_mclmc_samples_the_exact_regression_posterior(temperature):
    """Unadjusted MCLMC, tuned by BlackJAX (step from the energy error, L, diagonal mass): its
    discretisation bias at the tuned energy error is below the Monte Carlo error here."""
    x, y = regression_data()
    post = mclmc(
        linear_model(), Gaussian(PRIOR_STD), x, y,
        temperature=temperature, n_iterations=1200, n_burnin=200, seed=7, **HMC_SETTINGS,
    )  # fmt: skip
    assert post.attrs["converged"], post.attrs["convergence"]
    assert_exact(check_moments(posterior_chains(post), *gaussian_prior_posterior(temperature)))


def test_mclmc_samples_the_exact_posterior_under_an_empcov_prior():
    """MCLMC in the EmpCov-whitened coordinates (the dead weight's prior sd is sqrt(eps))."""
    x, y = regression_data()
    prior, mean, cov = empcov_problem()
    post = mclmc(
        linear_model(use_bias=True), prior, x, y,
        n_iterations=1200, n_burnin=200, seed=8, **HMC_SETTINGS,
    )  # fmt: skip
    assert post.attrs["converged"], post.attrs["convergence"]
    assert_exact(check_moments(posterior_chains(post), mean, cov))


def test_mile_samples_the_exact_regression_posterior():
    """MILE: 16 chains from the members of a deep ensemble (all at the posterior mode here)."""
    x, y = regression_data()
    settings = {k: v for k, v in HMC_SETTINGS.items() if k not in ("n_chains", "init")}
    post = mile(
        linear_model(), Gaussian(PRIOR_STD), x, y,
        n_members=16, n_iterations=1200, n_burnin=200, seed=10, **settings,
    )  # fmt: skip
    assert post.attrs["converged"], post.attrs["convergence"]
    assert_exact(check_moments(posterior_chains(post), *gaussian_prior_posterior()))


@pytest.mark.parametrize("prior_kind", ["gaussian", "empcov"])
def test_adjusted_mclmc_samples_the_exact_posterior(prior_kind):
    """Metropolis-adjusted MCLMC is exact at any step: Gaussian and EmpCov priors."""
    x, y = regression_data()
    model, prior, mean, cov = regression_problem(prior_kind)
    post = adjusted_mclmc(
        model, prior, x, y, n_iterations=700, n_burnin=100, seed=9, **HMC_SETTINGS
    )
    assert post.attrs["converged"], post.attrs["convergence"]
    assert_exact(check_moments(posterior_chains(post), mean, cov))


# --- sgld / SGHMC against the stationary law of their discretised dynamics --------------------

N_COPIES = 32


def copies_data(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets for a model with N_COPIES outputs: every output row sees the same regression."""
    return x, np.repeat(y[:, None], N_COPIES, axis=1)


@pytest.mark.parametrize(
    ("momentum", "temperature", "eta_lambda_max"),
    [(0.0, 1.0, 1.5), (0.9, 0.5, 1.0)],
    ids=["sgld", "sghmc"],
)
def test_sgld_samples_its_exact_stationary_law(momentum, temperature, eta_lambda_max):
    """Full batch, so each epoch is one exact-gradient step with Langevin step eta = lr / n:
    a linear Gaussian chain whose stationary law is N(mu, Sigma_eta) (`langevin_stationary_cov`).
    The coarse steps (eta * lambda_max = 1.5 for SGLD) make Sigma_eta far from T S (4x in the
    stiffest direction): the draws must match Sigma_eta and must not match the posterior."""
    x, y = regression_data()
    mean, cov = gaussian_prior_posterior()
    precision = np.linalg.inv(cov)
    eta = eta_lambda_max / np.linalg.eigvalsh(precision).max()
    stationary = langevin_stationary_cov(precision, eta, momentum, temperature)
    if momentum == 0:  # the known closed form for SGLD
        exact = temperature * np.linalg.inv(precision - eta * precision @ precision / 2)
        np.testing.assert_allclose(stationary, exact, rtol=1e-9, atol=1e-12)
    post = sgld(
        linear_model(n_out=N_COPIES, prior=Gaussian(PRIOR_STD), seed=6),
        Gaussian(PRIOR_STD),
        *copies_data(x, y),
        learning_rate=eta * N_DATA,
        n_epochs=2300,
        batch_size=None,
        n_burnin_epochs=300,  # the slowest direction forgets its start by a factor < 1e-6
        momentum=momentum,
        temperature=temperature,
        seed=7,
        likelihood=LIKELIHOOD,
        progress=False,
    )
    chains = copies_as_chains(post.draws.weight)  # (N_COPIES, 2000, 5)
    assert_exact(check_moments(chains, mean, stationary))
    assert not check_moments(chains, mean, temperature * cov).ok


# --- mfvi against the exact mean-field optimum ------------------------------------------------


@functools.cache
def mfvi_fit(temperature: float, n_epochs: int = 2000) -> Posterior:
    """mfvi on N_COPIES copies of the regression: K independent fits in one run."""
    x, y = regression_data()
    return mfvi(
        linear_model(n_out=N_COPIES, prior=Gaussian(PRIOR_STD), seed=8),
        Gaussian(PRIOR_STD),
        *copies_data(x, y),
        n_epochs=n_epochs,
        learning_rate=0.03,
        temperature=temperature,
        seed=9,
        likelihood=LIKELIHOOD,
        progress=False,
    )


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_mfvi_finds_the_exact_mean_field_optimum(temperature):
    """For N(mu, T S) the mean-field optimum is N(mu, diag T / diag(S^-1)): variances 5x below
    the marginal ones for the collinear pair, and exactly the (tempered) prior for the dead
    weight. q's mean and sd (post.variational) are compared directly, so their only error is
    optimiser noise (one-sample gradients): each of the K = 32 independent fits gives errors
    (mean - mu) / sd* and sd / sd* - 1 (sd* the optimum's sd), and their average over the fits
    must be within t_{K-1} standard errors (the spread over the fits / sqrt K) of 0, the t
    quantile at the false-alarm rate of 5 normal SE."""
    mean, cov = gaussian_prior_posterior(temperature)
    _, var_mf = mean_field_optimum(mean, cov)
    assert var_mf[DEAD] == pytest.approx(temperature * PRIOR_STD**2)
    assert np.all(var_mf[:2] < 0.25 * np.diag(cov)[:2])
    post = mfvi_fit(temperature)
    sd = np.sqrt(var_mf)
    q_mean = np.asarray(post.variational["mean"].weight, np.float64)  # (K, 5): K fits
    q_std = np.asarray(post.variational["std"].weight, np.float64)
    errors = np.concatenate([(q_mean - mean) / sd, q_std / sd - 1], axis=1)  # (K, 10)
    t = errors.mean(0) / (errors.std(0, ddof=1) / math.sqrt(N_COPIES))
    critical = stats.t.isf(stats.norm.sf(Z), N_COPIES - 1)
    print("t over the fits", np.round(t, 2), "critical", round(critical, 2))
    assert np.all(np.abs(t) < critical), (np.round(t, 2), critical)


def test_mfvi_labels_a_fit_at_the_optimum_converged():
    """A fit at the exact optimum (t <= 2.3 above; 160 parameters) reads converged: the check
    measures q's drift against its own sds, which optimiser jitter around the optimum keeps
    small however many parameters there are."""
    post = mfvi_fit(0.25, n_epochs=4000)
    assert post.attrs["elbo_converged"], post.attrs


# --- map_fit: the mode of a Gaussian posterior is its mean ------------------------------------


@pytest.mark.parametrize("prior_kind", ["gaussian", "empcov"])
def test_map_fit_finds_the_exact_posterior_mean(prior_kind):
    """Tolerance 1e-4 posterior sds (Mahalanobis): float32 round-off of the loss gradient limits
    any optimiser to ~1e-6 here; the rest is Adam's cosine-decayed tail, two orders of magnitude
    below every Monte Carlo tolerance of this file."""
    x, y = regression_data()
    if prior_kind == "gaussian":
        prior, use_bias, (mean, cov) = Gaussian(PRIOR_STD), False, gaussian_prior_posterior()
    else:
        (prior, mean, cov), use_bias = empcov_problem(), True
    post = map_fit(
        linear_model(use_bias=use_bias, prior=prior, seed=10),
        prior,
        x,
        y,
        n_epochs=2000,
        learning_rate=0.05,
        likelihood=LIKELIHOOD,
        progress=False,
    )
    error = flat_draws(post.draws)[0] - mean
    distance = math.sqrt(error @ np.linalg.solve(cov, error))  # in posterior sds
    print("MAP - exact mean:", distance, "posterior sds")
    assert distance < 1e-4, error


# --- logistic regression against NumPyro NUTS -------------------------------------------------

N_CLASSES, LOGIT_FEATURES = 3, 2


@pytest.fixture(scope="module")
def logistic_problem():
    """(x (60, 2), y (60,), reference draws (4, 2000, 9)): NumPyro NUTS on W (3, 2) and b (3,)
    with N(0, 1) priors; its draws are flattened like the engines' (weight, then bias)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, LOGIT_FEATURES)).astype(np.float32)
    logits = x @ np.array([[1.5, 0.0], [-0.5, 1.2], [-1.0, -1.2]]).T + np.array([0.3, 0, -0.3])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(N_CLASSES, p=p) for p in probs], np.int32)

    def model(x, y):
        w = numpyro.sample(
            "w", dist.Normal(0, PRIOR_STD).expand([N_CLASSES, LOGIT_FEATURES]).to_event(2)
        )
        b = numpyro.sample("b", dist.Normal(0, PRIOR_STD).expand([N_CLASSES]).to_event(1))
        numpyro.sample("y", dist.Categorical(logits=x @ w.T + b), obs=y)

    mcmc = MCMC(
        NUTS(model),
        num_warmup=300,
        num_samples=2000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), jnp.asarray(x), jnp.asarray(y))
    s = mcmc.get_samples(group_by_chain=True)
    reference = np.concatenate(
        [np.asarray(s["w"]).reshape(4, 2000, -1), np.asarray(s["b"])], axis=-1
    ).astype(np.float64)
    assert np.min(az.ess(reference, chain_axis=0, draw_axis=1)) > 4 * MIN_ESS
    assert np.max(az.rhat(reference, chain_axis=0, draw_axis=1)) < 1.01
    return x, y, reference


@pytest.mark.parametrize("engine", ["hmc", "hmc_adapted", "nuts", "mclmc", "adjusted_mclmc"])
def test_logistic_regression_matches_numpyro(logistic_problem, engine):
    """Adding one vector to every class's (weights, bias) leaves the softmax unchanged: along
    those 3 directions the likelihood is flat and the posterior is the prior, dead directions
    that no input creates. Differences allowed: 5 SE of the engine's and NumPyro's together."""
    x, y, reference = logistic_problem
    prior = Gaussian(PRIOR_STD)
    model = linear_model(LOGIT_FEATURES, N_CLASSES, use_bias=True, prior=prior, seed=11)
    if engine == "hmc":
        post = run_hmc(
            model,
            prior,
            x,
            y,
            step_size=0.2,
            n_iterations=600,
            n_burnin=100,
            seed=13,
            likelihood="categorical",
        )
    elif engine == "hmc_adapted":
        post = run_hmc(
            model, prior, x, y, step_size=0.2, adapt_mass=True, n_iterations=700, n_burnin=200,
            seed=15, likelihood="categorical",
        )  # fmt: skip
    elif engine == "nuts":
        post = nuts(
            model, prior, x, y, n_warmup=300, n_samples=800, n_chains=3, seed=14, progress=False
        )
    else:
        fit = mclmc if engine == "mclmc" else adjusted_mclmc
        settings = HMC_SETTINGS | {"likelihood": "categorical"}
        post = fit(model, prior, x, y, n_iterations=900, n_burnin=100, seed=16, **settings)
        assert post.attrs["converged"], post.attrs["convergence"]
    assert_exact(check_moments(posterior_chains(post), reference=reference))


# --- acceptance 0.5: every state counts, and keep="accepted" is caught -------------------------

KEEP_STEP = 0.21  # h omega_max = 1.83: with the +-20% jitter ~20% of trajectories are unstable
KEEP_BURNIN, KEEP_WARMUP = 10, 300  # the default MH-free burn-in, then discarded MH iterations


def two_parameter_problem() -> tuple[np.ndarray, ...]:
    """y = x w + N(0, 0.5^2), w ~ N(0, I) in 2-d: posterior sds 0.43 and 0.12."""
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(20, 2)) * np.array([0.3, 1.0])).astype(np.float32)
    y = (x @ np.array([1.0, -1.0]) + NOISE_STD * rng.normal(size=20)).astype(np.float32)
    return x, y, *gaussian_posterior(x, y, NOISE_STD, np.eye(2) / PRIOR_STD**2)


def test_hmc_counts_rejections_and_the_check_catches_keep_accepted():
    """At acceptance 0.5 averaging accepted states only (the paper's code) weights each state by
    its chance of being left: too wide in the stiff direction. Same seed, so the same chain;
    only the states averaged differ. 64 chains x 1990 iterations: ESS ~1e4, so the variance
    is resolved to ~1.5% (1 SE). The MH-free burn-in at a step this close to the stability
    limit over-disperses the stiff direction (variance x1.25 over the next 250 iterations; x1.8
    after 100 burn-in iterations), so the first MH iterations are discarded as warm-up."""
    x, y, mean, cov = two_parameter_problem()
    reports = {}
    for keep in ("all", "accepted"):
        post = run_hmc(
            linear_model(2, 1),
            Gaussian(PRIOR_STD),
            x,
            y,
            step_size=KEEP_STEP,
            n_iterations=KEEP_BURNIN + KEEP_WARMUP + 1990,  # 23 blocks of 100
            n_burnin=KEEP_BURNIN,
            n_chains=64,
            seed=15,
            keep=keep,
        )
        assert 0.45 < post.stats["acceptance_rate"][KEEP_BURNIN:].mean() < 0.55
        reports[keep] = check_moments(posterior_chains(post, warmup=KEEP_WARMUP), mean, cov)
    assert_exact(reports["all"])
    accepted = reports["accepted"]
    print("keep='accepted':", accepted)
    assert any("variances" in failure for failure in accepted.failures), accepted
    assert accepted.sd_ratio.max() > 1.02, accepted
