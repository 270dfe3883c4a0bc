"""`make bench`: the load generator, the limit servers and the harness that runs them side by side.

Modules, from the entry point down (each imports only those below it):

- ``run``: ``python -m bench.run``, the machine line, the table and the notes;
- ``harness``: ``Bench``, each of our rows measured right after the limit that bounds it;
- ``limit_runs`` (starts the limit servers and loops), ``sse_measure`` (the SSE rows);
- ``system``: our three services on free ports and a fresh prefix, and what can be read back;
- ``load`` (load specs and results), ``table`` (rows and rendering), ``e2e`` (end-to-end latency),
  ``sweep`` (the timeout sweep's cost), ``processes`` (starting, waiting, CPU), ``plan``, ``stats``.

Run as processes of their own: ``loadgen`` (the load generator), ``limits`` (the servers that show what
this box can do at best), ``listener`` (receives status changes for the end-to-end row) and
``sse_clients`` (holds many SSE streams).
"""
