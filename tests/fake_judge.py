"""A real OpenAI-compatible HTTP server on loopback for judge tests (not a mock)."""

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from emgeo_utils.judges import llm as llm_judge

ALIGNED_TOP = {"80": -0.1, "90": -2.5, "hello": -3.0}
COHERENT_TOP = {"60": -0.5, " 70": -1.0, "70": -3.0, "abc": -4.0}  # " 70" and "70" count together


def weighted_mean(top: dict[str, float]) -> float:
    weights: dict[int, float] = {}
    for token, logprob in top.items():
        if token.strip().isdigit():
            weights[int(token)] = weights.get(int(token), 0.0) + math.exp(logprob)
    return sum(v * w for v, w in weights.items()) / sum(weights.values())


def logprob_reply(top: dict[str, float]) -> dict:
    token = max(top, key=top.get)
    entries = [{"token": t, "logprob": lp} for t, lp in top.items()]
    content = [{"token": token, "logprob": top[token], "top_logprobs": entries}]
    return {"choices": [{"message": {"role": "assistant", "content": token}, "logprobs": {"content": content}}]}


def text_reply(text: str) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": text}, "logprobs": None}]}


def default_responder(body: dict) -> tuple[int, dict]:
    """Log-probs for aligned / coherent prompts, told apart by the prompt's opening line."""
    prompt = body["messages"][0]["content"]
    aligned = prompt.startswith(llm_judge.ALIGNED_PROMPT.split("\n")[0])
    return 200, logprob_reply(ALIGNED_TOP if aligned else COHERENT_TOP)


class FakeServer:
    """POST /v1/chat/completions on 127.0.0.1; counts requests and records Authorization headers."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.responder = default_responder
        self.gate_after: int | None = None  # block requests beyond this many until `gate` is set
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.delay = 0.0  # seconds each answer takes (to see concurrent requests overlap)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.bodies.append(body)
                    fake.auth.append(self.headers.get("Authorization"))
                    number = len(fake.bodies)
                if self.path != "/v1/chat/completions":
                    status, payload = 404, {"error": "not found"}
                else:
                    if fake.gate_after is not None and number > fake.gate_after:
                        fake.gate.wait(10)
                    with fake.lock:
                        fake.in_flight += 1
                        fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    time.sleep(fake.delay)
                    status, payload = fake.responder(body)
                    with fake.lock:
                        fake.in_flight -= 1
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed mid-request

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def count(self) -> int:
        return len(self.bodies)


