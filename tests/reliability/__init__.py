"""Faults against real Azurite: outages, throttling, racing owners, crashes, and a soak."""
