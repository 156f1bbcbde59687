"""RunService against a real nats-server: what a caller reads agrees with the log it watched."""

from __future__ import annotations

import asyncio

import nats

from flotilla.dispatch import RunService
from flotilla.ids import new_run_id
from flotilla.jetstream import EventLog, Layout, LogPosition, RunEventWriter, RunStore, provision
from flotilla.processes import Child
from flotilla.protocol import Caller, ModelUsage, Run, RunStatus, TextMessage, WorkflowCompleted


def test_a_run_whose_log_has_ended_reads_as_ended_before_its_record_is_updated(nats_server: Child) -> None:
    """The worker appends `workflow_completed`, then updates the record. A client that saw the
    terminal event on its stream and asks for the run at once must not read "running"."""

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        service = RunService(nc)
        try:
            js = nc.jetstream()
            await provision(js, Layout())
            await service.open()
            runs = await RunStore.open(js, with_headers=True)
            run_id = new_run_id()
            await runs.create(
                Run(run_id=run_id, workflow="load", owner="ada", status=RunStatus.RUN_STATUS_RUNNING, lease="w1")
            )
            ada = Caller(identity="ada")
            writer = RunEventWriter(EventLog(nc), run_id, after=LogPosition())
            await writer.emit("text_message", TextMessage(body="working"))
            await writer.flush()
            assert (await service.get_run(run_id, ada)).status == RunStatus.RUN_STATUS_RUNNING

            usage = [ModelUsage(model="m", prompt_tokens=3, completion_tokens=4)]
            done = WorkflowCompleted(status="completed", result_json='{"ok": true}', usage=usage)
            await writer.emit("workflow_completed", done)
            await writer.flush()

            seen = await service.get_run(run_id, ada)
            assert seen.status == RunStatus.RUN_STATUS_COMPLETED
            assert seen.result_json == '{"ok": true}' and list(seen.usage) == usage
            assert seen.HasField("finished_at") and not seen.lease
            stored, _ = await runs.get(run_id)
            assert stored.status == RunStatus.RUN_STATUS_RUNNING  # a read never writes the record
        finally:
            await service.close()
            await nc.close()

    asyncio.run(scenario())
