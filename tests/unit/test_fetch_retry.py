"""The retry policy and ``Fetcher.get_bytes``'s retry logic, against ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from mirrorkit.errors import FetchError, MirrorkitError
from mirrorkit.fetch import Fetcher, RetryPolicy

URL = "http://mirror.invalid/debian/dists/stable/InRelease"

# -- RetryPolicy.delay ---------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 8, 20, 100])
def test_delay_is_full_jitter_within_the_exponential_cap(attempt: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    cap = min(30.0, 0.5 * 2 ** (attempt - 1))
    delays = [policy.delay(attempt) for _ in range(300)]
    assert all(0.0 <= d <= cap for d in delays)
    # Full jitter: spread over the whole range, not stuck at either end.
    assert min(delays) < cap * 0.2
    assert max(delays) > cap * 0.8


def test_delay_grows_then_stays_bounded() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=4.0)
    rng_state = random.getstate()
    try:
        random.seed(1)
        means = [sum(policy.delay(a) for _ in range(400)) / 400 for a in (1, 2, 3, 10)]
    finally:
        random.setstate(rng_state)
    assert means[0] < means[1] < means[2]
    assert means[3] <= 4.0
    assert means[3] == pytest.approx(2.0, abs=0.4)  # uniform over [0, max_delay]


def test_delay_honours_retry_after_seconds() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    assert policy.delay(1, "7") == 7.0
    assert policy.delay(5, " 3 ") == 3.0
    assert policy.delay(1, "0") == 0.0


def test_delay_caps_retry_after_at_max_delay() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    assert policy.delay(1, "3600") == 30.0


def test_delay_honours_retry_after_http_date() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    future = formatdate(time.time() + 10, usegmt=True)
    assert 8.0 <= policy.delay(1, future) <= 10.0
    past = formatdate(time.time() - 100, usegmt=True)
    assert policy.delay(1, past) == 0.0
    far = formatdate(time.time() + 86_400, usegmt=True)
    assert policy.delay(1, far) == 30.0


@pytest.mark.parametrize("garbage", ["soon", "-5", "1.5", "", "Mon, 99 Foo 2020"])
def test_unparsable_retry_after_falls_back_to_backoff(garbage: str) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    for _ in range(50):
        assert 0.0 <= policy.delay(2, garbage) <= 1.0


# -- Fetcher.get_bytes with a mock transport ---------------------------------------------------


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Record the backoff sleeps instead of waiting them out."""
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, result: Any = None) -> Any:
        recorded.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)  # fetch.py calls asyncio.sleep
    yield recorded


def run_with(
    handler: Handler,
    call: Callable[[Fetcher], Coroutine[Any, Any, Any]],
    policy: RetryPolicy | None = None,
) -> Any:
    async def main() -> Any:
        fetcher = Fetcher(retry=policy or RetryPolicy(max_tries=3, base_delay=0.25))
        # Unit tests of retry logic only: the real client is swapped for a mock transport.
        await fetcher._client.aclose()
        fetcher._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))  # type: ignore[assignment]
        async with fetcher:
            return await call(fetcher)

    return asyncio.run(main())


class _Stream(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), 4):
            yield self.data[i : i + 4]


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering with ``responses`` in turn (the last one forever)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = responses[min(len(seen), len(responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        # A fresh, really streamed response each time (like the network gives): a body given as
        # bytes counts as read already, and fetch streams the raw body.
        return httpx.Response(
            answer.status_code, headers=answer.headers, stream=_Stream(answer.content)
        )

    return handler, seen


def get(fetcher: Fetcher, **kwargs: Any) -> Coroutine[Any, Any, bytes | None]:
    return fetcher.get_bytes(URL, **kwargs)


def test_503_twice_then_success(sleeps: list[float]) -> None:
    handler, seen = scripted(
        httpx.Response(503), httpx.Response(503), httpx.Response(200, content=b"ok")
    )
    assert run_with(handler, get) == b"ok"
    assert len(seen) == 3
    assert len(sleeps) == 2
    assert 0.0 <= sleeps[0] <= 0.25 and 0.0 <= sleeps[1] <= 0.5


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_retryable_statuses_give_up_after_max_tries(code: int, sleeps: list[float]) -> None:
    handler, seen = scripted(httpx.Response(code))
    with pytest.raises(FetchError) as info:
        run_with(handler, get)
    assert len(seen) == 3
    assert len(sleeps) == 2  # no sleep after the last try
    err = info.value
    assert err.url == URL
    assert f"HTTP {code}" in err.message and "gave up after 3 tries" in err.message
    assert err.hint and "--max-tries" in err.hint


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
def test_client_errors_are_not_retried(code: int, sleeps: list[float]) -> None:
    handler, seen = scripted(httpx.Response(code), httpx.Response(200, content=b"never"))
    with pytest.raises(FetchError) as info:
        run_with(handler, get)
    assert len(seen) == 1 and sleeps == []
    assert info.value.url == URL and f"HTTP {code}" in info.value.message


def test_404_has_a_hint() -> None:
    handler, _ = scripted(httpx.Response(404))
    with pytest.raises(FetchError) as info:
        run_with(handler, get)
    assert info.value.hint


def test_404_with_missing_ok_is_none_without_retry(sleeps: list[float]) -> None:
    handler, seen = scripted(httpx.Response(404))
    assert run_with(handler, lambda f: get(f, missing_ok=True)) is None
    assert len(seen) == 1 and sleeps == []


def test_missing_ok_does_not_hide_other_errors() -> None:
    handler, seen = scripted(httpx.Response(403))
    with pytest.raises(FetchError):
        run_with(handler, lambda f: get(f, missing_ok=True))
    assert len(seen) == 1


def test_retry_after_is_honoured(sleeps: list[float]) -> None:
    handler, _ = scripted(
        httpx.Response(503, headers={"Retry-After": "2"}),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(200, content=b"ok"),
    )
    assert run_with(handler, get) == b"ok"
    assert sleeps == [2.0, 0.0]


def test_transport_errors_are_retried(sleeps: list[float]) -> None:
    handler, seen = scripted(
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.Response(200, content=b"ok"),
    )
    assert run_with(handler, get) == b"ok"
    assert len(seen) == 3 and len(sleeps) == 2


def test_transport_errors_give_up_with_the_cause_named() -> None:
    handler, seen = scripted(httpx.ConnectError("connection refused"))
    with pytest.raises(FetchError) as info:
        run_with(handler, get, RetryPolicy(max_tries=2, base_delay=0.0))
    assert len(seen) == 2
    assert "ConnectError" in info.value.message and "gave up after 2 tries" in info.value.message
    assert isinstance(info.value, MirrorkitError)


def test_max_tries_one_means_no_retry(sleeps: list[float]) -> None:
    handler, seen = scripted(httpx.Response(503), httpx.Response(200, content=b"ok"))
    with pytest.raises(FetchError):
        run_with(handler, get, RetryPolicy(max_tries=1))
    assert len(seen) == 1 and sleeps == []


def test_oversized_body_is_refused_without_retry(sleeps: list[float]) -> None:
    handler, seen = scripted(httpx.Response(200, content=b"x" * 1000))
    with pytest.raises(FetchError) as info:
        run_with(handler, lambda f: get(f, max_size=100))
    assert "larger than 100 bytes" in info.value.message
    assert len(seen) == 1 and sleeps == []


def test_bytes_transferred_counts_the_body() -> None:
    handler, _ = scripted(httpx.Response(200, content=b"0123456789"))

    async def call(f: Fetcher) -> int:
        await get(f)
        return f.bytes_transferred

    assert run_with(handler, call) == 10
