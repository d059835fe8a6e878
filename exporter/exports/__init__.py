"""The export kind: handler registry, SQL shaping, snapshots, formats, parallel encoding."""
