"""Keyspace events of the backing Redis, delivered to the runtime's listeners.

The runtime turns keyevent notifications on (merging with flags already set), so
writes made directly to the backing Redis are seen as well as those relayed. The
subscription reconnects with backoff when the backing Redis restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from gearcam.cancel import cancel_and_wait, wait_for
from gearcam.errors import ConfigError, NetworkError
from gearcam.runtime.relay import Address, BackendLink, OwnLink
from gearcam.runtime.resp import ErrorReply, ProtocolError, parse_reply

__all__ = [
    "PRIVATE_PREFIX", "KeyEvents", "keep_required_flags", "merge_flags", "missing_flags", "private_notification",
]  # fmt: skip

logger = logging.getLogger(__name__)

Listener = Callable[[str, int, bytes], None]
# E: keyevent channels; g: generic (del, expire, rename); x: expired; e: evicted; $: string; t: stream;
# l, s, h, z: list, set, hash and sorted-set events (Gears KeysReader registrations react to every type).
REQUIRED_FLAGS = "Egxe$tlshz"
# A message the runtime publishes after a client's write: when it arrives here, so have that write's events.
FENCE_CHANNEL = b"__gearcam__:fence"
# Published on FENCE_CHANNEL around a Gears reader's read and a mode='sync' KeysReader's write, in one transaction
# with it: the events between the two are ones no KeysReader registration may see (gears/link.py, transaction).
KEYS_QUIET_ON, KEYS_QUIET_OFF = b"keys-quiet:on", b"keys-quiet:off"
# Every event but the stream type's (xadd, xtrim, xdel, xgroup-*, xsetid): the AI store never needs those
# (a stream is never a tensor, and writing one over a tensor is WRONGTYPE), and a camera's every frame sends one.
EVENTS = b"__keyevent@*__:[^x]*"
# The stream events: subscribed while Gears has registrations (StreamReader, KeysReader), which need them.
STREAM_EVENTS = b"__keyevent@*__:x*"
_CHANNELS_KEPT = 4096  # parsed channel names remembered (16 DBs times Redis' event names fit many times)
# A subscription that lasted this long was up: the next one starts at once. One dropped sooner (a Redis
# that kills its pub/sub clients as they arrive) backs off as a failure does, not reconnecting in a loop.
_UP_FOR_S = 1.0
# While subscribed, the flags are read again this often: a CONFIG SET sent straight to the backing Redis
# (not through the runtime, which keeps the flags in what it relays) may have turned the events off.
FLAGS_CHECK_S = 5.0
# The runtime's own keys (temporary keys of the AI store's checked commit, the probe below): their events
# go to no listener, as inside Redis, where the modules write no such keys.
PRIVATE_PREFIX = b"gearcam:tmp:"
_CONFIG_PARAMETER = b"notify-keyspace-events"


def private_notification(frame: bytes) -> bool:
    """Whether a pub/sub message frame relayed to a client is a keyspace notification about one of the runtime's
    own keys (`__keyspace@0__:gearcam:tmp:...`, or `__keyevent@0__:set` naming one): a client subscribed through
    the runtime does not get those, as no subscriber of Redis with RedisAI sees a module's private work."""
    if PRIVATE_PREFIX not in frame:
        return False
    try:
        message = parse_reply(frame)
    except ProtocolError:
        return False
    if not isinstance(message, list) or len(message) < 3 or message[0] not in (b"message", b"pmessage"):
        return False
    channel, payload = message[-2], message[-1]
    if not isinstance(channel, bytes):
        return False
    if channel.startswith(b"__keyspace@"):
        return channel.partition(b"__:")[2].startswith(PRIVATE_PREFIX)
    return channel.startswith(b"__keyevent@") and isinstance(payload, bytes) and payload.startswith(PRIVATE_PREFIX)


def _classes_on(current: str) -> set[str]:
    """The flags of notify-keyspace-events `current`, with A spelled out (every class but m, keymiss)."""
    return set(current) | (set("g$lshzxet") if "A" in current else set())


def merge_flags(current: str, required: str = REQUIRED_FLAGS) -> str:
    """notify-keyspace-events flags that keep `current` and add `required`."""
    return "".join(sorted(_classes_on(current) | set(required)))


def missing_flags(current: str, required: str = REQUIRED_FLAGS) -> str:
    """The `required` event classes that `current` (notify-keyspace-events) leaves off."""
    on = _classes_on(current)
    return "".join(flag for flag in required if flag not in on)


def keep_required_flags(args: Sequence[bytes], required: str = REQUIRED_FLAGS) -> list[bytes]:
    """A `CONFIG SET` relayed for a client, with `required` kept in any notify-keyspace-events it sets.

    RedisGears and RedisAI receive key events whatever that parameter says (a module subscribes on
    its own), so a client turning it off must not blind the runtime: its value is merged instead
    (CONFIG GET then shows the merged flags, as it does from the runtime's start).
    """
    out = list(args)
    for index in range(2, len(out) - 1, 2):
        if out[index].lower() == _CONFIG_PARAMETER:
            with contextlib.suppress(UnicodeDecodeError):  # flags are ASCII: Redis refuses the value as it is
                out[index + 1] = merge_flags(out[index + 1].decode("ascii"), required).encode()
    return out


class KeyEvents:
    def __init__(self, address: Address, timeout: float, flags_check_s: float = FLAGS_CHECK_S) -> None:
        self._address = address
        self._timeout = timeout
        self._flags_check_s = flags_check_s
        # The event classes kept on: REQUIRED_FLAGS, and those a registration asked for since (require).
        self.required = REQUIRED_FLAGS
        # Why the backing Redis' settings keep the events from being ready, and what fixes it (None when
        # they are ready, or failing for another reason: unreachable, restarting). Startup refuses on it.
        self.refusal: str | None = None
        self._refused_now = asyncio.Event()
        self._probe_key: bytes | None = None  # a private key written to see its events arrive (_probe)
        self._probe_seen: set[str] = set()
        self._ready_since: float | None = None  # loop time the current subscription became ready
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        # Called after each (re)subscription: events sent while it was down are lost, so
        # listeners that must not miss a write (StreamReader registrations) look again.
        self.on_ready: list[Callable[[], None]] = []
        self._fences: dict[bytes, asyncio.Future[None]] = {}
        self._fence_ids = itertools.count(1)
        self._publisher = OwnLink(address, timeout)  # fences of clients whose user may not publish them
        self._publishing: set[asyncio.Future[None]] = set()  # (kept until they end)
        self._link: BackendLink | None = None  # the subscribed link, while there is one
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams = False  # subscribed (or to be) to STREAM_EVENTS
        # PSUBSCRIBEs of STREAM_EVENTS sent on the subscribed link and the confirmations Redis sent back: until
        # they match, a write may send no stream event here (streams_current waits for that).
        self._streams_asked = 0
        self._streams_confirmed = 0
        self._streams_waiters: list[asyncio.Future[None]] = []
        self._subscribed: asyncio.Future[None] | None = None  # Redis confirmed the link's first subscriptions
        # Called once stream events subscribed on a live subscription are confirmed: writes made before
        # that sent no event here, so StreamReader registrations look at their streams again.
        self.on_streams: list[Callable[[], None]] = []
        # Called with each message on FENCE_CHANNEL that is not one of this object's fences: a mark another
        # part published (StreamReader workers publish one with each look at their stream), in the order
        # events came.
        self.on_mark: list[Callable[[bytes], None]] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def require(self, flags: str) -> None:
        """Any thread: keep these classes on from now on, as the rest (a Gears keymiss hook needs `m`).

        RedisGears subscribes to what it needs for as long as it runs, whatever notify-keyspace-events
        says; here they stay in what a relayed CONFIG SET sets, and the periodic check turns them on again.
        """
        self.required = "".join(sorted(set(self.required) | set(flags)))

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    def want_stream_events(self, wanted: bool) -> None:
        """Any thread: subscribe to the stream events (or stop), e.g. as Gears registrations come and go."""
        if self._loop is None:
            self._streams = wanted  # applied when it subscribes
        else:
            self._loop.call_soon_threadsafe(self._set_streams, wanted)

    def _set_streams(self, wanted: bool) -> None:
        if wanted == self._streams:
            return
        self._streams = wanted
        link = self._link
        if link is not None and not link.closed.is_set():
            self._streams_asked += wanted
            link.send_passthrough([b"PSUBSCRIBE" if wanted else b"PUNSUBSCRIBE", STREAM_EVENTS], own=True)

    async def streams_current(self, timeout: float) -> None:
        """Main loop: return once Redis confirmed the stream events last asked for (want_stream_events).

        A StreamReader registration answers after this, so a stream written after its reply sends
        its XADDs here as events (each timed, as RedisGears times them), rather than being found
        later by the scan that follows the confirmation. While the subscription is down it returns
        at once: the on_ready listeners look at the streams when it is back.
        """
        if self._loop is None:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._loop.call_soon_threadsafe(self._wait_streams, waiter)  # after the _set_streams already asked for
        try:
            await wait_for(waiter, timeout)
        except TimeoutError:
            logger.warning("the backing Redis did not confirm the stream events in %.1fs; going on", timeout)

    def _wait_streams(self, waiter: asyncio.Future[None]) -> None:
        link = self._link
        if link is None or link.closed.is_set() or self._streams_confirmed >= self._streams_asked:
            if not waiter.done():
                waiter.set_result(None)
        else:
            self._streams_waiters.append(waiter)

    def _streams_subscribed(self) -> None:
        """A PSUBSCRIBE of STREAM_EVENTS confirmed: once the last one asked for is, the waiters go on, and after
        a late one (not the link's first) the on_streams listeners look at what was written before."""
        self._streams_confirmed += 1
        if self._streams_confirmed < self._streams_asked:
            return
        self._release_streams_waiters()
        if not self.ready.is_set():
            return  # the link's first subscription: its on_ready listeners look instead
        _notify(self.on_streams, "key events stream callback")

    def _release_streams_waiters(self) -> None:
        waiters, self._streams_waiters = self._streams_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        await self._publisher.close()

    async def _run(self) -> None:
        delay = 0.1
        loop = asyncio.get_running_loop()
        while True:
            self._ready_since = None
            try:
                await self._subscribe()
            except (NetworkError, OSError, ErrorReply) as exc:  # unreachable, refused, or its flags turned off
                if self._up_for(loop) >= _UP_FOR_S:
                    delay = 0.1  # it was up: the next outage starts over with a short wait
                logger.warning("key events unavailable, retrying in %.1fs: %s", delay, exc)
            except Exception:  # a bug: logged, and the events come back rather than stopping for good
                logger.exception("key events failed; retrying in %.1fs", delay)
            else:
                if self._up_for(loop) >= _UP_FOR_S:
                    logger.warning("key events connection to the backing Redis lost; reconnecting")
                    delay = 0.1  # it was up: the next outage starts over with a short wait
                    continue
                logger.warning("key events connection dropped %.1fs after it subscribed; retrying in %.1fs",
                               self._up_for(loop), delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _up_for(self, loop: asyncio.AbstractEventLoop) -> float:
        """Seconds the last subscription was ready (0 if it never was)."""
        return 0.0 if self._ready_since is None else loop.time() - self._ready_since

    async def _subscribe(self) -> None:
        """One subscription, from connecting until the backing Redis drops it."""
        link = await BackendLink.open(self._address, self._timeout, self._on_frame, authenticate=True)
        try:
            unreadable = await self._enable(link)
            link.passthrough = True
            link.only_messages(self._on_message)
            subscribed = self._subscribed = asyncio.get_running_loop().create_future()
            self._streams_asked, self._streams_confirmed = int(self._streams), 0
            link.send_passthrough([b"PSUBSCRIBE", EVENTS, *([STREAM_EVENTS] if self._streams else [])], own=True)
            link.send_passthrough([b"SUBSCRIBE", FENCE_CHANNEL], own=True)
            self._link = link
            await link.drain()
            # Ready once Redis confirmed the fence channel, subscribed last: the events of any write it runs
            # from then on come here (before, a scan by an on_ready listener could miss a write after it).
            closed = asyncio.ensure_future(link.closed.wait())
            try:
                await asyncio.wait([subscribed, closed], timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
            if not subscribed.done():
                if link.closed.is_set():
                    raise NetworkError("the backing Redis closed the key events connection before confirming them")
                raise NetworkError(f"the backing Redis did not confirm the key events in {self._timeout:g}s")
            subscribed.result()  # raises what refused it
            if unreadable is not None:
                await self._probe(unreadable)
            self.refusal = None
            self._ready_since = asyncio.get_running_loop().time()
            self.ready.set()
            _notify(self.on_ready, "key events ready callback")
            if unreadable is None:
                await self._watch(link)
            else:
                await link.closed.wait()  # nothing to read the flags with: they were seen to work
        finally:
            self.ready.clear()
            self._link = self._subscribed = None
            self._streams_asked = self._streams_confirmed = 0
            self._release_streams_waiters()  # their on_ready listeners look again once it is back
            for future in list(self._fences.values()):
                if not future.done():
                    future.set_exception(NetworkError("key events connection lost"))
            await link.close()

    async def _enable(self, link: BackendLink) -> str | None:
        """Turn on the event classes the runtime needs (merged with those set); Redis' refusal to read them, or None.

        Where they are off and this user may not turn them on, no event would ever come: that
        raises, with the fix. Where they cannot even be read (CONFIG refused or renamed, as managed
        Redis services do), the subscription probes for them instead (_probe).
        """
        try:
            current = await _flags(link)
        except ErrorReply as exc:
            return exc.message
        missing = missing_flags(current, self.required)
        if missing:
            wanted = merge_flags(current, self.required)
            try:
                await link.call(b"CONFIG", b"SET", _CONFIG_PARAMETER, wanted)
            except ErrorReply as exc:
                raise self._refuse(
                    f"the backing Redis sends no key events of the classes {missing!r} (notify-keyspace-events is "
                    f"{current!r}) and refused to turn them on ({exc.message}); set notify-keyspace-events "
                    f"{wanted} there (redis.conf, or CONFIG SET as an admin), or grant the runtime's "
                    "user +config|get +config|set"
                ) from None
        return None

    async def _probe(self, unreadable: str) -> None:
        """Where notify-keyspace-events cannot be read: write a private key and see its events arrive.

        `SET` and `DEL` of a key under PRIVATE_PREFIX, then a fence, on a link of their own: the
        fence arrives after the events those writes caused. Both seen, the strings and generic
        classes are on, and the rest of REQUIRED_FLAGS is taken on trust (logged).
        """
        key = PRIVATE_PREFIX + b"probe:" + uuid.uuid4().hex.encode()
        token = b"probe:" + key
        fence: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fences[token] = fence
        self._probe_key, self._probe_seen = key, set()
        probe = await BackendLink.open(self._address, self._timeout, authenticate=True)
        try:
            replies = await probe.pipeline([(b"SET", key, b"1", b"PX", b"60000"), (b"DEL", key),
                                            (b"PUBLISH", FENCE_CHANNEL, token)])  # fmt: skip
            errors = [reply.message for reply in replies if isinstance(reply, ErrorReply)]
            if errors and errors[0].startswith("NOPERM"):
                raise self._refuse(f"the backing Redis refused the runtime's key {key.decode()} ({errors[0]}); let "
                                   f"the runtime's user write keys {PRIVATE_PREFIX.decode()}*")  # fmt: skip
            if errors:  # LOADING, READONLY: it may pass later
                raise NetworkError(f"the key events could not be checked: {errors[0]}")
            try:
                await wait_for(fence, self._timeout)
            except TimeoutError:  # slow, not proven off: tried again
                raise NetworkError(f"the key events' probe got no reply in {self._timeout:g}s") from None
        finally:
            self._fences.pop(token, None)
            self._probe_key = None
            await probe.close()
        if not {"set", "del"} <= self._probe_seen:
            raise self._refuse(
                f"the backing Redis sends no key events for a SET and a DEL, and the runtime may not read or set "
                f"notify-keyspace-events ({unreadable}); set it to {self.required} there (redis.conf, your "
                "service's parameters, or CONFIG SET as an admin), or grant the runtime's user +config|get +config|set"
            )
        logger.warning(
            "the backing Redis' notify-keyspace-events cannot be read (%s); events of strings and generic commands "
            "arrive, the others among %s are taken to be on: make sure they are, or Gears' readers and the AI "
            "memory miss those writes", unreadable, self.required,
        )  # fmt: skip

    async def _watch(self, link: BackendLink) -> None:
        """While subscribed: read the flags every flags_check_s on a link of its own; return when the subscription
        drops, raise when the flags were turned off (the next subscription turns them on and forgets what
        memory knew: on_ready)."""
        control: BackendLink | None = None
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await wait_for(link.closed.wait(), self._flags_check_s)
                    return
                try:
                    if control is None or control.closed.is_set():
                        control = await BackendLink.open(self._address, self._timeout, authenticate=True)
                    current = await wait_for(_flags(control), self._timeout)
                except (NetworkError, OSError, ErrorReply, TimeoutError) as exc:
                    logger.debug("could not read notify-keyspace-events: %s", exc)  # the subscription tells outages
                    continue
                missing = missing_flags(current, self.required)
                if missing:
                    raise NetworkError(f"notify-keyspace-events on the backing Redis was changed to {current!r}: "
                                       f"no events of the classes {missing!r}; turning them on again")  # fmt: skip
        finally:
            if control is not None:
                await control.close()

    async def fence(self, link: BackendLink, timeout: float) -> bool:
        """After the commands sent so far on `link`: True once the events they caused were all delivered."""
        future = self.fence_soon(link)
        if future is None:
            return False
        await link.drain()
        try:
            await wait_for(future, timeout)
            return True
        except (TimeoutError, NetworkError):
            return False

    def fence_soon(self, link: BackendLink) -> asyncio.Future[None] | None:
        """Send a fence after the commands sent so far on `link`, without waiting; None while events are down.

        Redis sends a command's keyspace events and a later PUBLISH to subscribers in the order it ran
        them, so the fence message arrives after every event of the commands before it. The future
        fails with NetworkError if the subscription is lost first.
        """
        if not self.ready.is_set():
            return None
        token = str(next(self._fence_ids)).encode()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fences[token] = future
        future.add_done_callback(lambda _: self._fences.pop(token, None))

        def sent(reply: asyncio.Future[Any]) -> None:
            refused = reply.exception() is None and isinstance(reply.result(), ErrorReply)
            if refused and reply.result().message.startswith("NOPERM") and not future.done():
                # A user without the channel (Redis 7's default for new users): its write ran before this
                # reply came, so the runtime's own link publishes the fence after it just as well.
                task = asyncio.ensure_future(self._publish(token, future))
                self._publishing.add(task)
                task.add_done_callback(self._publishing.discard)
            elif (reply.exception() is not None or refused) and not future.done():
                future.set_exception(NetworkError("the fence could not be published"))

        link.send((b"PUBLISH", FENCE_CHANNEL, token), raw=False).add_done_callback(sent)
        return future

    async def _publish(self, token: bytes, fence: asyncio.Future[None]) -> None:
        """The fence `token` on the runtime's own link (opened when first needed)."""
        try:
            link = await self._publisher.get()
            published = not isinstance(await link.send((b"PUBLISH", FENCE_CHANNEL, token), raw=False), ErrorReply)
        except (NetworkError, OSError, ErrorReply):
            published = False
        if not published and not fence.done():
            fence.set_exception(NetworkError("the fence could not be published"))

    async def started(self, timeout: float) -> None:
        """At startup: return once ready, or after `timeout` (a Redis still loading); raise ConfigError as soon
        as the backing Redis' settings refuse the events, which no wait would change."""
        refused = asyncio.ensure_future(self._refused_now.wait())
        ready = asyncio.ensure_future(self.ready.wait())
        try:
            await asyncio.wait([ready, refused], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            refused.cancel()
        if not self.ready.is_set() and self.refusal is not None:
            raise ConfigError(f"{self.refusal}; the runtime cannot serve without them")

    def _refuse(self, text: str) -> NetworkError:
        """A failure the backing Redis' settings cause (it stays until someone changes them): remembered for startup."""
        self.refusal = text
        self._refused_now.set()
        return NetworkError(text)

    def _refused(self, error: ErrorReply) -> None:
        """A subscription refused (an ACL user without the channels): fail the link's first subscription, or log."""
        text = (f"the backing Redis refused the key events subscription ({error.message}); give the "
                "runtime's user on it the channels (ACL SETUSER <user> allchannels)")  # fmt: skip
        if self._subscribed is not None and not self._subscribed.done():
            self._subscribed.set_exception(self._refuse(text))  # logged where it retries
        else:
            logger.warning("%s", text)

    def _on_frame(self, frame: bytes) -> None:
        self._on_message(parse_reply(frame))

    def _on_message(self, message: Any) -> None:
        if not isinstance(message, list):
            if isinstance(message, ErrorReply):
                self._refused(message)
            return
        if len(message) == 4 and message[0] == b"pmessage":  # a key event: every write, checked first
            parsed = _parse_channel(message[2])
            if parsed is None:
                return
            event, db = parsed
            if message[3].startswith(PRIVATE_PREFIX):
                if message[3] == self._probe_key:
                    self._probe_seen.add(event)
                return
            for listener in self._listeners:
                try:
                    listener(event, db, message[3])
                except Exception:
                    logger.exception("key event listener failed")
        elif len(message) == 3 and message[0] == b"message":
            if message[1] != FENCE_CHANNEL:
                return
            future = self._fences.get(message[2])
            if future is None:
                _notify(self.on_mark, "fence mark listener", message[2])
            elif not future.done():
                future.set_result(None)
        elif message[:2] == [b"psubscribe", STREAM_EVENTS]:
            self._streams_subscribed()
        elif message[:2] == [b"subscribe", FENCE_CHANNEL]:
            if self._subscribed is not None and not self._subscribed.done():
                self._subscribed.set_result(None)


async def _flags(link: BackendLink) -> str:
    reply = await link.call(b"CONFIG", b"GET", _CONFIG_PARAMETER)
    return reply[1].decode() if isinstance(reply, list) and len(reply) == 2 else ""


def _notify(callbacks: Sequence[Callable[..., None]], what: str, *args: Any) -> None:
    for callback in callbacks:
        try:
            callback(*args)
        except Exception:
            logger.exception("%s failed", what)


@functools.lru_cache(maxsize=_CHANNELS_KEPT)  # bounded: any client may PUBLISH to such channels
def _parse_channel(channel: bytes) -> tuple[str, int] | None:
    """(event, db) of a "__keyevent@<db>__:<event>" channel: a few dozen carry every event, each parsed once."""
    head, _, event = channel.partition(b"__:")
    try:
        return event.decode(), int(head.rsplit(b"@", 1)[1])
    except (IndexError, ValueError):
        return None
