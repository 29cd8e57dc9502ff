"""The shared core: domain rules (pure) and the Redis store both wings use. Imports neither wing."""
