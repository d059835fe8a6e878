"""File writers: each turns the rows of one export into one file on disk."""
