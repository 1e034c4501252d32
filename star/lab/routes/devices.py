"""Devices (operators): register (the token is returned once), list, show, retire."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi import Path as PathParam

from device_agents.protocol import (
    DeviceCreate,
    DevicePublic,
    DeviceRegistered,
    DevicesPublic,
)
from star.db import db_now, repo
from star.lab.deps import AdminDep, SessionDep, SettingsDep, TxRoute
from star.lab.openapi import conflict
from star.lab.public import device_public

router = APIRouter(prefix="/devices", tags=["devices"], route_class=TxRoute)

DeviceName = Annotated[str, PathParam(max_length=64, description="the device's name")]


@router.post("", status_code=status.HTTP_201_CREATED, responses=conflict(
    "The name is taken.", "a device named 'pixel8' already exists"))
def register_device(
    body: DeviceCreate, session: SessionDep, settings: SettingsDep, _: AdminDep
) -> DeviceRegistered:
    """Register a device; its token is in the answer, this once (stored only hashed)."""
    device, token = repo.create_device(
        session, name=body.name, kind=body.kind, serial=body.serial, tags=body.tags
    )
    now = db_now(session)
    public = device_public(
        device, now=now, offline_after_s=settings.coordinator.device_offline_after_s
    )
    return DeviceRegistered(device=public, token=token)


@router.get("")
def list_devices(
    session: SessionDep, settings: SettingsDep, _: AdminDep,
    include_retired: Annotated[bool, Query(description="retired devices too")] = False,
) -> DevicesPublic:
    """Devices, with whether each is online now."""
    now = db_now(session)
    after = settings.coordinator.device_offline_after_s
    data = [
        device_public(d, now=now, offline_after_s=after)
        for d in repo.list_devices(session, include_retired=include_retired)
    ]
    return DevicesPublic(data=data, count=len(data))


@router.get("/{name}")
def get_device(
    name: DeviceName, session: SessionDep, settings: SettingsDep, _: AdminDep
) -> DevicePublic:
    """One device by name."""
    device = repo.get_device(session, name)
    return device_public(
        device, now=db_now(session), offline_after_s=settings.coordinator.device_offline_after_s
    )


@router.post("/{name}/retire")
def retire_device(
    name: DeviceName, request: Request, session: SessionDep, settings: SettingsDep, _: AdminDep
) -> DevicePublic:
    """Retire a device: its token stops working now and its jobs go back to the queue."""
    device = repo.retire_device(session, name=name)
    request.app.state.token_cache.clear()  # the token stops working now, not in a moment
    repo.release_device_jobs(session, device_id=device.id, reason="device retired")
    return device_public(
        device, now=db_now(session), offline_after_s=settings.coordinator.device_offline_after_s
    )
