"""What one events POST costs the sending process, by HTTP client, side by side.

What: the same gzip-compressed body of N ``chunk_produced`` events, POSTed over one
kept-alive connection to the minimal Octomil API (``octomil_otel.receiver``, in a child
process on 127.0.0.1, so its work is not counted) by:

  * ``octomil``: the reporter's own connection (``octomil_otel.export._http``);
  * ``http.client``: the standard library's, the body compressed once beforehand;
  * ``urllib3``: a pool from ``urllib3.connection_from_url``, as the reporter used before.

Rounds alternate between them; each round times R POSTs with ``time.process_time()``
(every thread of this process: user and system CPU, the kernel's loopback work included).
Printed: the median CPU per POST of each, and each against ``octomil``'s.

Why: the reporter sends a POST about every ten served requests (at ~50 events a request
and 500 a POST), so a client's per-request overhead is paid by every request.

Run: ``.venv/bin/python bench/http_post_cost.py [--events 500] [--posts 60] [--rounds 5]``
"""

from __future__ import annotations

import http.client
import statistics
import time
import urllib.parse
from collections.abc import Callable

import _common
import urllib3
from isal import igzip

from octomil_otel.export import _http
from octomil_otel.export._transport import EVENTS_PATH

API_KEY = "sk-bench-0123456789abcdef"
EVENT = (
    '{"device_id":"0123456789ab","org_id":"org_bench","event_type":"chunk_produced",'
    '"timestamp":"2026-11-30T20:00:00.123Z","model":"echo","engine":"echo",'
    '"request_id":"req_0123456789abcdef","stream":true,'
    '"metrics":{"chunk_index":7,"chunk_latency_ms":12345e-6}}'
)
HEADERS = {
    "Authorization": f"Bearer {API_KEY}",
    "Content-Type": "application/json",
    "Content-Encoding": "gzip",
}


def clients(url: str, body: bytes) -> dict[str, Callable[[], int]]:
    """name -> one POST of ``body``, returning the status."""
    parts = urllib.parse.urlsplit(url)
    ours = _http.Connection(url, 3.0, 10.0)
    standard = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    pool = urllib3.connection_from_url(url, maxsize=1)

    def octomil() -> int:
        return ours.request("POST", EVENTS_PATH, HEADERS, body)[0]

    def stdlib() -> int:
        standard.request("POST", EVENTS_PATH, body=body, headers=HEADERS)
        response = standard.getresponse()
        response.read()
        return response.status

    def pooled() -> int:
        return pool.urlopen("POST", EVENTS_PATH, body=body, headers=HEADERS, retries=False).status

    return {"octomil": octomil, "http.client": stdlib, "urllib3": pooled}


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--events", type=int, default=500, help="events per POST")
    parser.add_argument("--posts", type=int, default=60, help="POSTs per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    text = '{"events":[' + ",".join([EVENT] * args.events) + "]}"
    body = igzip.compress(text.encode("ascii"), 1)
    receiver = _common.ReceiverProcess(API_KEY).start()
    try:
        posts = clients(receiver.url, body)
        seconds: dict[str, list[float]] = {name: [] for name in posts}
        for _ in range(args.rounds):
            for name, post in posts.items():
                assert post() == 202, name  # and a warm connection
                started = time.process_time()
                for _ in range(args.posts):
                    post()
                seconds[name].append((time.process_time() - started) / args.posts)
    finally:
        receiver.stop()

    print(f"{args.events} events a POST ({len(body)} bytes gzip), {args.posts} POSTs x "
          f"{args.rounds} rounds; CPU of this process per POST (median of rounds):")  # fmt: skip
    ours = statistics.median(seconds["octomil"])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:12} {median * 1e6:7.0f} us   {median / ours:4.2f}x octomil's")


if __name__ == "__main__":
    main()
