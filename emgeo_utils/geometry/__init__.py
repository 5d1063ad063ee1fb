"""Decoder-direction geometry and the set tests of claim 2 (notebooks 03-04)."""
