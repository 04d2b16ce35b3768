"""Hash-chained, signed audit log."""

from pipeline.audit.head import Head, advance, commitment_problem, require_commitments, stored_head
from pipeline.audit.log import ChainReport, record, verify_chain

__all__ = ["ChainReport", "Head", "advance", "commitment_problem", "record", "require_commitments", "stored_head",
           "verify_chain"]
