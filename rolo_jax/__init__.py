"""rolo_jax: JAX/Flax reimplementations of recurrent visual object trackers.

Importing the package picks the JAX backend before JAX is imported anywhere else in the process:
if ``JAX_PLATFORMS`` is unset and the machine shows no NVIDIA device (``/dev/nvidia0``), it is set to
``cpu`` so a CUDA build of jaxlib on a CPU-only machine starts quietly instead of printing a CUDA
initialisation traceback.  Set ``JAX_PLATFORMS=cuda`` (or ``cpu``) yourself to choose explicitly.
"""
import os as _os

if "JAX_PLATFORMS" not in _os.environ and not _os.path.exists("/dev/nvidia0"):
  _os.environ["JAX_PLATFORMS"] = "cpu"

__version__ = "0.1.0"
