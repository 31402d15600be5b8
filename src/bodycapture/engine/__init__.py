"""Scale-out engines: the capture pipeline run as tasks of an existing distributed engine (ray.py)."""
