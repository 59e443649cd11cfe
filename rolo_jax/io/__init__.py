"""Readers and writers for foreign file formats (PyTorch ``.pth`` state_dicts)."""
