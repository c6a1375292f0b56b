"""Ingest side of Vigil: wire records, validation at the door, event-time windows, the one
feature function, the faust app and its agents, and the replay of recorded ICU data."""
