"""An answer sent while it is being made: pieces go from a prediction thread to the
event loop through a short queue.

The queue holds at most MAX_WAITING_PIECES, so a slow client slows the prediction
instead of letting its answer pile up in memory; a client that goes away stops the
prediction at its next piece, which frees its admission slot.
"""
import asyncio
import concurrent.futures
import threading
from typing import AsyncIterator, Iterable

from starlette.responses import StreamingResponse

MAX_WAITING_PIECES = 8
PUT_POLL_SECONDS = 0.05  # how soon a blocked producer notices that its client has gone
# A backstop to PipedResponse closing the pipe: a reader that takes no piece (about a
# megabyte) for this long is taken as gone, even if nothing said so.
STALLED_READER_SECONDS = 120
_END = object()


class ClientGone(Exception):
  """The answer's reader stopped reading; the producer should stop."""


class AnswerPipe:
  """Pieces of one answer, from the thread that makes them to the coroutine that sends them."""

  def __init__(self, loop: asyncio.AbstractEventLoop):
    self._loop = loop
    self._queue: asyncio.Queue = asyncio.Queue(MAX_WAITING_PIECES)
    self._closed = threading.Event()
    self._finished: "asyncio.Future" = None

  def send_all(self, pieces: Iterable[bytes]) -> None:
    """Producer side (a prediction thread): sends every piece, then the end.

    A failure after the first piece is passed on to the reader, who can only cut the
    connection short: the status line has gone already.
    """
    try:
      for piece in pieces:
        self._put(piece)
    except ClientGone:
      raise
    except Exception as error:  # pylint: disable=broad-except
      self._put(error)
      raise
    self._put(_END)

  def _put(self, item) -> None:
    future = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
    waited = 0.0
    while True:
      try:
        future.result(PUT_POLL_SECONDS)
        return
      except concurrent.futures.TimeoutError:
        waited += PUT_POLL_SECONDS
        if self._closed.is_set() or waited >= STALLED_READER_SECONDS:
          future.cancel()
          raise ClientGone() from None

  async def first(self, job: "concurrent.futures.Future") -> bytes:
    """The first piece; or the job's error if it fails (or is refused) before making one."""
    piece = asyncio.ensure_future(self._queue.get())
    self._finished = asyncio.wrap_future(job)
    await asyncio.wait({piece, self._finished}, return_when=asyncio.FIRST_COMPLETED)
    if piece.done():
      return self._checked(piece.result())
    piece.cancel()
    self._finished.result()  # raises the job's error
    raise RuntimeError("the prediction finished without an answer")

  async def rest(self, first: bytes) -> AsyncIterator[bytes]:
    """Reader side: `first`, then every piece until the end."""
    try:
      item = first
      while item is not _END:
        yield item
        item = self._checked(await self._queue.get())
      # The job has given its admission slot back before the client sees the end, so
      # a client's next request never finds its own last one still holding a slot.
      await self._finished
    finally:
      self.close()

  def close(self) -> None:
    """The answer is sent, failed or abandoned: the producer stops at its next piece."""
    self._closed.set()

  @staticmethod
  def _checked(item):
    if isinstance(item, Exception):
      raise item
    return item


class PipedResponse(StreamingResponse):
  """A JSON answer sent from a pipe, which is closed however the sending ends (also when
  the client left before the first piece was sent, when the pieces are never read)."""

  def __init__(self, pipe: AnswerPipe, first: bytes):
    super().__init__(pipe.rest(first), media_type="application/json")
    self._pipe = pipe

  async def __call__(self, scope, receive, send):
    try:
      await super().__call__(scope, receive, send)
    finally:
      self._pipe.close()
