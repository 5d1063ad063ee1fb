"""Notebook start-up, claims, figures, running every notebook, GPU estimates."""
