"""What a notebook runs on besides the science: start-up, parameter checks, figures."""
