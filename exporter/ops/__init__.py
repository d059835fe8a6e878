"""Running the service: app and worker assembly, serving, migrations, seed, dev stack, logs."""
