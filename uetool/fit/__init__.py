"""Thurstonian fits beyond the core's local L-BFGS: the torch objective (`torch_fit`), the Ray Train data-parallel
fit (`ray_train`) and bootstrap replicates spread over Ray tasks (`bootstrap`). Torch and Ray load only here."""
