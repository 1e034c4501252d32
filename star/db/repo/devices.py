"""Devices: registration (token issued once, stored as sha256), properties, liveness, retirement."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from star.db.errors import AlreadyExistsError, NotFoundError
from star.db.models import Device, DeviceStatus
from star.db.session import db_now
from star.db.snapshots import DeviceSnapshot

DEVICE_KINDS = ("android", "x86")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_device(
    session: Session,
    *,
    name: str,
    kind: str,
    serial: str | None = None,
    tags: Iterable[str] = (),
) -> tuple[DeviceSnapshot, str]:
    """Register a device; returns its snapshot and its token (shown once, stored hashed)."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"kind must be one of {DEVICE_KINDS}, not {kind!r}")
    token = secrets.token_urlsafe(32)
    row = Device(
        name=name,
        kind=kind,
        serial=serial,
        tags=sorted(set(tags)),
        token_hash=hash_token(token),
        properties={},
        status=DeviceStatus.OFFLINE,
        created_at=db_now(session),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise AlreadyExistsError(f"a device named {name!r} already exists") from exc
    return DeviceSnapshot.of(row), token


def authenticate(session: Session, token: str) -> DeviceSnapshot | None:
    """The live (not retired) device whose token this is, else None."""
    digest = hash_token(token)
    row = session.scalars(select(Device).where(Device.token_hash == digest)).one_or_none()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    if row.status is DeviceStatus.RETIRED:
        return None
    return DeviceSnapshot.of(row)


def _row(session: Session, name: str) -> Device:
    row = session.scalars(select(Device).where(Device.name == name)).one_or_none()
    if row is None:
        raise NotFoundError(f"no device named {name!r}")
    return row


def get_device(session: Session, name: str) -> DeviceSnapshot:
    return DeviceSnapshot.of(_row(session, name))


def get_device_by_id(session: Session, device_id: int) -> DeviceSnapshot:
    row = session.get(Device, device_id)
    if row is None:
        raise NotFoundError(f"no device with id {device_id}")
    return DeviceSnapshot.of(row)


def list_devices(session: Session, *, include_retired: bool = False) -> list[DeviceSnapshot]:
    query = select(Device).order_by(Device.name)
    if not include_retired:
        query = query.where(Device.status != DeviceStatus.RETIRED)
    return [DeviceSnapshot.of(row) for row in session.scalars(query)]


def retire_device(session: Session, *, name: str) -> DeviceSnapshot:
    """Retire a device: its token stops working; its measurements stay."""
    row = _row(session, name)
    if row.status is not DeviceStatus.RETIRED:
        row.status = DeviceStatus.RETIRED
        row.status_reason = "retired by an operator"
        row.retired_at = db_now(session)
    session.flush()
    return DeviceSnapshot.of(row)


def update_properties(
    session: Session, *, device_id: int, properties: dict[str, Any]
) -> DeviceSnapshot:
    row = session.get(Device, device_id)
    if row is None:
        raise NotFoundError(f"no device with id {device_id}")
    row.properties = dict(properties)
    row.last_seen_at = db_now(session)
    session.flush()
    return DeviceSnapshot.of(row)


def mark_seen(
    session: Session,
    *,
    device_id: int,
    now: datetime,
    online: bool | None = True,
    reason: str | None = None,
) -> None:
    """``touch_device`` in one UPDATE (no read back): the hot path of every agent call."""
    values: dict[str, object] = {"last_seen_at": now}
    if online is not None:
        values |= {
            "status": DeviceStatus.ONLINE if online else DeviceStatus.OFFLINE,
            "status_reason": reason,
        }
    session.execute(
        update(Device)
        .where(Device.id == device_id, Device.status != DeviceStatus.RETIRED)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def touch_device(
    session: Session, *, device_id: int, online: bool | None = True, reason: str | None = None
) -> DeviceSnapshot:
    """Record that the agent was heard from (database clock); ``online`` sets the status too."""
    row = session.get(Device, device_id)
    if row is None:
        raise NotFoundError(f"no device with id {device_id}")
    row.last_seen_at = db_now(session)
    if online is not None and row.status is not DeviceStatus.RETIRED:
        row.status = DeviceStatus.ONLINE if online else DeviceStatus.OFFLINE
        row.status_reason = reason
    session.flush()
    return DeviceSnapshot.of(row)
