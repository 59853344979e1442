"""The database role the API and the workers run under: it owns nothing, so it can neither
alter the schema nor lift the audit trail's triggers, and it may only add to the audit tables.

`metricis db create-runtime-role NAME` runs `apply_runtime_role` as the schema's owner (the
connection of MIGRATION_DATABASE_URL). It is idempotent and starts from nothing each time (every
privilege on the schema's tables and sequences revoked, then granted), so running it again after
each `metricis db upgrade` covers the tables a migration added. Table names here are the
policy; docs/deployment.md lists it for operators.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Read and append, nothing else: the audit events and the links of their keyed chain.
APPEND_ONLY_TABLES = frozenset({"audit_events", "audit_chain_links"})
# The chainer moves the end of the chain forward; the row itself is created by the migration.
UPDATE_ONLY_TABLES = frozenset({"audit_chain_state"})
# Alembic's bookkeeping: the owner's alone.
OWNER_ONLY_TABLES = frozenset({"alembic_version"})
DATA_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


class RuntimeRoleError(Exception):
    """The role cannot be made a safe runtime role; the message says why."""


@dataclass
class RuntimeRoleReport:
    name: str
    created: bool
    grants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def privileges_for(table: str) -> tuple[str, ...]:
    if table in OWNER_ONLY_TABLES:
        return ()
    if table in APPEND_ONLY_TABLES:
        return ("SELECT", "INSERT")
    if table in UPDATE_ONLY_TABLES:
        return ("SELECT", "UPDATE")
    return DATA_PRIVILEGES


async def _execute_formatted(connection: AsyncConnection, template: str, *values: str) -> None:
    """Run DDL built by the server's format(): %I quotes identifiers, %L literals (a password),
    so nothing typed is ever spliced into SQL here."""
    placeholders = ", ".join(f"CAST(:v{index} AS text)" for index in range(len(values)))
    statement = await connection.scalar(
        text(f"SELECT format(CAST(:template AS text), {placeholders})"),
        {"template": template, **{f"v{index}": value for index, value in enumerate(values)}},
    )
    await connection.execute(text(str(statement)))


async def apply_runtime_role(
    connection: AsyncConnection, name: str, password: str | None = None
) -> RuntimeRoleReport:
    """Create or update role `name` and set exactly its privileges, in the caller's
    transaction. Refuses a role that owns something, is a member of another role, or is the
    connected role itself."""
    if connection.dialect.name != "postgresql":
        raise RuntimeRoleError("database roles exist on PostgreSQL only")
    if not ROLE_NAME.fullmatch(name):
        raise RuntimeRoleError(
            "a role name is 1 to 63 lower-case letters, digits and '_', not starting with a digit"
        )
    if name == await connection.scalar(text("SELECT current_user")):
        raise RuntimeRoleError("the runtime role must not be the role that runs migrations")
    role_oid = await connection.scalar(
        text("SELECT oid FROM pg_roles WHERE rolname = :name"), {"name": name}
    )
    created = role_oid is None
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
    if created:
        await _execute_formatted(connection, f"CREATE ROLE %I {attributes}", name)
    else:
        await _check_owns_nothing(connection, name)
        await _execute_formatted(connection, f"ALTER ROLE %I {attributes}", name)
    if password is not None:
        await _execute_formatted(connection, "ALTER ROLE %I PASSWORD %L", name, password)

    report = RuntimeRoleReport(name=name, created=created)
    schema = str(await connection.scalar(text("SELECT current_schema()")))
    database = str(await connection.scalar(text("SELECT current_database()")))
    await _execute_formatted(connection, "GRANT CONNECT ON DATABASE %I TO %I", database, name)
    await _execute_formatted(connection, "GRANT USAGE ON SCHEMA %I TO %I", schema, name)
    await _execute_formatted(
        connection, "REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I", schema, name
    )
    await _execute_formatted(
        connection, "REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I", schema, name
    )
    tables = (
        await connection.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :schema ORDER BY tablename"),
            {"schema": schema},
        )
    ).all()
    for table in tables:
        privileges = privileges_for(str(table))
        report.grants[str(table)] = privileges
        if privileges:
            await _execute_formatted(
                connection,
                f"GRANT {', '.join(privileges)} ON TABLE %I.%I TO %I",
                schema,
                table,
                name,
            )
    # Sequences: the audit events' numbers (nextval in their trigger, read by the chainer).
    await _execute_formatted(
        connection, "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I", schema, name
    )
    if await connection.scalar(
        text("SELECT has_schema_privilege(:name, :schema, 'CREATE')"),
        {"name": name, "schema": schema},
    ):
        report.warnings.append(
            f"{name} may create objects in schema {schema} (PUBLIC holds CREATE there, the "
            f"default before PostgreSQL 15): REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC"
        )
    return report


async def _check_owns_nothing(connection: AsyncConnection, name: str) -> None:
    owned = await connection.scalar(
        text(
            "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid)"
            " + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)"
            " + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)"
            " + (SELECT count(*) FROM pg_type WHERE typowner = r.oid)"
            " + (SELECT count(*) FROM pg_database WHERE datdba = r.oid)"
            " FROM pg_roles r WHERE r.rolname = :name"
        ),
        {"name": name},
    )
    if owned:
        raise RuntimeRoleError(
            f"role {name} owns {owned} object(s) here; a runtime role must own nothing "
            "(it could disable the audit triggers of what it owns): choose another name, or "
            "reassign them (REASSIGN OWNED BY) to the migration role first"
        )
    memberships = (
        await connection.scalars(
            text(
                "SELECT g.rolname FROM pg_auth_members m "
                "JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member "
                "WHERE r.rolname = :name ORDER BY g.rolname"
            ),
            {"name": name},
        )
    ).all()
    if memberships:
        raise RuntimeRoleError(
            f"role {name} is a member of {', '.join(map(str, memberships))}; a runtime role "
            "takes no other role's privileges: REVOKE those memberships first"
        )
