"""c10k: an echo endpoint and the testecho load client."""
