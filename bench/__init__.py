"""``make bench``: ceilings, exports through the real API and worker, concurrency, API load."""
