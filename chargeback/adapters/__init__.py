"""Adapters: the only modules that import Azure SDKs; each implements a small core interface."""
