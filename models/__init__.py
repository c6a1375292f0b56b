"""Scorers: clinical scores, the hybrid quantum model and the online River model."""
