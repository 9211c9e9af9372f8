"""The tracer's machinery: engines, the sender thread, process lifecycle hooks.

Engines: ``core`` chooses one; ``sysmon`` (3.12+) and ``pytrace`` (3.11) see
calls; ``counting`` holds the per-function counters both share; ``sampling``
is sampled mode's windows, time slices and callback calibration, and
``estimate`` its arithmetic.

Nothing here is public; :mod:`coldmod_trace.tracer` is the surface.
"""
