"""The `openai-agents` SDK over the Responses API, against the real
`parlance serve`: an agent with a function tool, run on the served default
model with `tool_choice="required"` and
`tool_use_behavior="stop_on_first_tool"`, calls the tool and returns its
output.
"""

from __future__ import annotations

import asyncio

import openai
from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)

# Traces would be posted to OpenAI; nothing leaves the machine here.
set_tracing_disabled(True)


def test_agent_calls_its_tool_and_returns_its_output(server, model):
    calls = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"It is sunny in {city}."

    client = openai.AsyncOpenAI(base_url=f"{server.root}/v1", api_key="sk-test", max_retries=0)
    agent = Agent(
        name="weather",
        instructions="Answer questions about the weather with the get_weather tool.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=model, openai_client=client),
        # Greedy, one call per turn, and room to finish it.
        model_settings=ModelSettings(
            tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=200
        ),
        tool_use_behavior="stop_on_first_tool",
    )

    async def run():
        try:
            return await Runner.run(agent, "What is the weather in Paris?")
        finally:
            await client.close()

    result = asyncio.run(run())
    assert len(calls) == 1, f"the tool was called {len(calls)} times"
    assert result.final_output == f"It is sunny in {calls[0]}."
