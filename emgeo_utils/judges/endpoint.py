"""An OpenAI-compatible chat-completions endpoint, as the LLM judge uses it.

One completion token with its top-20 log-probs per prompt, or, from the first time a server
returns none, a short text completion. 429, 5xx and connection errors are retried with
exponential backoff. The API key is read from the environment at request time and is never
stored, printed or put in an error message.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

RETRY_STATUSES = {429, 500, 502, 503, 504}


class JudgeError(RuntimeError):
    """The judge could not get an answer (bad key, HTTP error after retries, bad response)."""


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ChatEndpoint:
    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 5, base_delay: float = 1.0):
        self.base_url, self.model, self.api_key_env = base_url.rstrip("/"), model, api_key_env
        self.timeout, self.max_retries, self.base_delay = timeout, max_retries, base_delay
        self.logprobs_supported = True  # set False the first time the server returns none
        if not os.environ.get(api_key_env) and not is_loopback(base_url):
            raise JudgeError(f"no API key for {self.base_url}: set the environment variable {api_key_env}")

    def redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "[redacted]") if key else text

    def post(self, body: dict) -> dict:
        """POST /chat/completions, retrying 429 / 5xx / connection errors with exponential backoff."""
        headers = {"Content-Type": "application/json"}
        if os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[self.api_key_env]}"
        request = urllib.request.Request(f"{self.base_url}/chat/completions", json.dumps(body).encode(), headers)
        for attempt in range(self.max_retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as err:
                problem = f"HTTP {err.code}: {err.read()[:300].decode('utf-8', 'replace')}"
                if err.code not in RETRY_STATUSES:
                    break
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
                problem = f"{type(err).__name__}: {err}"
            except json.JSONDecodeError as err:
                problem = f"response is not JSON ({err.msg})"
                break
            if attempt < self.max_retries:
                time.sleep(self.base_delay * 2 ** attempt)
        raise JudgeError(self.redact(f"judge {self.model} at {self.base_url} failed: {problem}")) from None

    def ask(self, prompt: str) -> dict:
        """The server's raw answer to one prompt: {"top_logprobs": {...}} or {"text": ...}."""
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0}
        try:
            if self.logprobs_supported:
                choice = self.post({**body, "max_tokens": 1, "logprobs": True, "top_logprobs": 20})["choices"][0]
                content = (choice.get("logprobs") or {}).get("content") or []
                if content and content[0].get("top_logprobs"):
                    return {"top_logprobs": {e["token"]: e["logprob"] for e in content[0]["top_logprobs"]}}
                self.logprobs_supported = False  # this server gives no log-probs: parse text from now on
            choice = self.post({**body, "max_tokens": 8})["choices"][0]
            return {"text": choice["message"]["content"] or ""}
        except (KeyError, IndexError, TypeError) as err:
            raise JudgeError(f"judge {self.model} at {self.base_url} sent an unexpected response "
                             f"({type(err).__name__}: {err})") from None
