"""create_app(): routers, middleware, exception handlers and lifespan."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from app import __version__
from app.api.dependencies import ERRORS_BY_DEPENDENCY
from app.api.docs import install_docs
from app.api.errors import code_for_status, error_response
from app.api.middleware.body_limit import BodySizeLimitMiddleware
from app.api.middleware.rate_limit import (
    RateLimiter,
    RateLimitMiddleware,
    is_rate_limited_path,
)
from app.api.middleware.request_context import RequestContextMiddleware
from app.api.middleware.unstorable_values import UnstorableValueMiddleware
from app.api.openapi import declare_error_responses, error_responses, publish_schema
from app.api.routers import (
    access_tokens,
    assessments,
    audit,
    auth,
    batteries,
    consent,
    dashboard,
    exports,
    health,
    invitations,
    item_banks,
    modules,
    notifications,
    participant_auth,
    participant_import,
    participants,
    password_resets,
    redcap,
    reports,
    schedules,
    service_accounts,
    sso,
    studies,
    sync,
    templates,
    user_sessions,
    users,
    webhooks,
)
from app.config import Settings, check_production_settings, get_settings
from app.core.errors import DomainError
from app.core.logging import configure_logging, get_logger
from app.core.security import configure_password_hashing
from app.db.session import create_engine, create_sessionmaker
from app.schemas.assessments import SubmitRequest
from app.services.audit import warn_if_derived
from app.services.session_store import create_session_store
from app.workers.kicks import DispatchKicks

logger = get_logger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5
GC_YOUNG_THRESHOLD = 20_000


def _lifespan(settings: Settings) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        # Commits that made notifications or webhook deliveries due ask a worker to send them
        # at once, rather than at beat's next tick.
        kicks = DispatchKicks(settings)
        logger.info(
            "application_startup",
            environment=settings.ENVIRONMENT.value,
            database=engine.dialect.name,
            session_store=app.state.session_store.backend,
            file_storage=settings.STORAGE_BACKEND.value,
            version=__version__,
        )
        warn_if_derived(settings)
        if settings.GC_FREEZE_AT_STARTUP:
            # Everything built so far (modules, routes, schemas, the app) lives as long as the
            # process: keep it out of the collector's scans, which otherwise walk ~200k objects
            # on every full collection and land as latency spikes on whichever request runs then.
            gc.collect()
            gc.freeze()
            # A submission allocates tens of thousands of short-lived objects; with the default
            # young-generation threshold (700) the collector ran dozens of times per request.
            # Collecting every 20,000 allocations cut the submit path's CPU by 10-15 %.
            gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
        try:
            yield
        finally:
            await asyncio.to_thread(kicks.close)
            await app.state.session_store.close()
            await engine.dispose()
            logger.info("application_shutdown")

    return lifespan


def _validation_details(exc: RequestValidationError) -> dict[str, Any]:
    # Never echo the submitted values back: they may hold passwords or contact details.
    errors = [
        {
            "field": ".".join(str(part) for part in error.get("loc", ())),
            "message": error.get("msg", "invalid"),
            "type": error.get("type", "value_error"),
        }
        for error in exc.errors()
    ]
    return {"errors": errors}


def _is_database_unavailable(exc: sa_exc.SQLAlchemyError) -> bool:
    if isinstance(exc, sa_exc.TimeoutError):  # pool exhausted or connect timed out
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        ):
            return True
        # SQLSTATE classes 08 (connection exception) and 57 (operator intervention: the server
        # is shutting down or not yet accepting connections) mean "retry later".
        return _sqlstate_class(exc) in ("08", "57")
    return False


def _sqlstate_class(exc: sa_exc.SQLAlchemyError) -> str | None:
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return sqlstate[:2] if isinstance(sqlstate, str) else None


def _is_unstorable_value(exc: sa_exc.SQLAlchemyError) -> bool:
    # SQLSTATE class 22 (data exception): a NUL character, an untranslatable character, a number
    # out of range (asyncpg's refusal of an integer beyond its column's type, before sending it,
    # carries 22000 too). Drivers do not all raise these as DataError.
    return isinstance(exc, sa_exc.DataError) or _sqlstate_class(exc) == "22"


_DATABASE_MODULES = ("sqlalchemy.", "sqlite3", "aiosqlite", "asyncpg")


def _raised_by_the_database_layer(exc: BaseException) -> bool:
    """The driver raised it while binding a parameter (sqlite3 raises a bare OverflowError for
    an integer beyond 64 bits, which SQLAlchemy does not wrap): not an overflow in our code."""
    frame = exc.__traceback__
    while frame is not None:
        module = frame.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith(_DATABASE_MODULES):
            return True
        frame = frame.tb_next
    return False


def _unstorable_value() -> JSONResponse:
    return error_response(
        422,
        "VALIDATION_ERROR",
        "The request contains a value the database cannot store "
        "(for example a NUL character or an out-of-range number)",
    )


def _database_unavailable() -> JSONResponse:
    return error_response(
        503,
        "SERVICE_UNAVAILABLE",
        "The database is unavailable; retry later",
        {"retry_after_seconds": DATABASE_RETRY_AFTER_SECONDS},
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def _install_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else code_for_status(exc.status_code)
        return error_response(
            exc.status_code,
            code_for_status(exc.status_code),
            message,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(
            422, "VALIDATION_ERROR", "The request is not valid", _validation_details(exc)
        )

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(sa_exc.SQLAlchemyError)
    async def database_error(_: Request, exc: sa_exc.SQLAlchemyError) -> JSONResponse:
        if _is_database_unavailable(exc):
            logger.warning("database_unavailable", error=type(exc).__name__)
            return _database_unavailable()
        if _is_unstorable_value(exc):
            # A value the database cannot store (a NUL character, an out-of-range number):
            # the request's fault, and its transaction has been rolled back.
            logger.info("database_refused_value", error=type(getattr(exc, "orig", exc)).__name__)
            return _unstorable_value()
        logger.exception("database_error")
        return error_response(500, "INTERNAL_ERROR", "An unexpected error occurred")

    @app.exception_handler(OverflowError)
    async def overflow_error(_: Request, exc: OverflowError) -> JSONResponse:
        if _raised_by_the_database_layer(exc):
            logger.info("database_refused_value", error="OverflowError")
            return _unstorable_value()
        logger.exception("unexpected_error")
        return error_response(500, "INTERNAL_ERROR", "An unexpected error occurred")

    @app.exception_handler(ConnectionError)
    @app.exception_handler(TimeoutError)
    @app.exception_handler(socket.gaierror)
    async def dependency_unreachable(_: Request, exc: Exception) -> JSONResponse:
        # Raised by drivers before SQLAlchemy wraps anything: a refused or timed-out connect.
        logger.warning("dependency_unreachable", error=type(exc).__name__)
        return _database_unavailable()

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled_exception", exc_info=exc)
        return error_response(500, "INTERNAL_ERROR", "An unexpected error occurred")


# Request bodies that routes read by hand (to validate straight from bytes) and describe in
# `openapi_extra` by reference: their schemas are added to the document's components here.
HAND_PARSED_BODIES: tuple[type[BaseModel], ...] = (SubmitRequest,)


API_PREFIX = "/api"
# The routers in the order the API document presents them: sign-in first, then the study's life.
ROUTERS_IN_DOCUMENT_ORDER: tuple[APIRouter, ...] = (
    health.router,
    auth.router,
    participant_auth.router,
    invitations.auth_router,
    invitations.router,
    access_tokens.router,
    password_resets.router,
    sso.router,
    service_accounts.router,
    users.router,
    user_sessions.router,
    audit.router,
    studies.router,
    participant_import.router,
    participants.router,
    notifications.router,
    consent.router,
    assessments.router,
    modules.router,
    batteries.router,
    item_banks.router,
    schedules.router,
    templates.router,
    sync.router,
    webhooks.router,
    redcap.trigger_router,
    redcap.router,
    dashboard.router,
    exports.router,
    reports.router,
)
# Routing tries routes one by one in inclusion order (~170 of them): the routers every device
# and dashboard calls all day are tried first, which took ~0.1 ms off a list request. The API
# document keeps the order above (`_in_document_order`); a test checks that no route is
# shadowed in either order.
ROUTED_FIRST: tuple[APIRouter, ...] = (
    health.router,
    assessments.router,
    sync.router,
    auth.router,
    participants.router,
    studies.router,
)


def _routing_order() -> tuple[APIRouter, ...]:
    first = {id(router) for router in ROUTED_FIRST}  # routers compare by value: by identity here
    return ROUTED_FIRST + tuple(r for r in ROUTERS_IN_DOCUMENT_ORDER if id(r) not in first)


def _in_document_order(paths: dict[str, Any]) -> dict[str, Any]:
    position: dict[str, int] = {}
    for router in ROUTERS_IN_DOCUMENT_ORDER:
        for route in router.routes:
            if isinstance(route, APIRoute):
                position.setdefault(API_PREFIX + route.path_format, len(position))
    return dict(sorted(paths.items(), key=lambda item: position.get(item[0], len(position))))


def _complete_openapi(app: FastAPI) -> None:
    """Publish the hand-parsed bodies and declare every operation's error responses."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        document["paths"] = _in_document_order(document["paths"])
        for model in HAND_PARSED_BODIES:
            publish_schema(document, model)
        declare_error_responses(
            document, app.routes, ERRORS_BY_DEPENDENCY, rate_limited=is_rate_limited_path
        )
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    check_production_settings(settings)
    configure_logging(settings)
    configure_password_hashing(settings)

    app = FastAPI(
        title="Metricis API",
        description="Mobile-first cognitive assessment for clinical research.",
        version=__version__,
        lifespan=_lifespan(settings),
        # Served by install_docs with local assets instead of FastAPI's CDN-backed pages.
        docs_url=None,
        redoc_url=None,
        # In place of FastAPI's own 422 schema: request validation answers the error envelope.
        responses=error_responses(422),
    )
    app.state.settings = settings
    # Created here rather than in the lifespan because the rate-limit middleware needs them;
    # Redis clients connect lazily, so nothing touches the network before startup.
    app.state.session_store = create_session_store(settings)
    app.state.rate_limiter = RateLimiter.from_settings(settings, app.state.session_store)
    _install_exception_handlers(app)

    # Middleware runs outermost-last-added: request id first, so every later line carries it.
    # The value guard reads bodies through the size limit, so it is added before it (inside).
    app.add_middleware(UnstorableValueMiddleware, item_level_paths=("/api/sync",))
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.MAX_REQUEST_BODY_BYTES)
    if settings.RATE_LIMIT_ENABLED:
        app.add_middleware(
            RateLimitMiddleware,
            limiter=app.state.rate_limiter,
            trusted_proxies=settings.TRUSTED_PROXIES,
        )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.ALLOWED_ORIGINS,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=[
            "X-Request-ID",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "Retry-After",
            "ETag",
        ],
    )
    app.add_middleware(RequestContextMiddleware)

    for router in _routing_order():
        app.include_router(router, prefix=API_PREFIX)
    _complete_openapi(app)
    install_docs(app)
    return app
