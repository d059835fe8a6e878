"""The import kind: uploaded csv, xlsx and xlsb files read, validated and applied."""
