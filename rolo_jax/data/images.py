"""Image files: loading as RGB uint8 and ordering frame folders."""
from __future__ import annotations

import os
import re
from typing import Iterable, List

import numpy as np

from rolo_jax.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def natural_key(name: str):
  """Sort key that orders 'img2' before 'img10' (digit runs compare as numbers)."""
  return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", os.fspath(name))]


def list_images(folder: str | os.PathLike) -> List[str]:
  """Image files of `folder` in natural sort order; DataError if the folder is missing or empty."""
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise DataError(folder, "frame folder does not exist")
  names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
           and os.path.isfile(os.path.join(folder, n))]
  if not names:
    raise DataError(folder, f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
  return [os.path.join(folder, n) for n in sorted(names, key=natural_key)]


def load_image(path: str | os.PathLike) -> np.ndarray:
  """Reads an image as RGB uint8 [H, W, 3]. Grayscale, palette and RGBA images become 3-channel RGB.

  Raises DataError naming the file when it is missing or cannot be decoded.
  """
  from PIL import Image, UnidentifiedImageError

  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(path, "image file does not exist")
  try:
    with Image.open(path) as im:
      im.load()
      if im.mode != "RGB":
        im = im.convert("RGB")
      arr = np.asarray(im, dtype=np.uint8)
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise DataError(path, f"cannot decode image ({type(e).__name__}: {e})") from None
  if arr.ndim != 3 or arr.shape[2] != 3:
    raise DataError(path, f"expected an RGB image, decoded shape {arr.shape}")
  return arr


def image_size(path: str | os.PathLike) -> tuple[int, int]:
  """(width, height) of an image file without decoding its pixels."""
  from PIL import Image, UnidentifiedImageError

  path = os.fspath(path)
  try:
    with Image.open(path) as im:
      return im.size
  except FileNotFoundError:
    raise DataError(path, "image file does not exist") from None
  except (UnidentifiedImageError, OSError) as e:
    raise DataError(path, f"cannot read image header ({e})") from None
