"""The local model on this machine: tokens/s (prompt and generation), memory, and how long a
student/teacher learning chat (the seed's example, `initiate_chat(max_turns=3)`) takes.

    ./pants run bench:llm -- [--turns 3] [--topic Physics] [--samples 3]

Uses the local backend with the FLOTILLA_LLM_* settings (model dir, threads, ctx, max_tokens);
the first run downloads the bundled model. Prints numbers and the chat's transcript.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from autogen import ConversableAgent

from measure import rss_mb
from flotilla.llm import Completion, LlmService, LlmSettings, create_backend, llm_config, llm_run, register_llm

QUESTIONS = [
    "Explain in a few sentences why the sky is blue, for a student who knows little physics.",
    "Describe how a bicycle stays upright while it moves, in simple words, with one example.",
    "What is photosynthesis, and why does it matter for animals as well as for plants?",
    "Why do we have seasons on Earth? Give the main reason and correct one common mistake.",
    "How does a refrigerator keep food cold? Explain the idea of moving heat around.",
]


def speed(service: LlmService, samples: int) -> tuple[float, float, int, int]:
    """Median prompt and generation tokens/s over `samples` fresh prompts (no prompt cache hits)."""
    prompt, generation, prompt_n, generated_n = [], [], 0, 0
    for question in (QUESTIONS * samples)[:samples]:
        messages = [{"role": "system", "content": "You are a helpful teacher."}, {"role": "user", "content": question}]
        completion = service.complete_sync(messages, max_tokens=128)
        timings = completion.timings or {}
        prompt.append(float(timings.get("prompt_per_second", 0.0)))
        generation.append(float(timings.get("predicted_per_second", 0.0)))
        prompt_n += int(timings.get("prompt_n", 0))
        generated_n += int(timings.get("predicted_n", 0))
    return statistics.median(prompt), statistics.median(generation), prompt_n, generated_n


def learning_chat(service: LlmService, topic: str, turns: int) -> tuple[float, list[Completion], list[str]]:
    """The seed's learning chat: a student and a teacher agent, then a summary by reflection."""
    student = ConversableAgent(
        "Student_Agent",
        system_message="You are a student willing to learn.",
        llm_config=llm_config(),
        human_input_mode="NEVER",
    )
    teacher = ConversableAgent(
        "Teacher_Agent", system_message="You are a math teacher.", llm_config=llm_config(), human_input_mode="NEVER"
    )
    register_llm(student, llm=service)
    register_llm(teacher, llm=service)
    completions: list[Completion] = []
    started = time.perf_counter()
    with llm_run(recorder=lambda _, completion: completions.append(completion)):
        result = student.initiate_chat(
            teacher,
            message=f"I want to learn about {topic}.",
            max_turns=turns,
            summary_method="reflection_with_llm",
            silent=True,
        )
    duration = time.perf_counter() - started
    transcript = [f"{m.get('name')}: {m.get('content')}" for m in result.chat_history]
    transcript.append(f"summary: {result.summary}")
    return duration, completions, transcript


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--topic", default="Physics")
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()

    settings = LlmSettings.from_env().model_copy(update={"backend": "local"})
    before = rss_mb()
    started = time.perf_counter()
    service = LlmService(create_backend(settings))
    loaded_s = time.perf_counter() - started
    loaded_rss = rss_mb()

    prompt_tps, generation_tps, prompt_n, generated_n = speed(service, args.samples)
    duration, completions, transcript = learning_chat(service, args.topic, args.turns)
    generated = sum(c.completion_tokens for c in completions)
    prompted = sum(c.prompt_tokens for c in completions)
    after = rss_mb()
    service.close()

    out = sys.stdout
    out.write(f"model            {service.model} (threads={settings.threads}, ctx={settings.ctx})\n")
    out.write(f"fetch+load       {loaded_s:.2f} s\n")
    out.write(f"prompt           {prompt_tps:.0f} tokens/s (median of {args.samples}, {prompt_n} tokens)\n")
    out.write(f"generation       {generation_tps:.0f} tokens/s (median of {args.samples}, {generated_n} tokens)\n")
    out.write(
        f"learning chat    {duration:.2f} s for max_turns={args.turns} + summary: {len(completions)} completions, "
        f"{prompted} prompt + {generated} generated tokens\n"
    )
    out.write(
        f"RSS              {before:.0f} MB before the model, {loaded_rss:.0f} MB loaded, {after:.0f} MB after the chat\n"
    )
    out.write("\n--- transcript ---\n")
    for line in transcript:
        out.write(line.replace("\n", " ")[:400] + "\n")


if __name__ == "__main__":
    main()
