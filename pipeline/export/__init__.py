"""Release formats for a finished clip, and reading them back."""

from pipeline.export.formats import ExportFormat, export_clip
from pipeline.export.probe import ProbeInfo, decode, probe

__all__ = ["ExportFormat", "ProbeInfo", "decode", "export_clip", "probe"]
