"""The `dreamlake` command."""
