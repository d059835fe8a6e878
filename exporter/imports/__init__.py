"""Imports of uploaded workbooks. So far the readers: csv, xlsx and xlsb files read into rows."""
