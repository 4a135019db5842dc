"""Dashboard templates and static files (the package jubako.web when installed)."""
