"""Judges: rating parser (fuzz), retry-then-missing, OpenAI-compatible judge over loopback, tiny local judge."""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from metrics.judges import (
    JudgeTemplates,
    JudgeUnavailableError,
    JudgeTransportError,
    OpenAICompatibleJudge,
    judge_alignment,
    clean_caption,
    merge_messages,
    parse_rating,
    rating_messages,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# ----------------------------------------------------------------------------------------------
# parse_rating


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("3", 3),
        (" 5\n", 5),
        ("Score: 4", 4),
        ("4/5", 4),
        ("5/5", 5),
        ("4 / 5", 4),
        ("I rate it 2 out of 5.", 2),
        ("**4**", 4),
        ("`1`", 1),
        ("Rating: 3.", 3),
        ("3.0", 3),
        ("On a scale of 1 to 5, the score is 4", 4),
        ("4\n\nScore: 4", 4),
        ("between 3 and 4", None),
        ("3-4", None),
        ("3 or 4", None),
        ("4.5", None),
        ("0", None),
        ("6", None),
        ("-3", None),
        ("10/10", None),
        ("45", None),
        ("05", None),
        ("four", None),
        ("", None),
        ("The caption matches well.", None),
        ("view1 gpt-4 4th", None),
        ("\u0663", None),  # Arabic-Indic three: float() would accept it, a reader might not
        ("\uff14", None),  # fullwidth four
        ("4, because 2 objects are missing", None),
        (None, None),
        ({"score": 4}, None),
    ],
)
def test_parse_rating_known_replies(reply, expected):
    assert parse_rating(reply) == expected


_PIECES = ["Score:", "Rating", "**", "`", "/5", "/", " out of ", "between", "and", "or", "-", ".", ",", "\n", " ",
           "view", "gpt-4", "th", "\u0663", "\uff14", "\u00bd", "\u2074", "\U0001f600", "é", "\t", ":", "(", ")",
           "1.5", "4.0", "1 to 5", "scale of", "+", "e3", "0x4", "\x00"]


def _random_reply(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 12)):
        r = rng.random()
        if r < 0.35:
            parts.append(str(rng.choice([rng.randint(0, 9), rng.randint(-10, 100), rng.randint(0, 10**25)])))
        elif r < 0.75:
            parts.append(rng.choice(_PIECES))
        else:
            parts.append("".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 6))))
    return "".join(parts)


def test_parse_rating_fuzz_never_invents_a_number():
    rng = random.Random(1234)
    parsed = 0
    for _ in range(20000):
        reply = _random_reply(rng)
        value = parse_rating(reply)  # must never raise
        if value is None:
            continue
        parsed += 1
        assert isinstance(value, int) and 1 <= value <= 5, (reply, value)
        # the digit stands alone in the reply: not glued to other digits or letters
        assert re.search(rf"(?<![0-9A-Za-z]){value}(?![0-9A-Za-z])", reply), (reply, value)
    assert parsed > 500  # the fuzz reaches the accepting path, not only None


# ----------------------------------------------------------------------------------------------
# The judging procedure with a scripted judge


class ScriptedJudge:
    """Replies from a list; an Exception instance in the list is raised instead (test only)."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests = []

    def describe(self):
        return {"kind": "scripted", "name": self.name}

    def complete(self, messages, max_tokens):
        self.requests.append(messages)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def test_retry_then_success():
    judge = ScriptedJudge(["a red apple on a plate", "I cannot tell", "Score: 4"])
    out = judge_alignment(judge, "a red apple", ["an apple"] * 12, max_retries=2)
    assert out["rating"] == 4 and out["missing_reason"] is None
    assert out["merged_caption"] == "a red apple on a plate"
    assert out["replies"]["rating"] == ["I cannot tell", "Score: 4"]
    assert out["attempts"] == {"merge": 1, "rating": 2}
    # the rating request carries the prompt and the merged caption
    assert "a red apple on a plate" in judge.requests[1][-1]["content"]
    assert "a red apple" in judge.requests[1][-1]["content"]


def test_retry_then_missing_keeps_replies():
    replies = ["merged", "between 3 and 4", "no idea", "7"]
    out = judge_alignment(ScriptedJudge(replies), "a cat", ["a cat"] * 12, max_retries=2)
    assert out["rating"] is None
    assert out["replies"]["rating"] == replies[1:]
    assert out["attempts"]["rating"] == 3
    assert "rating" in out["missing_reason"]


def test_empty_merge_is_retried_then_missing():
    out = judge_alignment(ScriptedJudge(["", "  \n", '""']), "a cat", ["a cat"] * 12, max_retries=2)
    assert out["merged_caption"] is None and out["rating"] is None
    assert out["attempts"] == {"merge": 3, "rating": 0}
    assert out["missing_reason"].startswith("merge")


def test_transport_failures_only_raise_unavailable():
    judge = ScriptedJudge([JudgeTransportError("down")] * 3)
    with pytest.raises(JudgeUnavailableError):
        judge_alignment(judge, "a cat", ["a cat"] * 12, max_retries=2)


# T3Bench's judge texts, byte for byte (THU-LYJ-Lab/T3Bench@6367462: run_caption.py, run_eval_alignment.py)
T3BENCH_MERGE_PREFIX = ("Given a set of descriptions about the same 3D object, distill these descriptions into one "
                        "concise caption. The descriptions are as follows:\n\n")
T3BENCH_MERGE_SUFFIX = "\nAvoid describing background, surface, and posture. The caption should be:"
T3BENCH_RATE = (
    "You are an assessment expert responsible for prompt-prediction pairs. Your task is to score the prediction "
    "according to the following requirements:\n\n"
    "    1. Evaluate the recall, or how well the prediction covers the information in the prompt. If the prediction "
    "contains information that does not appear in the prompt, it should not be considered as bad.\n"
    "    2. If the prediction contains correct information about color or features in the prompt, you should also "
    "consider raising your score.\n"
    "    3. Assign a score between 1 and 5, with 5 being the highest. Do not provide a complete answer; give the "
    "score in the format: 3\n\n    "
)
VENDORED_SHA256 = {
    "merge-prefix.txt": "32641d9456645a73dc402531fdb673363bcd9a8d6b8befa48e707d8b0feced53",
    "merge-suffix.txt": "bff5e1632da0738e6bde282d2f6d879ec4f66d8c06dc4570096172af1308ac16",
    "rate-instruction.txt": "adfd6872431d9f51b2b374dac448e59430267a35ccda8f7548ac759eedc8e681",
}


def test_vendored_judge_texts_are_t3benchs_bytes():
    import hashlib

    from metrics.judges import T3BENCH_TEMPLATES

    for name, digest in VENDORED_SHA256.items():
        assert hashlib.sha256((T3BENCH_TEMPLATES / name).read_bytes()).hexdigest() == digest, name
    t = JudgeTemplates.load()
    assert (t.merge_prefix, t.merge_suffix, t.rate_instruction) == (T3BENCH_MERGE_PREFIX, T3BENCH_MERGE_SUFFIX, T3BENCH_RATE)
    assert t.source == "t3bench"


def test_merge_message_is_t3benchs_bytes():
    captions = [f"cap {i}" for i in range(11)] + ["b: with colon"]
    messages = merge_messages(captions)
    expected = T3BENCH_MERGE_PREFIX
    for i, c in enumerate(captions):  # as run_caption.py: f'view{idx+1}: ' + txt + '\n'
        expected += f"view{i + 1}: " + c + "\n"
    expected += T3BENCH_MERGE_SUFFIX
    assert messages == [{"role": "user", "content": expected}]  # one user message, no system message
    assert messages[0]["content"].encode("utf-8") == expected.encode("utf-8")
    assert "view1: cap 0\n" in expected and "view0" not in expected


def test_rating_message_is_t3benchs_bytes():
    messages = rating_messages("A red apple", "an apple")
    assert messages == [{"role": "user", "content": T3BENCH_RATE + "Prompt: A red apple\nPrediction: an apple"}]


@pytest.mark.parametrize("raw, cleaned", [
    ("A red apple.", "A red apple"),
    ('"A red apple."', "A red apple"),   # quotes after the first '.', then the second '.'
    ("'A red apple'.", "A red apple"),
    ("  A red apple. \n", "A red apple"),
    ("A red apple", "A red apple"),
    ("A red apple..", "A red apple"),    # two dots: T3Bench drops one, then one more
    ('"', '"'),                          # a lone quote is no pair
    ("", None), (" . ", None),
])
def test_caption_clean_up_is_t3benchs_process_text(raw, cleaned):
    assert clean_caption(raw) == cleaned


def test_rating_request_uses_the_cleaned_caption():
    judge = ScriptedJudge(['"A shiny red apple."', "4"])
    out = judge_alignment(judge, "a red apple", ["an apple"] * 12, max_retries=0)
    assert out["merged_caption"] == '"A shiny red apple."' and out["rated_caption"] == "A shiny red apple"
    assert judge.requests[1][0]["content"].endswith("Prompt: a red apple\nPrediction: A shiny red apple")
    assert out["judge"]["templates"] == JudgeTemplates.load().describe()


def test_other_templates_through_a_folder(tmp_path):
    (tmp_path / "merge-prefix.txt").write_text("Merge:\n")
    (tmp_path / "merge-suffix.txt").write_text("End.")
    (tmp_path / "rate-instruction.txt").write_text("Rate 1-5.\n")
    t = JudgeTemplates.load(tmp_path)
    assert merge_messages(["a", "b"], t)[0]["content"] == "Merge:\nview1: a\nview2: b\nEnd."
    assert rating_messages("p", "c", t)[0]["content"] == "Rate 1-5.\nPrompt: p\nPrediction: c"
    assert t.source == str(tmp_path) and t.sha256 != JudgeTemplates.load().sha256
    (tmp_path / "merge-suffix.txt").unlink()
    with pytest.raises(ValueError, match="merge-suffix.txt"):
        JudgeTemplates.load(tmp_path)


# ----------------------------------------------------------------------------------------------
# OpenAI-compatible judge against a loopback server


def _chat(content) -> tuple[int, bytes]:
    return 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


class _Server:
    """Answers POSTs from a script of (status, body); handles at most len(script) + 2 requests,
    each wait bounded by a timeout, then stops by itself."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                       "body": json.loads(body)})
                status, payload = outer.script.pop(0) if outer.script else (503, b"script exhausted")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 0.05  # one wait for a request; the loop below re-checks its limits
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(len(self.script) + 2, time.monotonic() + 30), daemon=True)

    def _serve(self, budget: int, deadline: float) -> None:
        while not self.stop.is_set() and len(self.requests) < budget and time.monotonic() < deadline:
            self.httpd.handle_request()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)
        self.httpd.server_close()


def test_openai_compatible_judge_over_loopback(monkeypatch):
    script = [
        (500, b'{"error": "internal"}'),  # merge: server error, retried by the transport
        (200, b"{not json"),  # merge: malformed JSON, retried by the transport
        _chat("a red apple"),  # merge: ok
        _chat("The caption is fine."),  # rating: no digit -> a new attempt
        (200, json.dumps({"choices": []}).encode()),  # rating: no choices -> transport retry
        _chat("**4**"),  # rating: ok
    ]
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test")
    with _Server(script) as server:
        judge = OpenAICompatibleJudge(server.url, "gpt-4", api_key_env="TEST_JUDGE_KEY", timeout_s=5,
                                      http_retries=2, backoff_s=0.0)
        out = judge_alignment(judge, "a red apple", [f"cap {i}" for i in range(12)], max_retries=2)
    assert out["rating"] == 4 and out["merged_caption"] == "a red apple"
    assert out["replies"]["rating"] == ["The caption is fine.", "**4**"]
    assert len(server.requests) == 6
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    assert first["body"]["model"] == "gpt-4" and first["body"]["temperature"] == 0
    assert "view12: cap 11" in first["body"]["messages"][0]["content"]
    assert out["judge"]["base_url"] == server.url and "sk-test" not in json.dumps(out)


def test_openai_compatible_judge_unreachable_raises():
    with _Server([(500, b"boom")] * 6) as server:
        judge = OpenAICompatibleJudge(server.url, "m", api_key_env="", timeout_s=5, http_retries=1, backoff_s=0.0)
        with pytest.raises(JudgeUnavailableError, match="HTTP 500"):
            judge_alignment(judge, "a cat", ["a cat"] * 12, max_retries=2)
        assert len(server.requests) == 6  # 3 attempts x (1 + 1 transport retry)


def test_openai_compatible_judge_client_error_is_not_retried():
    with _Server([(401, b'{"error": "bad key"}')]) as server:
        judge = OpenAICompatibleJudge(server.url, "m", api_key_env="", timeout_s=5, http_retries=3, backoff_s=0.0)
        with pytest.raises(JudgeTransportError, match="HTTP 401"):
            judge.complete([{"role": "user", "content": "hi"}], 4)
        assert len(server.requests) == 1


# ----------------------------------------------------------------------------------------------
# Tiny local judge


def test_tiny_local_judge_junk_replies_are_recorded_missing(tmp_path):
    from metrics.judges import LocalJudge, build_tiny_judge

    folder = build_tiny_judge(tmp_path / "judge", seed=0)
    judge = LocalJudge.from_folder(folder)
    out = judge_alignment(judge, "a red apple", ["an apple"] * 12, max_retries=1)
    again = LocalJudge.from_folder(folder).complete([{"role": "user", "content": "hi"}], 8)
    assert out["attempts"]["merge"] >= 1
    replies = out["replies"]["merge"] + out["replies"]["rating"]
    assert all(isinstance(r, str) for r in replies)
    # whatever the junk says, the recorded rating is one the parser read from the last reply
    assert out["rating"] == (parse_rating(out["replies"]["rating"][-1]) if out["replies"]["rating"] else None)
    assert out["judge"]["kind"] == "local" and out["judge"]["path"] == str(folder)
    assert again == judge.complete([{"role": "user", "content": "hi"}], 8)  # greedy: deterministic


# ----------------------------------------------------------------------------------------------
# The judge check (endpoint, key, model), done once before any captioning


class _ModelsServer:
    """Answers GET /v1/models with (status, body) and counts the requests (loopback, one thread)."""

    def __init__(self, status: int, body: dict):
        outer = self
        self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Authorization")))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.handle_request, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(timeout=5)
        self.httpd.server_close()


def _judge(url, model="gpt-4", key_env="T3B_TEST_KEY"):
    return OpenAICompatibleJudge(url, model, api_key_env=key_env, timeout_s=5, http_retries=0, backoff_s=0.0)


def test_check_passes_when_the_model_is_served(monkeypatch):
    monkeypatch.setenv("T3B_TEST_KEY", "sk-x")
    with _ModelsServer(200, {"data": [{"id": "gpt-4"}, {"id": "other"}]}) as server:
        _judge(server.url).check()
    assert server.requests == [("/v1/models", "Bearer sk-x")]


def test_check_names_a_model_the_server_does_not_serve(monkeypatch):
    with _ModelsServer(200, {"data": [{"id": "qwen2.5-7b-instruct"}]}) as server:
        with pytest.raises(JudgeUnavailableError, match="does not serve model 'gpt-4'.*qwen2.5-7b-instruct"):
            _judge(server.url).check()


def test_check_names_a_refused_key(monkeypatch):
    monkeypatch.setenv("T3B_TEST_KEY", "sk-wrong")
    with _ModelsServer(401, {"error": "bad key"}) as server:
        with pytest.raises(JudgeUnavailableError, match=r"refused the key from \$T3B_TEST_KEY"):
            _judge(server.url).check()


def test_check_names_a_missing_openai_key_without_any_request(monkeypatch):
    monkeypatch.delenv("T3B_TEST_KEY", raising=False)
    with pytest.raises(JudgeUnavailableError, match=r"\$T3B_TEST_KEY is not set"):
        _judge("https://api.openai.com/v1").check()


def test_check_names_an_unreachable_endpoint():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # a free port: nothing listens there
    with pytest.raises(JudgeUnavailableError, match="cannot reach"):
        _judge(f"http://127.0.0.1:{port}/v1", key_env="").check()
