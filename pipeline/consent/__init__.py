"""Consent you can prove: the script the owner reads, the checks on what they said, and the certificate."""

from pipeline.consent.checks import Check, CheckConfig, CheckTools, speech_checks
from pipeline.consent.script import challenge_phrase, consent_script

__all__ = ["Check", "CheckConfig", "CheckTools", "challenge_phrase", "consent_script", "speech_checks"]
