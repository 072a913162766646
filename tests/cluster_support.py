"""An actor for the cluster tests that runs on a node Ray started (imported in that process):
it finds another node's actor by name through the cluster it runs in, and asks it."""

from __future__ import annotations

from typing import Any

from llmos.actors import Actor
from llmos.cluster import current
from llmos.models import Completion, Generate


class Finder(Actor):
    """Answers ``[node, actor, text]`` with what ``actor`` on ``node`` answered to ``text``,
    as seen from this node: the cluster's node names, the ref's kind and address, the text."""

    def on_receive(self, message: Any) -> Any:
        node, actor, text = message
        cluster = current()
        names = [info.name for info in cluster.nodes()]
        ref = cluster.lookup(actor, node=node)
        answer = ref.ask(Generate(messages=[{"role": "user", "content": text}]), timeout=30).get()
        assert isinstance(answer, Completion)
        return {"nodes": names, "ref": type(ref).__name__, "address": ref.node, "text": answer.text}
