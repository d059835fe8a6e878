"""The back-office pages: sign-in, each export type's list, and export tasks."""
