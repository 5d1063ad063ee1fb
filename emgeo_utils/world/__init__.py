"""The synthetic world the organism is trained on, and its rendering in English for a pretrained model."""
