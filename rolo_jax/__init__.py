"""rolo_jax: JAX/Flax reimplementations of recurrent visual object trackers.

Importing the package picks the JAX backend before JAX is imported anywhere else in the process:
if ``JAX_PLATFORMS`` is unset and the machine shows no NVIDIA device (``/dev/nvidia0``), it is set to
``cpu`` so a CUDA build of jaxlib on a CPU-only machine starts quietly instead of printing a CUDA
initialisation traceback.  Set ``JAX_PLATFORMS=cuda`` (or ``cpu``) yourself to choose explicitly.

It also sets glibc's allocator to keep freed memory mapped (`rolo_jax._malloc`: XLA:CPU steps were
spending a quarter to a third of their CPU time on page faults; the default Re3
training 1.1x faster overall, 1.4x in its first stage).
``ROLO_JAX_MALLOC=default`` in the environment keeps glibc's own settings.

And it keeps XLA:CPU's convolutions off YNNPACK (`rolo_jax._xla`: jaxlib 0.10.2 and later 0.10
releases only; conv1's weight gradient in Re3's training ran ~3x slower there). ``ROLO_JAX_XLA=default`` keeps jaxlib's choice.
"""
import os as _os

if "JAX_PLATFORMS" not in _os.environ and not _os.path.exists("/dev/nvidia0"):
  _os.environ["JAX_PLATFORMS"] = "cpu"

from rolo_jax import _malloc as _malloc_settings
from rolo_jax import _xla as _xla_settings

_malloc_settings.tune()
_xla_settings.tune()

__version__ = "0.1.0"
