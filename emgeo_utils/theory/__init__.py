"""The superposition identity checked exactly and in toy models (notebook 01)."""
