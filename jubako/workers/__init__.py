"""Worker processes and what runs in them: the one home of what the proxy
(``jubako.runtime``) and ``jubako run`` (``jubako.batch``) share.

- ``wire``: the binary frame protocol (CALL, RESULT, HELLO; message ids that wrap).
- ``link``: one TCP connection to one worker, calls matched to results by id.
- ``spawn``: starting worker processes (command line, environment, parent-death signal).
- ``executor`` (with ``staging``): running a CALL against the service instance, in a
  worker process or in ``jubako run``'s own (``--executor inprocess``).

Core: this package imports nothing of ``jubako.runtime`` (the server) or ``jubako.registry``;
the worker process itself is ``python -m jubako.runtime worker``, reached over TCP, never
imported from here.
"""
