"""Scoring and filtering fine-tuning data by geometry, potency, and the screening command (notebook 05)."""
