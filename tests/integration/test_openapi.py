"""The OpenAPI document tells the truth: schemathesis, driven by the served document, finds no
answer it does not list, nothing it lists refused, and no server error."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from arq.worker import Worker

from exporter.api.openapi import build_openapi
from exporter.exports.registry import load_handlers, registry
from exporter.imports.registry import import_registry
from tests.failing_handlers import HANDLER_MODULES
from tests.support import ApiUser

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = Path(__file__).with_name("schemathesis.toml")
# Generated cases per operation and phase; the coverage phase adds its boundary values: about
# 750 requests in all. In one run over every operation this took 60-115 s with 7 test sessions
# sharing 2 cores (load 9-13), of which schemathesis's own CPU was 10-13 s and the server's
# time about 20 s (mostly argon2 in sign-ins); the rest is waiting for a core. So that each test
# fits the suite's 60 s limit, schemathesis runs once per operation (its three phases that
# test one operation) and once more for the stateful phase, which chains operations.
EXAMPLES_PER_OPERATION = 3
RUN_TIMEOUT_S = 50
# The paths of the document the app serves (the export types change only its schemas).
OPERATIONS = [
    (method.upper(), path)
    for path, item in build_openapi(load_handlers(HANDLER_MODULES), import_registry)[
        "paths"
    ].items()
    for method in item
]


async def run_schemathesis(
    client: TestClient[Any, Any], admin: ApiUser, tmp_path: Path, *options: str
) -> str:
    """Run schemathesis against the served document; its report, once it passed."""
    report = tmp_path / "schemathesis.txt"
    with report.open("wb") as output:
        # The API and the worker run in this event loop, schemathesis in a process of its own.
        process = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS),
            f"--config-file={CONFIG}",
            "run",
            str(client.make_url("/api/openapi.json")),
            "--checks=all",
            f"--header=Authorization: {admin.headers['Authorization']}",
            f"--max-examples={EXAMPLES_PER_OPERATION}",
            "--seed=1",  # the same cases every run: a failure is one to reproduce, not luck
            # One worker: schemathesis's threads share hypothesis caches that are not
            # thread-safe (4.32).
            "--workers=1",
            "--request-timeout=10",
            "--no-color",
            *options,
            cwd=tmp_path,  # where hypothesis keeps its example database
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await asyncio.wait_for(process.wait(), RUN_TIMEOUT_S)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    text = report.read_text(errors="replace")
    assert process.returncode == 0, text
    return text


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[" ".join(op) for op in OPERATIONS])
async def test_each_operation_answers_as_the_document_says(
    client: TestClient[Any, Any],
    admin: ApiUser,
    worker: Worker,
    tmp_path: Path,
    method: str,
    path: str,
) -> None:
    report = await run_schemathesis(
        client,
        admin,
        tmp_path,
        "--phases=examples,coverage,fuzzing",
        f"--include-name={method} {path}",
    )

    assert f"Selected: 1/{len(OPERATIONS)}" in report, report


async def test_chains_of_operations_answer_as_the_document_says(
    client: TestClient[Any, Any], admin: ApiUser, worker: Worker, tmp_path: Path
) -> None:
    report = await run_schemathesis(client, admin, tmp_path, "--phases=stateful")

    assert f"Selected: {len(OPERATIONS)}/{len(OPERATIONS)}" in report, report


async def test_the_operations_fuzzed_one_by_one_are_all_the_served_document_has(
    client: TestClient[Any, Any],
) -> None:
    document = await (await client.get("/api/openapi.json")).json()

    served = [(method.upper(), path) for path, item in document["paths"].items() for method in item]
    assert served == OPERATIONS


async def test_the_stream_is_never_taken_for_a_task_id(client: TestClient[Any, Any]) -> None:
    response = await client.options("/api/export-tasks/stream")

    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}


async def test_the_document_lists_the_answers_and_values_the_fuzzer_found_missing(
    client: TestClient[Any, Any],
) -> None:
    document = await (await client.get("/api/openapi.json")).json()
    paths = document["paths"]

    def query(path: str) -> dict[str, Any]:
        return {p["name"]: p["schema"] for p in paths[path]["get"]["parameters"]}

    type_names = [handler.name for handler in registry]
    assert {"200", "202"} <= set(paths["/api/export-tasks/{task_id}/retry"]["post"]["responses"])
    assert {"403", "413", "415"} <= set(paths["/api/session"]["post"]["responses"])
    assert set(
        paths["/api/export-tasks/{task_id}/download"]["get"]["responses"]["200"]["content"]
    ) == {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "text/csv"}
    assert query("/api/export-tasks")["page"]["maximum"] == 100_000
    assert query("/api/export-tasks")["type"]["enum"] == type_names
    body = paths["/api/export-tasks"]["post"]["requestBody"]["content"]["application/json"]
    assert [v["properties"]["type"]["const"] for v in body["schema"]["oneOf"]] == type_names
    assert set(query("/api/accounts")) == {
        "page",
        "page_size",
        "keyword",
        "status",
        "role_id",
        "created_from",
        "created_to",
    }
    assert set(query("/api/roles")) == {"page", "page_size", "keyword"}


@pytest.mark.parametrize(
    "params",
    [{"role_id": True}, {"created_to": 0}, {"status": 1}],
    ids=["bool-as-id", "number-as-date", "number-as-status"],
)
async def test_a_filter_of_another_json_type_than_documented_is_refused(
    admin: ApiUser, params: dict[str, Any]
) -> None:
    status, body = await admin.post_task({"type": "account", "format": "csv", "params": params})

    assert status == 422, body
    assert body["error"]["details"][0]["field"] == f"params.{next(iter(params))}"


async def test_values_outside_the_documented_ones_are_refused(
    client: TestClient[Any, Any], admin: ApiUser
) -> None:
    status, listed = await admin.get("/api/export-tasks?type=no_such_type")
    created = await client.post(
        "/api/export-tasks",
        json={"type": "role", "params": {}},
        headers={**admin.headers, "Idempotency-Key": "clé"},
    )

    assert status == 422
    assert listed["error"]["details"][0]["field"] == "type"
    assert created.status == 422
    assert (await created.json())["error"]["details"][0]["field"] == "Idempotency-Key"


async def test_the_document_describes_the_upload_form_and_the_import_answers(
    client: TestClient[Any, Any],
) -> None:
    document = await (await client.get("/api/openapi.json")).json()
    paths = document["paths"]

    upload = paths["/api/import-tasks"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    import_types = [handler.name for handler in import_registry]
    assert form["required"] == ["type", "file"]
    assert form["properties"]["type"]["enum"] == import_types
    assert form["properties"]["file"] == {
        "type": "string",
        "format": "binary",
        "description": "csv, xlsx or xlsb, judged from its bytes",
    }
    assert {"202", "200", "403", "413", "415", "422", "429"} <= set(upload["responses"])
    assert "410" in paths["/api/import-tasks/{task_id}/retry"]["post"]["responses"]
    report = paths["/api/import-tasks/{task_id}/report"]["get"]["responses"]
    assert {"404", "409", "410"} <= set(report)
    template = paths["/api/import-types/{type}/template"]["get"]
    assert [p["name"] for p in template["parameters"]] == ["type", "format"]
    assert set(template["responses"]["200"]["content"]) == {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "text/csv",
    }
