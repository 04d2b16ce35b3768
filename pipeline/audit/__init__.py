"""Hash-chained, signed audit log."""

from pipeline.audit.log import ChainReport, read_head, record, verify_chain, write_head

__all__ = ["ChainReport", "read_head", "record", "verify_chain", "write_head"]
