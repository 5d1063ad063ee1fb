"""The model organism: its world, datasets, pretraining, SAEs, judge and EM measurement (notebook 00)."""
