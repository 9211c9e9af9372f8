"""The tracer's machinery: engines, the sender thread, process lifecycle hooks.

Nothing here is public; :mod:`coldmod_trace.tracer` is the surface.
"""
