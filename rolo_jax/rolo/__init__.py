"""ROLO pipeline pieces that are neither a network nor a data reader: assigning detections to the
target (``rolo_jax.rolo.assign``)."""
