"""Load generation: Locust profiles (own process), rate-driven open-loop load, the client-side prober."""
