"""Reading records back and following files as they grow: logs, tracks, the plot."""
