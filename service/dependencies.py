"""What routes get injected: the app's settings, its loaded verifier and the CPU pool limiter."""

from typing import Annotated

import anyio
from fastapi import Depends, Request

from service.settings import Settings
from verification import Verifier


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_verifier(request: Request) -> Verifier:
    return request.app.state.verifier


def get_limiter(request: Request) -> anyio.CapacityLimiter:
    return request.app.state.cpu_limiter


SettingsDep = Annotated[Settings, Depends(get_settings)]
VerifierDep = Annotated[Verifier, Depends(get_verifier)]
LimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_limiter)]
