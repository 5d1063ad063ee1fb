"""LoRA fine-tuning on chat samples (notebooks 00, 04, 05)."""
