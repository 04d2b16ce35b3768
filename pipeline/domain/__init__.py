"""The domain core: entities, the statement state machine and the policies. Pure: no I/O."""

from pipeline.domain.model import (
    Approval,
    ApprovalPolicyKind,
    Consent,
    Decision,
    Requirement,
    ReviewPolicy,
    Role,
    Scope,
    Stage,
    Statement,
    User,
    approval_payload,
    canonical_json,
    text_hash,
)
from pipeline.domain.policy import Tally, check_consent, check_may_review, requirement, tally
from pipeline.domain.states import TERMINAL, TRANSITIONS, Event, State, can, next_state

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "Approval",
    "ApprovalPolicyKind",
    "Consent",
    "Decision",
    "Event",
    "Requirement",
    "ReviewPolicy",
    "Role",
    "Scope",
    "Stage",
    "State",
    "Statement",
    "Tally",
    "User",
    "approval_payload",
    "can",
    "canonical_json",
    "check_consent",
    "check_may_review",
    "next_state",
    "requirement",
    "tally",
    "text_hash",
]
