"""Demo data: roles, accounts with the awkward values real exports meet, and an admin login."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from exporter.auth.passwords import hash_password

# Each role and its permissions (see "Permissions" in docs/api.md): an admin that may do
# everything, and roles with partial rights to sign in as (DEMO_ACCOUNTS).
ADMIN_ROLE = "超级管理员"
ROLES = (
    (ADMIN_ROLE, ("*",)),
    ("管理员", ("account:read", "account:write", "role:read", "role:write", "export:create")),
    ("运营", ("account:read", "export:create")),
    ("客服", ("account:read",)),
    ("财务", ("account:read", "export:create")),
    ("审计", ("account:read",)),
    ("市场", ("account:read", "role:read")),
    ("销售", ("account:read",)),
    ("产品", ("role:read",)),
    ("研发", ("role:read", "role:write")),
    ("测试", ("account:read", "role:read", "export:create")),
    ("运维", ("ops:read",)),
    ("数据分析", ("account:read", "role:read", "export:create")),
    ("法务", ("audit:read",)),
    ("角色专员", ("role:read", "role:write", "export:create")),
    ("行政", ("account:read",)),
    ("采购", ("import:create",)),
    ("仓储", ()),
    ("物流", ()),
    ("访客", ()),
)
ROLE_COUNT = len(ROLES)
# Accounts that sign in with the admin's password, to try what a role with partial rights sees.
DEMO_ACCOUNTS = (
    ("auditor", "审计员", "审计"),
    ("rolemanager", "角色专员", "角色专员"),
)
# The demo's export type whose rows these are (handlers/account.py): the dev stack's example.
DEMO_EXPORT_TYPE = "account"

# Deterministic, so two databases seeded with the same count export identical files. A database
# seeded before roles had these permissions gets them. The permissions travel as one
# comma-joined string per role: PostgreSQL's arrays of arrays must be rectangular.
INSERT_ROLES = """
INSERT INTO roles (name, description, permissions, created_at)
SELECT
    role.name,
    '角色 ' || role.g || CASE WHEN role.g % 5 = 0 THEN ', 含逗号与 "引号"' ELSE '' END,
    string_to_array(role.permissions, ','),
    timestamptz '2024-01-01 00:00:00+08' + role.g * interval '1 day'
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS role(name, permissions, g)
ON CONFLICT (name) DO UPDATE SET permissions = EXCLUDED.permissions
"""

INSERT_ACCOUNTS = """
INSERT INTO accounts (username, nickname, email, phone, status, role_id, created_at, last_login_at)
SELECT
    'user' || lpad(g::text, 7, '0'),
    CASE
        WHEN g % 997 = 0 THEN '=HYPERLINK("http://example.com","点我")'
        WHEN g % 991 = 0 THEN '+cmd|calc'
        WHEN g % 983 = 0 THEN '@SUM(1,2)'
        WHEN g % 211 = 0 THEN '张三, "老张"' || chr(10) || '第二行'
        WHEN g % 3 = 0 THEN (ARRAY['张伟', '王芳', '李娜', '刘洋', '陈静'])[1 + g % 5] || g
        WHEN g % 3 = 1 THEN 'User ' || g
        ELSE '混合Mix_' || g
    END,
    'user' || g || '@example.com',
    CASE g % 3
        WHEN 0 THEN '+86138' || lpad((g % 100000000)::text, 8, '0')
        WHEN 1 THEN '0' || (10 + g % 90) || '-' || lpad((g % 10000000)::text, 7, '0')
        ELSE '139' || lpad((g % 100000000)::text, 8, '0')
    END,
    CASE WHEN g % 20 = 0 THEN 'locked' WHEN g % 20 < 4 THEN 'disabled' ELSE 'active' END,
    CASE WHEN g % 50 = 0 THEN NULL ELSE (SELECT min(id) FROM roles) + g % $3 END,
    timestamptz '2023-01-01 00:00:00+00'
        + (g % 1095) * interval '1 day' + (g % 86400) * interval '1 s',
    CASE
        WHEN g % 5 = 0 THEN NULL
        ELSE timestamptz '2026-01-01 00:00:00+00' + (g % 300) * interval '1 day'
    END
FROM generate_series($1::bigint, $2::bigint) AS g
ON CONFLICT (username) DO NOTHING
"""

UPSERT_ADMIN = """
INSERT INTO accounts (username, nickname, email, status, role_id, password_hash)
VALUES ('admin', '系统管理员', 'admin@example.com', 'active',
        (SELECT id FROM roles WHERE name = $2), $1)
ON CONFLICT (username) DO UPDATE
SET password_hash = COALESCE(EXCLUDED.password_hash, accounts.password_hash), status = 'active'
RETURNING id
"""

UPSERT_DEMO_ACCOUNTS = """
INSERT INTO accounts (username, nickname, email, status, role_id, password_hash)
SELECT demo.username, demo.nickname, demo.username || '@example.com', 'active', roles.id, $4
FROM unnest($1::text[], $2::text[], $3::text[]) AS demo(username, nickname, role_name)
JOIN roles ON roles.name = demo.role_name
ON CONFLICT (username) DO UPDATE
SET password_hash = COALESCE(EXCLUDED.password_hash, accounts.password_hash), status = 'active',
    role_id = EXCLUDED.role_id
"""


@dataclass(frozen=True)
class SeedResult:
    admin_id: int
    accounts: int
    roles: int


async def seed(dsn: str, *, accounts: int, admin_password: str | None) -> SeedResult:
    """Make sure the roles, an admin, the demo accounts and at least ``accounts`` accounts in
    all exist.

    The admin's password, which the demo accounts share, is set when given and left as it is
    otherwise.
    """
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                INSERT_ROLES,
                [name for name, _ in ROLES],
                [",".join(permissions) for _, permissions in ROLES],
            )
            password_hash = hash_password(admin_password) if admin_password else None
            admin_id = int(await conn.fetchval(UPSERT_ADMIN, password_hash, ADMIN_ROLE))
            await conn.execute(
                UPSERT_DEMO_ACCOUNTS,
                *([demo[column] for demo in DEMO_ACCOUNTS] for column in range(3)),
                password_hash,
            )
            existing = int(await conn.fetchval("SELECT count(*) FROM accounts"))
            if existing < accounts:
                first = int(
                    await conn.fetchval("SELECT count(*) FROM accounts WHERE username LIKE 'user%'")
                )
                await conn.execute(
                    INSERT_ACCOUNTS, first + 1, first + accounts - existing, ROLE_COUNT
                )
            return SeedResult(
                admin_id=admin_id,
                accounts=int(await conn.fetchval("SELECT count(*) FROM accounts")),
                roles=int(await conn.fetchval("SELECT count(*) FROM roles")),
            )
    finally:
        await conn.close()
