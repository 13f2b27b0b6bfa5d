"""The HTTP edge: public API, selection engine, cache, rate limit and the process container."""
