"""Shared fixtures: loopback servers, the simulator, the proxy under uvicorn."""
