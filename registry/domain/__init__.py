"""The registry's domain: its operations on metadata and blobs, free of HTTP."""
