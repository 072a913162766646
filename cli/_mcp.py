"""``llmos mcp serve``: llmos chat agents served to MCP hosts (stdio or streamable HTTP)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from llmos.actors import ActorRef, stop_all
from llmos.agents import ChatAgent, serve_mcp, spawn
from llmos.models import FakeModel

__all__ = ["parse_agent", "run_mcp_serve"]

DEFAULT_AGENT = "assistant=You are a helpful, concise assistant."


def parse_agent(text: str) -> tuple[str, str]:
    """``NAME=PERSONA`` as ``(name, persona)``.

    Raises:
        ValueError: no ``=``, or an empty name.
    """
    name, sep, persona = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--agent takes NAME=PERSONA, got {text!r}")
    return name.strip(), persona.strip()


def run_mcp_serve(
    *,
    agents: list[str],
    transport: str,
    host: str,
    port: int,
    model: str | None,
    device: str,
    fake: bool,
    max_tokens: int,
    temperature: float | None,
    seed: int | None,
) -> int:
    """Start a model and the agents, then serve them over MCP until the host leaves."""
    specs = [parse_agent(a) for a in agents or [DEFAULT_AGENT]]
    # stdout is the protocol channel over stdio: every word for people goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    try:
        if fake:
            model_ref: ActorRef = FakeModel.start(name="model")
        else:
            from llmos.models import ModelActor, shared_model

            print("loading the model ...", file=sys.stderr, flush=True)
            shared_model(model, device=device)
            model_ref = ModelActor.start(model, device=device, name="model")
        # Unset flags keep ChatAgent's own defaults.
        options: dict[str, Any] = {"max_new_tokens": max_tokens}
        if temperature is not None:
            options["temperature"] = temperature
        if seed is not None:
            options["seed"] = seed
        refs = {
            name: spawn(ChatAgent, model_ref, persona, name=name, **options)
            for name, persona in specs
        }
        where = "stdio" if transport == "stdio" else f"http://{host}:{port}/mcp"
        print(f"serving {', '.join(refs)} over MCP ({where})", file=sys.stderr, flush=True)
        serve_mcp(refs, "stdio" if transport == "stdio" else "http", host, port)
    finally:
        stop_all(timeout=10.0)
    return 0
