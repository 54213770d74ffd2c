"""Winnow's engine: load, embed, value, select, fine-tune and export labelled text data.

Importable without Streamlit; every step also has a CLI sub-command (`python -m core --help`).
"""
from __future__ import annotations

__version__ = "0.1.0"
