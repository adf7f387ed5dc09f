"""T3Bench alignment judges: merge 12 view captions into one, then rate prompt recall 1-5.

    judge = OpenAICompatibleJudge("https://api.openai.com/v1", "gpt-4")    # parity with T3Bench
    judge = LocalJudge.from_folder(folder)                                  # any chat LM, offline
    result = judge_alignment(judge, prompt, captions, max_retries=2)
    result["rating"]      # int 1-5, or None (missing; replies kept in result["replies"])

T3Bench (run_eval_alignment.py, t3bench-protocol.md section 3) sends two GPT-4 requests at
temperature 0: a Cap3D-style merge of the per-view captions, then a rating of how well the merged
caption recalls the prompt, and parses the reply with `np.round(float(reply))`, which crashes on
anything but a bare number. Here a reply without a usable rating is retried (a fresh request,
same messages) and, after `max_retries` extra attempts, recorded as missing with every reply
kept: never a crash and never a default value.

Transport failures (connection refused, timeouts, HTTP errors) are retried inside the judge with
back-off; when an endpoint stays unreachable for every attempt, `judge_alignment` raises
JudgeUnavailableError instead of recording a "missing" rating, so the stage stays unscored and a
later `make eval` tries again (a dead endpoint is not a judgement about the run).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

# ----------------------------------------------------------------------------------------------
# Prompts

# The merge message is Cap3D's, as T3Bench quotes it (t3bench-protocol.md section 3, step 3).
MERGE_PREFIX = (
    "Given a set of descriptions about the same 3D object, distill these descriptions into one "
    "concise caption. The descriptions are as follows:"
)
MERGE_SUFFIX = "Avoid describing background, surface, and posture. The caption should be:"

# RECONSTRUCTION: our wording of T3Bench's rating instructions, written from the protocol
# description (an "assessment expert" rating *recall* of the prompt by the caption, extra
# information not penalised, correct colour/feature details raising the score, 1-5, answer in
# the format `3`). T3Bench's exact text is not copied here, so absolute numbers from a judge
# may differ slightly from the published GPT-4 ones; re-score every baseline with one judge.
RATING_INSTRUCTIONS = (
    "You are an assessment expert. You will be given a text prompt that was used to create a 3D "
    "object and a caption that describes the object that was created. Evaluate how well the "
    "caption recalls the prompt: judge only whether the objects, attributes and relations named "
    "in the prompt appear in the caption. Do not penalise extra information in the caption that "
    "the prompt does not mention. Correct colour or feature information matching the prompt "
    "raises the score. Give a score from 1 (the caption recalls nothing of the prompt) to 5 (the "
    "caption recalls everything in the prompt). Answer with the score only, in the format `3`."
)
RATING_TEMPLATE = "Prompt: {prompt}\nCaption: {caption}\nScore:"


def merge_messages(captions: list[str]) -> list[dict]:
    """The merge request: one `view{i}: caption` line per view (i from 0, as T3Bench)."""
    lines = [MERGE_PREFIX, *(f"view{i}: {c}" for i, c in enumerate(captions)), MERGE_SUFFIX]
    return [{"role": "user", "content": "\n".join(lines)}]


def rating_messages(prompt: str, caption: str) -> list[dict]:
    return [
        {"role": "system", "content": RATING_INSTRUCTIONS},
        {"role": "user", "content": RATING_TEMPLATE.format(prompt=prompt, caption=caption)},
    ]


# ----------------------------------------------------------------------------------------------
# Parsing a rating reply

# A number as a standalone token: not glued to letters, digits, '_' or a preceding '.', and not
# the tail of a hyphenated word ("gpt-4"). ASCII digits only: `\d` would also match e.g. Arabic-
# Indic digits, and float() accepts those, which would yield a number the reader cannot see.
_NUMBER = re.compile(r"(?<![0-9A-Za-z_.])(?<![A-Za-z]-)([-+]?)([0-9]+(?:\.[0-9]+)?)(?![0-9A-Za-z_])")
# "4/5", "4 / 5", "4 out of 5": the 5 is the scale, not a second rating.
_SCALE_DENOMINATOR = re.compile(r"(?:/|\bout\s+of)\s*$", re.IGNORECASE)
# "on a scale of 1 to 5", "range 1-5": the scale's bounds are not ratings.
_SCALE_PHRASE = re.compile(r"\b(?:scale|range)\s+(?:of\s+|from\s+)?1\s*(?:-|\u2013|to)\s*5(?![0-9])", re.IGNORECASE)


def parse_rating(reply: Any) -> Optional[int]:
    """The 1-5 rating a judge reply states, or None when it states none or is ambiguous.

    Rules (chosen to never produce a number the reply does not contain):
    - every standalone number in the reply counts ("3", "Score: 4", "**4**", "4." all give one);
      digits glued to letters ("view1", "4th", "gpt-4") are not numbers;
    - a 5 after "/" or "out of" is the scale ("4/5" -> 4), and "scale of 1 to 5" is ignored;
    - exactly one distinct value may remain, and it must be an integer 1-5 ("4.0" -> 4);
    - anything else is None: no number, out of range ("0", "6", "-3", "05", "10/10"), non-integer
      ("4.5": T3Bench's np.round would silently pick 4), or two different values
      ("between 3 and 4", "3-4", "4, because 2 objects are missing").
    Non-string replies (None, a JSON object) are None.
    """
    if not isinstance(reply, str):
        return None
    text = _SCALE_PHRASE.sub(" ", reply)
    values = []
    for m in _NUMBER.finditer(text):
        sign, digits = m.group(1), m.group(2)
        whole = digits.split(".")[0]
        # "05" or a 20-digit run is not a rating as written: keep it as an out-of-range value
        value = float(digits) if len(whole) < 20 and not (len(whole) > 1 and whole[0] == "0") else float("inf")
        if sign == "-":
            value = -value
        if values and value == 5 and _SCALE_DENOMINATOR.search(text[: m.start()]):
            continue
        values.append(value)
    distinct = set(values)
    if len(distinct) != 1:
        return None
    value = distinct.pop()
    if not 1 <= value <= 5 or value != int(value):  # range first: int(inf) raises
        return None
    return int(value)


# ----------------------------------------------------------------------------------------------
# Judges


class JudgeTransportError(RuntimeError):
    """A request got no reply text (network error, timeout, HTTP error, unusable response body)."""


class JudgeUnavailableError(RuntimeError):
    """Every attempt failed in transport: nothing was judged, so nothing may be recorded."""


class Judge(Protocol):
    name: str

    def complete(self, messages: list[dict], max_tokens: int) -> str:
        """The reply text to a chat request; raises JudgeTransportError when there is none."""

    def describe(self) -> dict:
        """Everything that identifies this judge and its settings (recorded with every score)."""


class OpenAICompatibleJudge:
    """Any OpenAI-compatible `/chat/completions` endpoint, over plain HTTP (urllib).

    The API key is read from the environment variable `api_key_env` at request time (never stored
    or recorded); an endpoint that needs none (a local vLLM / llama.cpp server) works without it.
    HTTP 429/5xx, timeouts and connection errors are retried `http_retries` times with exponential
    back-off; other HTTP errors (401, 404: wrong key or model) fail at once.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", temperature: float = 0.0,
                 timeout_s: float = 60.0, http_retries: int = 3, backoff_s: float = 2.0, seed: Optional[int] = None):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.http_retries = http_retries
        self.backoff_s = backoff_s
        self.seed = seed
        self.name = f"openai-compatible:{model}"

    def describe(self) -> dict:
        return {"kind": "openai", "name": self.name, "model": self.model, "base_url": self.base_url,
                "temperature": self.temperature, "seed": self.seed, "timeout_s": self.timeout_s,
                "http_retries": self.http_retries}

    def _request(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode("utf-8"),
                                     headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            raw = resp.read()
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise JudgeTransportError(f"response is not JSON: {raw[:200]!r}") from e

    def complete(self, messages: list[dict], max_tokens: int) -> str:
        body = {"model": self.model, "messages": messages, "temperature": self.temperature, "max_tokens": max_tokens}
        if self.seed is not None:
            body["seed"] = self.seed
        last: Exception | None = None
        for attempt in range(self.http_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                data = self._request(body)
            except urllib.error.HTTPError as e:
                last = JudgeTransportError(f"HTTP {e.code} from {self.base_url}: {e.read()[:200]!r}")
                if e.code == 429 or e.code >= 500:
                    continue
                raise last from e
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = JudgeTransportError(f"cannot reach {self.base_url}: {e}")
                continue
            except JudgeTransportError as e:  # a body that is not JSON: a broken reply, retried
                last = e
                continue
            try:
                content = data["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                last = JudgeTransportError(f"response has no choices[0].message.content: {str(data)[:200]}")
                continue
            if not isinstance(content, str):
                last = JudgeTransportError(f"message content is {type(content).__name__}, not text")
                continue
            return content
        raise last if last is not None else JudgeTransportError("no request was made")


class LocalJudge:
    """A transformers causal LM with a chat template, decoding greedily (T3Bench: temperature 0).

    Tiny random models (build_tiny_judge) reply with junk: the retry/missing path handles it.
    """

    def __init__(self, model: Any, tokenizer: Any, record: Optional[dict] = None, seed: int = 0):
        self.model = model
        self.tokenizer = tokenizer
        self.record = dict(record or {})
        self.seed = seed
        self.name = f"local:{self.record.get('id') or self.record.get('path') or 'model'}"

    @classmethod
    def from_folder(cls, folder: str | Path, record: Optional[dict] = None, device: str = "cpu", dtype: Any = None,
                    seed: int = 0) -> "LocalJudge":
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(f"local judge at {folder}: the tokenizer has no chat template (use an instruction-tuned model)")
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or torch.float32).to(device).eval()
        rec = {"path": str(folder), **(record or {})}
        return cls(model, tokenizer, rec, seed)

    def describe(self) -> dict:
        return {"kind": "local", "name": self.name, "temperature": 0.0, "decoding": "greedy", **self.record}

    def complete(self, messages: list[dict], max_tokens: int) -> str:
        import torch

        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        ids = {k: v.to(self.model.device) for k, v in ids.items()}
        with torch.no_grad():
            out = self.model.generate(**ids, do_sample=False, max_new_tokens=max_tokens,
                                      pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


# ----------------------------------------------------------------------------------------------
# The T3Bench judging procedure


@dataclass
class _Attempts:
    replies: list
    errors: list

    def record(self, reply: Optional[str], error: Optional[str]) -> None:
        self.replies.append(reply)
        self.errors.append(error)


def _ask(judge: Judge, messages: list[dict], max_tokens: int, tries: int, usable) -> tuple[Any, _Attempts]:
    """Ask up to `tries` times until `usable(reply)` is not None; every reply and error kept."""
    log = _Attempts([], [])
    for _ in range(tries):
        try:
            reply = judge.complete(messages, max_tokens)
        except JudgeTransportError as e:
            log.record(None, str(e))
            continue
        value = usable(reply)
        log.record(reply, None if value is not None else "no usable answer in the reply")
        if value is not None:
            return value, log
    if all(r is None for r in log.replies):
        raise JudgeUnavailableError(f"{judge.name}: no reply in {tries} attempts; last error: {log.errors[-1]}")
    return None, log


def _merged(reply: str) -> Optional[str]:
    text = reply.strip().strip('"').strip()
    return text or None


def judge_alignment(judge: Judge, prompt: str, captions: list[str], max_retries: int = 2,
                    merge_max_tokens: int = 128, rating_max_tokens: int = 16) -> dict:
    """Merge the captions, then rate recall of `prompt`; each step tried 1 + max_retries times.

    Returns {merged_caption, rating (1-5 or None), missing_reason, replies: {merge, rating},
    errors: {merge, rating}, attempts: {merge, rating}, judge: judge.describe()}.
    Raises JudgeUnavailableError when a step got no reply at all (see the module docstring).
    """
    tries = 1 + max(0, int(max_retries))
    merged, merge_log = _ask(judge, merge_messages(captions), merge_max_tokens, tries, _merged)
    result = {"merged_caption": merged, "rating": None, "missing_reason": None,
              "replies": {"merge": merge_log.replies, "rating": []},
              "errors": {"merge": merge_log.errors, "rating": []},
              "attempts": {"merge": len(merge_log.replies), "rating": 0}, "judge": judge.describe()}
    if merged is None:
        result["missing_reason"] = f"merge: no usable caption in {tries} replies"
        return result
    rating, rating_log = _ask(judge, rating_messages(prompt, merged), rating_max_tokens, tries, parse_rating)
    result.update(rating=rating)
    result["replies"]["rating"] = rating_log.replies
    result["errors"]["rating"] = rating_log.errors
    result["attempts"]["rating"] = len(rating_log.replies)
    if rating is None:
        result["missing_reason"] = f"rating: no usable 1-5 rating in {tries} replies"
    return result


# ----------------------------------------------------------------------------------------------
# Tiny local judge for tests (random weights, offline tokenizer)

# Llama family (what most local instruct judges are), with tiny widths.
TINY_JUDGE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=1024)
# A minimal chat template in the role-tag style of instruct models.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tiny_judge(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random LlamaForCausalLM + byte-level tokenizer with a chat template to `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from metrics.captioner import build_byte_tokenizer

    out_dir = Path(out_dir)
    tokenizer = build_byte_tokenizer(specials=["<pad>", "<s>", "</s>", "<unk>"], bos="<s>", eos="</s>", append_eos=False)
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **TINY_JUDGE)
    rng = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    finally:
        torch.set_rng_state(rng)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
