"""Claims as data: the pre-registration files, the record each notebook fills, verdicts by kind."""
