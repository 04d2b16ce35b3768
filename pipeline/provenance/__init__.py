"""Marks and labels that make a clip recognisably synthetic and traceable to us.

Import the modules themselves (`presence`, `payload`, `credentials`, ...): this package imports
nothing, so reading a workspace's C2PA settings does not load numpy and the watermark code.
"""
