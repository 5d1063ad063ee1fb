"""SAE features of chat samples, their selection into sets, and feature cards (notebook 02)."""
