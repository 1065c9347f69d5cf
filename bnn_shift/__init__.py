"""Bayesian neural networks under covariate shift."""
