"""Demo data: roles, accounts with the awkward values real exports meet, and an admin login."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from exporter.passwords import hash_password

ROLE_COUNT = 20

# Deterministic, so two databases seeded with the same count export identical files.
INSERT_ROLES = """
INSERT INTO roles (name, description, permissions, created_at)
SELECT
    (ARRAY['超级管理员', '管理员', '运营', '客服', '财务', '审计', '市场', '销售', '产品', '研发',
           '测试', '运维', '数据分析', '法务', '人事', '行政', '采购', '仓储', '物流', '访客'])[g],
    '角色 ' || g || CASE WHEN g % 5 = 0 THEN ', 含逗号与 "引号"' ELSE '' END,
    CASE g % 3
        WHEN 0 THEN ARRAY['account:read', 'account:write', 'export:create']
        WHEN 1 THEN ARRAY['account:read']
        ELSE ARRAY['role:read', 'role:write']
    END,
    timestamptz '2024-01-01 00:00:00+08' + g * interval '1 day'
FROM generate_series(1, $1) AS g
ON CONFLICT (name) DO NOTHING
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
VALUES ('admin', '系统管理员', 'admin@example.com', 'active', (SELECT min(id) FROM roles), $1)
ON CONFLICT (username) DO UPDATE
SET password_hash = COALESCE(EXCLUDED.password_hash, accounts.password_hash), status = 'active'
RETURNING id
"""


@dataclass(frozen=True)
class SeedResult:
    admin_id: int
    accounts: int
    roles: int


async def seed(dsn: str, *, accounts: int, admin_password: str | None) -> SeedResult:
    """Make sure the roles, an admin and at least ``accounts`` accounts in all exist.

    The admin's password is set when given and left as it is otherwise.
    """
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(INSERT_ROLES, ROLE_COUNT)
            password_hash = hash_password(admin_password) if admin_password else None
            admin_id = int(await conn.fetchval(UPSERT_ADMIN, password_hash))
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
