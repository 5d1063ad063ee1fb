"""The report: running every notebook, the claims tables and snapshot, the report page, GPU estimates."""
