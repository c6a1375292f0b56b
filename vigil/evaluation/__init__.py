"""Offline evaluation of every scorer on recorded ICU data, through the stream's features."""
