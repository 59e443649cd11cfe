"""Test-wide set-up: import rolo_jax first so its backend choice (CPU when no NVIDIA device is
present) happens before any test module imports jax."""
import rolo_jax  # noqa: F401
