from __future__ import annotations

from fastapi import APIRouter, Request

from app import __version__
from app.api.dependencies import SessionStoreDep, SettingsDep
from app.core.errors import ServiceUnavailableError
from app.schemas.common import ErrorEnvelope
from app.schemas.health import DependencyHealth, DetailedHealthRead, HealthRead
from app.services.health import check_dependencies

router = APIRouter(prefix="/health", tags=["health"])


@router.get("")
async def health() -> HealthRead:
    """Liveness: the process answers. No dependency is touched."""
    return HealthRead(status="ok", version=__version__)


@router.get(
    "/detailed",
    responses={
        503: {
            "model": ErrorEnvelope,
            "description": "A required dependency is down; `details` holds the full report",
        }
    },
)
async def health_detailed(
    request: Request, settings: SettingsDep, store: SessionStoreDep
) -> DetailedHealthRead:
    """Readiness: each dependency with its latency; 503 when a required one is down."""
    results = await check_dependencies(request.app.state.engine, store, settings)
    required_down = any(r.status == "down" and r.required for r in results)
    optional_down = any(r.status == "down" and not r.required for r in results)
    overall = "down" if required_down else "degraded" if optional_down else "ok"
    report = DetailedHealthRead(
        status=overall,
        version=__version__,
        dependencies={
            r.name: DependencyHealth(
                status="ok" if r.status == "ok" else "down",
                latency_ms=r.latency_ms,
                required=r.required,
                error=r.error,
                last_seen_at=r.last_seen_at,
            )
            for r in results
        },
    )
    if required_down:
        raise ServiceUnavailableError(
            "A required dependency is down", details=report.model_dump(mode="json")
        )
    return report
