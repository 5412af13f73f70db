"""Built-in analogs of the SUPERB task datasets, each in its real dataset's layout."""
