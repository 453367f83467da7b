"""Performance sweeps, max-sustainable-rate search, capacity planning."""
