"""`make bench`: the load generator, the limit servers and the harness that runs them side by side.

Modules: ``run`` (the harness and the table), ``loadgen`` (the load generator, its own processes),
``limits`` (the servers that show what this box can do at best), ``listener`` (receives status
changes for the end-to-end row), ``sse_clients`` (holds many SSE streams), ``stats`` (percentiles).
"""
