"""Claims as data: the files that declare them (dated from git), the record each notebook fills, verdicts by kind."""
