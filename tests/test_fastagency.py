"""FastAgency 0.10 wire-protocol compatibility, tested with FastAgency's own client and Mesop UI.

The real `fastagency` package (0.10.2, with its Mesop UI) lives in an isolated venv (it pins
ag2==0.10.2, which the repo's resolve cannot hold), built once from
tests/fastagency_client/requirements.txt and cached under ~/.cache/flotilla/, keyed by that file's
hash. The first build installs ~60 packages (~30 s here, longer on a slow network); a warm run of
this module takes ~15 s. If the package index cannot be reached the build fails loudly: this test
does not skip. The cache follows $HOME (passed through by tests/BUILD), so a fresh HOME starts cold.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from playwright.sync_api import Locator, Page, expect, sync_playwright

from flotilla.devstack import LocalStack
from flotilla.hermetic_pip import cached_venv
from support import IDENTITIES, Api
from ui.browsing import CHROMIUM_ARGS, chromium, WAIT_MS, OutsideRequests, Shots, screenshot_dir

CLIENT_DIR = Path(__file__).parent / "fastagency_client"
REQUIREMENTS = CLIENT_DIR / "requirements.txt"
ALICE = str(IDENTITIES["alice"]["key"])
BOB = str(IDENTITIES["bob"]["key"])
READER = str(IDENTITIES["reader"]["key"])  # runs:read only


@pytest.fixture(scope="module")
def fastagency_python() -> Path:
    return cached_venv(REQUIREMENTS, "fastagency-0.10.2")


def _run_client(python: Path, base_url: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / f"client-{uuid.uuid4().hex[:8]}.json"
    done = subprocess.run(
        [str(python), str(CLIENT_DIR / "client.py"), base_url, str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"FastAgency client failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(out.read_text())
    return result


async def _run_by_key(api: Api, workflow_uuid: str) -> dict[str, Any]:
    runs = (await api.http.get("/v1/runs", params={"limit": 1000})).json()
    matching = [run for run in runs if run["idempotency_key"] == f"fastagency:{workflow_uuid}"]
    assert len(matching) == 1, matching
    return dict(matching[0])


def test_stock_client_lists_and_runs_a_workflow(stack: LocalStack, fastagency_python: Path, tmp_path: Path) -> None:
    answers = {"text_input": "hunter2", "multiple_choice": "a,c"}
    result = _run_client(
        fastagency_python,
        f"{stack.gateway_url}/fa/{ALICE}",
        tmp_path,
        *("--run", "every_kind", "--answers", json.dumps(answers)),
    )
    workflows = httpx.get(f"{stack.gateway_url}/v1/workflows", headers={"Authorization": f"Bearer {ALICE}"}).json()
    assert sorted(result["workflows"], key=lambda w: w["name"]) == sorted(workflows, key=lambda w: w["name"])
    assert {"every_kind", "learning_chat", "choose"} <= {w["name"] for w in result["workflows"]}

    assert result["end"] == "closed 1000"
    messages = result["messages"]
    assert [m["type"] for m in messages] == [
        "workflow_started",
        "text_message",
        "system_message",
        "error",
        "suggested_function_call",
        "function_call_execution",
        "text_input",
        "multiple_choice",
        "workflow_completed",
    ]
    # The provider parsed each into FastAgency's own message classes.
    assert [m["class"] for m in messages][-3:] == ["TextInput", "MultipleChoice", "WorkflowCompleted"]
    assert all(m["workflow_uuid"] == result["workflow_uuid"] for m in messages)
    by_type = {m["type"]: m for m in messages}
    started = by_type["workflow_started"]["content"]
    assert started["name"] == "every_kind" and started["params"] == {}
    assert started["description"] == next(w["description"] for w in workflows if w["name"] == "every_kind")
    text = by_type["text_message"]
    assert (text["sender"], text["recipient"], text["content"]) == ("alice", "bob", {"body": "hello"})
    assert by_type["system_message"]["content"] == {"message": {"note": "system notice"}}
    assert by_type["error"]["content"] == {"short": "a visible error", "long": "with details"}
    assert by_type["suggested_function_call"]["content"] == {
        "function_name": "add",
        "call_id": "c1",
        "arguments": {"a": 1, "b": 2},
    }
    assert by_type["function_call_execution"]["content"] == {"function_name": "add", "call_id": "c1", "retval": 3}
    assert by_type["text_input"]["content"] == {"prompt": "password?", "suggestions": ["hunter2"], "password": True}
    assert by_type["multiple_choice"]["content"] == {
        "prompt": "pick some",
        "choices": ["a", "b", "c"],
        "default": "b",
        "single": False,
    }
    assert json.loads(by_type["workflow_completed"]["content"]["result"]) == {"secret_length": 7, "picked": "a,c"}
    assert len({m["uuid"] for m in messages}) == len(messages)

    async def check_with_v1() -> None:
        async with Api(stack.gateway_url, ALICE) as alice, Api(stack.gateway_url, BOB) as bob:
            run = await _run_by_key(alice, result["workflow_uuid"])
            assert run["workflow"] == "every_kind" and run["status"] == "completed"
            assert run["result"] == {"secret_length": 7, "picked": "a,c"}
            events = await alice.events(run["run_id"])
            assert [e["value"] for e in events if e["type"] == "input_answered"] == ["********", "a,c"]
            # Owned by the token's identity: another identity neither sees nor lists it.
            assert (await bob.http.get(f"/v1/runs/{run['run_id']}")).status_code == 404
            bobs = (await bob.http.get("/v1/runs", params={"limit": 1000})).json()
            assert run["run_id"] not in {r["run_id"] for r in bobs}

    asyncio.run(check_with_v1())


def test_stock_mesop_ui_runs_an_ag2_workflow(stack: LocalStack, fastagency_python: Path, tmp_path: Path) -> None:
    """FastAgency's Mesop UI on top of FastAPIProvider, driven as its page drives it (no browser):
    an AG2 agent proposes a tool call, the person approves it in a multiple choice."""
    result = _run_client(
        fastagency_python,
        f"{stack.gateway_url}/fa/{ALICE}",
        tmp_path,
        *("--run", "ag2_tool_approval", "--answers", json.dumps({"multiple_choice": "approve"}), "--mesop"),
    )
    messages = result["messages"]
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "workflow_started" and kinds[-1] == "workflow_completed"
    call = next(m for m in messages if m["type"] == "suggested_function_call")["content"]
    assert (call["function_name"], call["arguments"]) == ("get_weather", {"city": "Paris"})
    question = next(m for m in messages if m["type"] == "multiple_choice")
    assert question["class"] == "MultipleChoice" and question["answer"] == "approve"
    assert question["content"]["choices"] == ["approve", "reject"] and question["content"]["single"]
    executed = next(m for m in messages if m["type"] == "function_call_execution")["content"]
    assert executed["retval"] == "sunny in Paris"
    assert (
        kinds.index("suggested_function_call") < kinds.index("multiple_choice") < kinds.index("function_call_execution")
    )

    async def check_with_v1() -> None:
        async with Api(stack.gateway_url, ALICE) as alice:
            run = await _run_by_key(alice, result["workflow_uuid"])
            assert run["workflow"] == "ag2_tool_approval" and run["status"] == "completed"
            assert messages[-1]["content"]["result"] == run["result"]

    asyncio.run(check_with_v1())


@contextmanager
def _mesop_app(python: Path, base_url: str, log: Path) -> Iterator[str]:
    """FastAgency's Mesop UI app (tests/fastagency_client/mesop_app.py) under gunicorn, its output
    in `log`; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(python), "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8"]
        + ["--chdir", str(CLIENT_DIR), "mesop_app:app"],
        env={**os.environ, "FLOTILLA_FASTAGENCY_URL": base_url},
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "the Mesop app exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the Mesop app did not answer within 60 s"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def _workflow_listed(page: Page, description: str, log: Path) -> Locator:
    """The workflow's entry on FastAgency's page. Its discovery call is made once per page load;
    when it fails, the page says "No workflows found, click to retry", and a person clicks: so
    does this, a few times, before it fails with what the Mesop app logged."""
    workflow = page.get_by_text(description, exact=True)
    retry = page.get_by_role("button", name="No workflows found, click to retry")
    for _ in range(3):
        expect(workflow.or_(retry)).to_be_visible(timeout=WAIT_MS)
        if workflow.is_visible():
            return workflow
        print("FastAgency's page found no workflows; clicking retry")
        retry.click()
    raise AssertionError(
        f"FastAgency's page never listed {description!r}; the Mesop app said:\n{log.read_text()[-4000:]}"
    )


def test_stock_mesop_ui_in_chromium(stack: LocalStack, fastagency_python: Path, tmp_path: Path) -> None:
    """A person in a browser: FastAgency's own Mesop page lists Flotilla's workflows, runs one,
    takes the answer from a click and shows the run completed."""
    shots = Shots(screenshot_dir(), "fastagency_mesop_ui")
    log = tmp_path / "mesop_app.log"
    with _mesop_app(fastagency_python, f"{stack.gateway_url}/fa/{BOB}", log) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", OutsideRequests().route)  # its fonts and scripts from CDNs: offline here
            page.goto(url)
            workflow = _workflow_listed(page, "Asks a multiple-choice question.", log)
            shots(page, "workflows")
            workflow.click()
            expect(page.get_by_text("Approve?", exact=True)).to_be_visible(timeout=WAIT_MS)
            shots(page, "question")
            page.get_by_role("button", name="yes", exact=True).click()
            expect(page.get_by_text("Workflow completed")).to_be_visible(timeout=WAIT_MS)

            # The run, through v1 (sync: Playwright's sync API holds this thread's event loop).
            deadline = time.monotonic() + 30
            while True:
                runs = httpx.get(f"{stack.gateway_url}/v1/runs", headers={"Authorization": f"Bearer {BOB}"}).json()
                chosen = [r for r in runs if r["workflow"] == "choose" and r["status"] == "completed"]
                if chosen:
                    break
                assert time.monotonic() < deadline, runs
                time.sleep(0.2)
            run = chosen[0]
            shots(page, "answered")
            assert run["result"] == "yes" and run["idempotency_key"].startswith("fastagency:")
        finally:
            browser.close()


def test_discovery_paths_tokens_and_scopes(stack: LocalStack) -> None:
    base = stack.gateway_url
    bearer = {"Authorization": f"Bearer {ALICE}"}
    expected = httpx.get(f"{base}/v1/workflows", headers=bearer).json()
    for url, headers in (
        (f"{base}/fastagency/discovery", bearer),
        (f"{base}//fastagency/discovery", bearer),  # what FastAPIProvider requests
        (f"{base}/fa/{ALICE}/fastagency/discovery", {}),
        (f"{base}/fa/{ALICE}//fastagency/discovery", {}),
        (f"{base}/fa/{ALICE}/fastagency/discovery", {"Authorization": "Bearer flk_not_a_key"}),  # the path decides
    ):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 200, (url, response.text)
        assert response.json() == expected
    for url, headers in (
        (f"{base}/fastagency/discovery", {}),
        (f"{base}//fastagency/discovery", {}),
        (f"{base}/fa/flk_not_a_key/fastagency/discovery", {}),
        (f"{base}/fa/flk_not_a_key//fastagency/discovery", bearer),  # the path decides
    ):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401, (url, response.text)
        assert response.json()["detail"] and response.headers["www-authenticate"] == "Bearer"
    denied = httpx.get(f"{base}/fa/{READER}/fastagency/discovery")
    assert denied.status_code == 403 and "workflows:read" in denied.json()["detail"]
    denied = httpx.post(
        f"{base}/fa/{READER}/fastagency/initiate_workflow",
        json={"workflow_name": "choose", "workflow_uuid": uuid.uuid4().hex, "user_id": None, "params": {}},
    )
    assert denied.status_code == 403 and "runs:write" in denied.json()["detail"]


def test_initiate_starts_nothing_and_the_socket_starts_one_run_per_identity(stack: LocalStack) -> None:
    ws_base = stack.gateway_url.replace("http://", "ws://")

    async def scenario() -> None:
        workflow_uuid = uuid.uuid4()
        body = {
            "workflow_name": "typed_params",
            "workflow_uuid": workflow_uuid.hex,
            "user_id": "whoever",  # ignored: the token says who calls
            "params": {"name": "Ada"},
        }
        async with httpx.AsyncClient(base_url=stack.gateway_url) as http, Api(stack.gateway_url, ALICE) as alice:
            first = await http.post(f"/fa/{ALICE}/fastagency/initiate_workflow", json=body)
            assert first.status_code == 200, first.text
            assert first.json() == {
                "user_id": "key:alice",
                "workflow_uuid": str(workflow_uuid),
                "name": "typed_params",
                "params": {"name": "Ada"},
            }
            again = await http.post(
                "/fastagency/initiate_workflow", json=body, headers={"Authorization": f"Bearer {ALICE}"}
            )
            assert again.status_code == 200 and again.json() == first.json()
            runs = (await alice.http.get("/v1/runs", params={"limit": 1000})).json()
            assert f"fastagency:{workflow_uuid.hex}" not in {r["idempotency_key"] for r in runs}

            # The socket starts the run; connecting again with the same uuid replays it, no second run.
            url = f"{ws_base}/fa/{ALICE}/fastagency/ws"
            for _ in range(2):
                messages, code, _ = await _ws_session(url, [_first("typed_params", workflow_uuid.hex, name="Ada")])
                assert code == 1000 and messages[-1]["content"]["result"] == "hello Ada"
            run = await _run_by_key(alice, workflow_uuid.hex)
            assert run["status"] == "completed" and run["params"] == {"name": "Ada"}

            # The same uuid from another identity is another run, which alice cannot see.
            await _ws_session(
                f"{ws_base}/fa/{BOB}/fastagency/ws", [_first("typed_params", workflow_uuid.hex, name="Bo")]
            )
            async with Api(stack.gateway_url, BOB) as bob:
                bobs = await _run_by_key(bob, workflow_uuid.hex)
            assert bobs["run_id"] != run["run_id"] and bobs["params"] == {"name": "Bo"}
            assert (await alice.http.get(f"/v1/runs/{bobs['run_id']}")).status_code == 404

            for bad, status, field in (
                ({**body, "workflow_name": "no_such_workflow"}, 404, "no_such_workflow"),
                ({**body, "workflow_uuid": "not-a-uuid"}, 422, "workflow_uuid"),
                ({**body, "workflow_name": "bad name!"}, 422, "workflow_name"),
                ({**body, "unexpected": 1}, 422, "unexpected"),
                ({key: value for key, value in body.items() if key != "workflow_name"}, 422, "workflow_name"),
            ):
                response = await http.post(f"/fa/{ALICE}/fastagency/initiate_workflow", json=bad)
                assert response.status_code == status, (bad, response.text)
                assert field in json.dumps(response.json()["detail"])
            garbage = await http.post(
                f"/fa/{ALICE}/fastagency/initiate_workflow",
                content=b"{not json",
                headers={"content-type": "application/json"},
            )
            assert garbage.status_code == 422, garbage.text

    asyncio.run(scenario())


async def _ws_session(url: str, frames: list[str], **connect: Any) -> tuple[list[dict[str, Any]], int, str]:
    """Send `frames` after connecting; read until the server closes. Messages, close code, reason."""
    received: list[dict[str, Any]] = []
    async with websockets.connect(url, **connect) as ws:
        for frame in frames:
            await ws.send(frame)

        async def consume() -> None:
            try:
                async for text in ws:
                    received.append(json.loads(text))
            except websockets.ConnectionClosedError:
                pass  # closed with an error code: the code is what the caller checks

        await asyncio.wait_for(consume(), 30)
        return received, ws.close_code or 0, ws.close_reason or ""


def _first(workflow: str, workflow_uuid: str | None = None, **params: Any) -> str:
    """The first frame FastAPIProvider sends (its InitiateWorkflowModel)."""
    return json.dumps(
        {"name": workflow, "workflow_uuid": workflow_uuid or uuid.uuid4().hex, "user_id": None, "params": params}
    )


def test_websocket_refusals_are_clear(stack: LocalStack) -> None:
    ws_base = stack.gateway_url.replace("http://", "ws://")

    async def scenario() -> None:
        for url in (f"{ws_base}/fastagency/ws", f"{ws_base}/fa/flk_not_a_key/fastagency/ws"):
            messages, code, _ = await _ws_session(url, [])
            assert (messages, code) == ([], 4401)
        _, code, reason = await _ws_session(f"{ws_base}/fa/{READER}/fastagency/ws", [])
        assert code == 4403 and "runs:write" in reason

        url = f"{ws_base}/fa/{ALICE}/fastagency/ws"
        for garbage, expected in (
            ("not json at all", "first frame"),
            (json.dumps({"name": "choose"}), "workflow_uuid"),
            (_first("choose", "not-a-uuid"), "workflow_uuid"),
            (json.dumps([1, 2]), "first frame"),
        ):
            messages, code, reason = await _ws_session(url, [garbage])
            assert code == 1008, (garbage, code, reason)
            assert expected in reason
            assert [m["type"] for m in messages] == ["error"] and expected in messages[0]["content"]["short"]

        messages, code, reason = await _ws_session(url, [_first("no_such_workflow")])
        assert code == 4404 and "no_such_workflow" in reason and messages[0]["type"] == "error"
        messages, code, reason = await _ws_session(url, [_first("typed_params", name="")])
        assert code == 1008 and "name" in reason and messages[0]["type"] == "error"

        workflow_uuid = uuid.uuid4().hex
        messages, code, _ = await _ws_session(url, [_first("ag2_chat", workflow_uuid)])
        assert code == 1000 and messages[-1]["type"] == "workflow_completed"
        _, code, reason = await _ws_session(url, [_first("choose", workflow_uuid)])
        assert code == 4409 and "ag2_chat" in reason

    asyncio.run(scenario())


def test_websocket_by_header_replays_and_rejects_stray_answers(stack: LocalStack) -> None:
    ws_base = stack.gateway_url.replace("http://", "ws://")
    headers = {"Authorization": f"Bearer {ALICE}"}

    async def scenario() -> None:
        # An answer while no question waits gets an error message; the run goes on to its end.
        workflow_uuid = uuid.uuid4().hex
        messages, code, _ = await _ws_session(
            f"{ws_base}/fastagency/ws",
            [_first("slow_messages", workflow_uuid, n=10, delay_s=0.05), "a stray answer"],
            additional_headers=headers,
        )
        assert code == 1000
        stray = [m for m in messages if m["type"] == "error"]
        assert len(stray) == 1 and "no question is waiting" in stray[0]["content"]["short"]
        assert [m["content"]["body"] for m in messages if m["type"] == "text_message"] == [
            f"message {i}" for i in range(10)
        ]
        assert messages[-1]["type"] == "workflow_completed" and messages[-1]["content"]["result"] == "10"

        # A question answered over one socket is replayed to the next as a message, not asked again.
        workflow_uuid = uuid.uuid4().hex
        async with websockets.connect(f"{ws_base}/fastagency/ws?token={ALICE}") as ws:
            await ws.send(_first("choose", workflow_uuid))
            while (question := json.loads(await ws.recv()))["type"] != "multiple_choice":
                pass
            assert question["content"]["choices"] == ["yes", "no"] and question["content"]["default"] == "no"
            await ws.send("yes")
            async for text in ws:
                last = json.loads(text)
            assert ws.close_code == 1000 and last["type"] == "workflow_completed" and last["content"]["result"] == "yes"
        messages, code, _ = await _ws_session(
            f"{ws_base}/fastagency/ws", [_first("choose", workflow_uuid)], additional_headers=headers
        )
        assert code == 1000
        assert [m["type"] for m in messages] == ["workflow_started", "text_message", "workflow_completed"]
        assert messages[1]["content"]["body"] == "Approve?\n\n(answered: yes)"

    asyncio.run(scenario())
