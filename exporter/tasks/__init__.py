"""The task lifecycle, whatever the kind of work: store, queue, run, sweep, expire."""
