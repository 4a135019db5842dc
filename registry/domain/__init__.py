"""The registry's domain: its operations on metadata and blobs, free of HTTP.

One module per concern: ``manifests`` (checks of a pushed manifest), ``canonical`` (its
digest bytes), ``versions`` (a push's start, labels, deletion), ``uploads`` (upload
sessions, blob and version completion), ``blobs`` (stored blobs, collection),
``deployments`` (usage reported by the operator), ``queries`` (the read model shared by the
REST API and the dashboard), ``audit`` (the caller and the audit event of every write),
``sweeper`` (abandoned uploads and garbage, in the background).

Transactions: **the request commits**. A domain function reads, writes and flushes in the
session it is given and never commits; the request layer (an API route, a dashboard view,
the archive push; ``registry/transactions.py`` for the steps that end a transaction
mid-request) commits once its work succeeded, and an error rolls everything back. Where
slow storage work must run outside a transaction, the domain offers two steps and the
request commits between them (``uploads.blob_to_verify`` / ``verify_blob``,
``blobs.unreferenced`` / ``delete_objects``); a refusal that must keep what it recorded is
returned, not raised, so that the request commits it first. The one exception is the
``sweeper``, which runs outside any request and commits its own steps.
tests/registry/test_registry_layers.py checks that no other domain module commits.
"""
