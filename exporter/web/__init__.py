"""The back-office pages: sign-in, accounts, roles and export tasks, served by the API's app."""
