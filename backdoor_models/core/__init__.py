"""The shared core: errors, artifacts, run directories, provenance, records, statistics, resources.

Nothing here knows about tasks, models or probes; every other package may import it.
"""
