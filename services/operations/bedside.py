"""The bedside: the wristband and the product bag checked against each other, then the
infusion recorded with its signatures (the nurse's, and a witness's where the site requires
one) in one transaction: all of it, or none."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session

from services.db.models import Signature
from services.domain.custody import Action, Actor
from services.domain.errors import SignatureRefused
from services.domain.signatures import PERFORMED, WITNESS
from services.operations import signing
from services.operations.scans import ScanInput, ScanOutcome, record_scan


@dataclass(frozen=True)
class Infusion:
    outcome: ScanOutcome
    signatures: list[Signature]


def infuse(
    session: Session,
    *,
    actor: Actor,
    barcode: str,
    patient_ref: str,
    event_id: str,
    witness: Actor | None,
    now: dt.datetime,
    max_clock_skew: dt.timedelta,
) -> Infusion:
    """Record the infusion and sign it: the caller has authenticated the nurse and the witness
    (signing.authenticate, signing.authenticate_witness) in a transaction of its own, so that
    a wrong password counts and nothing is recorded."""
    outcome = record_scan(
        session,
        actor=actor,
        scan=ScanInput(
            barcode=barcode,
            action=Action.INFUSE,
            site=actor.site.code,
            event_id=event_id,
            patient_ref=patient_ref,
        ),
        now=now,
        max_clock_skew=max_clock_skew,
    )
    signatures: list[Signature] = []
    if outcome.replayed:
        return Infusion(outcome, signatures)
    for event in outcome.events:
        required = signing.requirement(session, event)
        if required is None:
            continue
        signatures.append(
            signing.add_signature(session, event=event, signer=actor, meaning=PERFORMED, now=now)
        )
        if required:
            if witness is None:
                raise SignatureRefused(
                    "this site's infusions are witnessed: a second person confirms with their "
                    "e-mail and password"
                )
            signatures.append(
                signing.add_signature(
                    session, event=event, signer=witness, meaning=WITNESS, now=now
                )
            )
    return Infusion(outcome, signatures)
