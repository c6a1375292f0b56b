"""Alert decisions, lifecycle and publishing."""
