"""`dreamlake plot`: series read from the files, thinned, drawn in the terminal or on one page."""
