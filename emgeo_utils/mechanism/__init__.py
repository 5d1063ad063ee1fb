"""Notebook 06: does fine-tuning move SAE features in proportion to their geometry?"""
