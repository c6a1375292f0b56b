"""Replay of recorded ICU data (PhysioNet 2019 and 2012) into the vitals topic."""
