"""The Import dialog's words about its type: the columns a file needs, in the reader's language."""

from __future__ import annotations

from exporter.exports.registry import load_handlers
from exporter.imports.registry import import_registry
from exporter.web.i18n import page_catalogs
from exporter.web.import_form import import_form


def test_the_dialog_names_the_key_column_first_and_each_enum_with_its_choices() -> None:
    catalogs = page_catalogs(load_handlers())
    account = import_registry.get("account")

    english = import_form(account, catalogs["en"], 1024)
    chinese = import_form(account, catalogs["zh-CN"], 1024)

    assert english.title == "Accounts"
    assert english.required == ("Username",)
    assert english.optional == (
        "Nickname",
        "Email",
        "Phone",
        "Status (Active, Disabled, Locked)",
        "Role",
    )
    assert chinese.required == ("用户名",)
    assert chinese.optional[3] == "状态（正常、禁用、锁定）"
    assert chinese.templates == (
        ("xlsx", "/api/import-types/account/template?format=xlsx"),
        ("csv", "/api/import-types/account/template?format=csv"),
    )
    assert chinese.modes == ("validate", "apply")
    assert chinese.on_error == ("abort", "skip")
