"""`dreamlake bench`: the benchmark scenarios and the loggers they compare."""
