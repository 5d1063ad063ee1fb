"""One interface over the organism and real models, for notebooks 00 and 02-05."""
