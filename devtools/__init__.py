"""Developer tools around the app: the demo, the simulator, Azurite, a local host, fakes. Never deployed."""
