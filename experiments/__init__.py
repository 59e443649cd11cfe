"""Experiments: thin configs + calls into rolo_jax. Importing rolo_jax first lets it choose the
JAX backend (CPU when no NVIDIA device is present) before any experiment imports jax."""
import rolo_jax  # noqa: F401
