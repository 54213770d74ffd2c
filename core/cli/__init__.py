"""CLI sub-commands, one module per area; `core/__main__.py` registers them."""
