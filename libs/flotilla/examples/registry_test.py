from __future__ import annotations

from flotilla.examples import registry
from flotilla.examples.benchmarks import registry as benchmarks
from flotilla.examples.benchmarks import with_examples


def test_a_default_deployment_serves_no_benchmark_workflow() -> None:
    served = {info.name for info in registry.infos()}
    assert served == {"learning_chat", "tool_approval", "group_chat", "support_desk"}
    assert {info.name for info in benchmarks.infos()} == {"load", "load_sync"}


def test_with_examples_serves_both() -> None:
    served = {info.name for info in with_examples.infos()}
    assert served == {"learning_chat", "tool_approval", "group_chat", "support_desk", "load", "load_sync"}


def test_learning_chat_queues_replies() -> None:
    infos = {info.name: info for info in registry.infos()}
    assert infos["learning_chat"].double_texting == "queue"
    assert infos["tool_approval"].double_texting == "reject"


def test_a_reply_gives_both_agents_the_conversation_so_far() -> None:
    from autogen import ConversableAgent

    from flotilla.examples import _seed, _topic
    from flotilla.workflows import Thread, ThreadMessage

    student = ConversableAgent("student", llm_config=False, human_input_mode="NEVER")
    teacher = ConversableAgent("teacher", llm_config=False, human_input_mode="NEVER")
    thread = Thread(
        thread_id="t",
        reply_to="r",
        message="What is gravity?",
        history=(
            ThreadMessage("t", "workflow", "user", "What do you want to learn about?"),
            ThreadMessage("t", "user", "workflow", "Physics"),
            ThreadMessage("t", "student", "teacher", "Teach me about Physics."),
            ThreadMessage("t", "teacher", "student", "Physics is the study of matter."),
        ),
    )
    assert _topic(thread) == "Physics"
    _seed(student, teacher, thread)
    seen_by_teacher = [(m["role"], m["content"]) for m in teacher._oai_messages[student]]
    assert seen_by_teacher == [
        ("user", "What do you want to learn about?"),
        ("user", "(The person said:) Physics"),
        ("user", "Teach me about Physics."),
        ("assistant", "Physics is the study of matter."),
    ]
    seen_by_student = [m["role"] for m in student._oai_messages[teacher]]
    assert seen_by_student == ["user", "user", "assistant", "user"]
