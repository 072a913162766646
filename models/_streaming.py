"""Streaming a model's answer chunk by chunk into asyncio.

Example::

    async with ModelStream(model_ref, Generate(messages=chat, max_new_tokens=64)) as stream:
        async for chunk in stream:
            print(chunk, end="", flush=True)
    print(stream.completion.finish_reason)
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from types import TracebackType
from typing import Any

from llmos.actors import Actor, ActorRef, AskTimeout, LlmosError, LocalRef, handler

from ._messages import Cancel, Completion, Generate, TokenChunk

__all__ = ["ModelStream", "StreamStalled"]

_ids = itertools.count(1)


class StreamStalled(AskTimeout):
    """Raised when a stream gets no chunk within its chunk timeout.

    The stream ends with this error, never as a normal end: the text so far is incomplete.
    """


class _Sink(Actor):
    """Receives the chunks and the completion, and hands them to the asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        super().__init__()
        self.loop = loop
        self.queue = queue

    def _hand_over(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:
            pass  # the loop is closed: nobody reads the stream any more

    @handler(TokenChunk)
    def chunk(self, msg: TokenChunk) -> None:
        self._hand_over(msg)

    @handler(Completion)
    def done(self, msg: Completion) -> None:
        self._hand_over(msg)


class ModelStream:
    """An async iterator over the text chunks of one Generate request.

    Args:
        model: the model actor's ref (local, pooled or remote).
        request: the request; its ``stream_to`` is filled in.
        timeout: the whole request's timeout (the ask's).
        chunk_timeout: the longest wait for the next chunk before :class:`StreamStalled`.

    After the iteration ends, ``completion`` holds the final :class:`Completion`. Leaving the
    ``async with`` before the end cancels the request: the model stops generating it at its
    next step.
    """

    def __init__(
        self,
        model: ActorRef,
        request: Generate,
        timeout: float = 120.0,
        chunk_timeout: float = 30.0,
    ) -> None:
        self.model = model
        self.request = request
        self.timeout = timeout
        self.chunk_timeout = chunk_timeout
        self.completion: Completion | None = None
        self.chunks: list[str] = []
        self._queue: asyncio.Queue[Any] | None = None
        self._sink: LocalRef | None = None
        self._ask: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> ModelStream:
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._sink = _Sink.start(loop, self._queue)
        request_id = self.request.request_id or f"stream-{id(self):x}-{next(_ids)}"
        request = dataclasses.replace(self.request, stream_to=self._sink, request_id=request_id)
        self.request = request
        self._ask = asyncio.create_task(self.model.ask_async(request, timeout=self.timeout))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ask is not None and not self._ask.done():
            self._ask.cancel()
            try:  # a model on another node does not see the sink stop: tell it
                self.model.tell(Cancel(self.request.request_id))
            except LlmosError:  # the model is gone: nothing left to cancel
                pass
        if self._sink is not None:
            await self._sink.stop_async(timeout=5)

    def __aiter__(self) -> ModelStream:
        return self

    async def __anext__(self) -> str:
        if self._queue is None or self._ask is None:
            raise RuntimeError("use ModelStream in 'async with'")
        if self.completion is not None:
            raise StopAsyncIteration
        get = asyncio.ensure_future(self._queue.get())
        waiting: set[asyncio.Future[Any]] = {get}
        if not self._ask.done():
            waiting.add(self._ask)
        done, _ = await asyncio.wait(
            waiting, timeout=self.chunk_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if self._ask in done and get not in done and self._ask.exception() is None:
            # Answered: the completion is on its way through the sink, right behind the chunks.
            done, _ = await asyncio.wait({get}, timeout=self.chunk_timeout)
        if get in done:
            item = get.result()
            if isinstance(item, Completion):
                self.completion = item
                raise StopAsyncIteration
            self.chunks.append(item.text)
            return str(item.text)
        get.cancel()
        if self._ask.done():
            self._ask.result()  # the request failed: raise its error
        raise StreamStalled(
            f"no chunk from {self.model!r} within {self.chunk_timeout:.3g} s; the stream is "
            "incomplete (raise chunk_timeout, or check the model actor's statistics())"
        )
