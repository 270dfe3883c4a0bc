"""`make bench`: the load generator, the limit servers and the harness that runs them side by side.

Modules, from the entry point down (each imports only those below it):

- ``run``: ``python -m bench.run``, the machine line, the tables, the ledgers, sizing and the notes;
- ``table`` (rows beside their limits, the CPU table), ``growth`` (how cost grows, drawn by ``plots``
  from ``series``), ``scaleout`` (1 then 2 receivers and verifiers), ``sizing`` (what 10k and 100k/s need);
- ``harness``: ``Bench``, each of our rows measured right after the limit that bounds it, a ledger per load;
- ``limit_runs`` (starts the limit servers and loops), ``sse_measure`` (the SSE rows), ``seed`` (many
  connections written straight into Redis);
- ``system``: our three services on free ports and a fresh prefix, and what can be read back;
- ``load`` (load specs and results), ``e2e`` (end-to-end latency), ``sweep`` (the timeout sweep's cost),
  ``processes`` (starting, waiting, CPU), ``plan``, ``stats``.

Run as processes of their own: ``loadgen`` (the load generator), ``limits`` (the servers that show what
this box can do at best), ``listener`` (receives status changes for the end-to-end row) and
``sse_clients`` (holds many SSE streams).
"""
