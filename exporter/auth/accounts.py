"""The identity behind a request and what its role permits."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.errors import FieldProblem, Forbidden

# A role holding this grants every permission.
EVERY_PERMISSION = "*"


@dataclass(frozen=True)
class Account:
    """The identity behind a request, with the permissions of its role (none without a role)."""

    id: int
    username: str
    status: str
    permissions: frozenset[str] = field(default_factory=frozenset)

    def may(self, *permissions: str) -> bool:
        """Whether the account's role grants every one of ``permissions``."""
        return EVERY_PERMISSION in self.permissions or self.permissions.issuperset(permissions)


def require_permissions(account: Account, *permissions: str) -> None:
    """Forbidden, naming each missing permission, unless the account's role grants them all."""
    missing = [permission for permission in permissions if not account.may(permission)]
    if missing:
        raise Forbidden(
            f"the account's role does not grant {', '.join(missing)}",
            [
                FieldProblem(
                    "permission", permission, "missing_permission", {"permission": permission}
                )
                for permission in missing
            ],
            params={"permission": ", ".join(missing)},
        )
