"""T3Bench alignment judges: merge 12 view captions into one, then rate prompt recall 1-5.

    judge = OpenAICompatibleJudge("https://api.openai.com/v1", "gpt-4")    # parity with T3Bench
    judge = LocalJudge.from_folder(folder)                                  # any chat LM, offline
    result = judge_alignment(judge, prompt, captions, max_retries=2)
    result["rating"]      # int 1-5, or None (missing; replies kept in result["replies"])

T3Bench (run_caption.py, run_eval_alignment.py) sends two GPT-4 requests at temperature 0, each
one user message with no system message: a Cap3D-style merge of the per-view captions, then a
rating of how well the merged caption (after its `process_text` clean-up) recalls the prompt, and
parses the reply with `np.round(float(reply))`, which crashes on anything but a bare number. The
words are T3Bench's own (prompts/t3bench/judge/, read by JudgeTemplates); another folder with the
same three files can replace them (`alignment.judge.templates`), and the templates' sha256 is
recorded with every rating. Here a reply without a usable rating is retried (a fresh request,
same messages) and, after `max_retries` extra attempts, recorded as missing with every reply
kept: never a crash and never a default value.

Transport failures (connection refused, timeouts, HTTP errors) are retried inside the judge with
back-off; when an endpoint stays unreachable for every attempt, `judge_alignment` raises
JudgeUnavailableError instead of recording a "missing" rating, so the stage stays unscored and a
later `make eval` tries again (a dead endpoint is not a judgement about the run).
"""

from __future__ import annotations

import hashlib
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
# Prompts: T3Bench's own judge texts (prompts/t3bench/judge/, see PROVENANCE.md there)

T3BENCH_TEMPLATES = Path(__file__).resolve().parents[1] / "prompts" / "t3bench" / "judge"
TEMPLATE_FILES = ("merge-prefix.txt", "merge-suffix.txt", "rate-instruction.txt")


@dataclass(frozen=True)
class JudgeTemplates:
    """The three judge texts, read byte for byte (no newline added or stripped)."""

    merge_prefix: str
    merge_suffix: str
    rate_instruction: str
    source: str  # "t3bench" for the vendored texts, else the folder they came from
    sha256: str  # of the three files in TEMPLATE_FILES order: identifies the wording in every record

    @classmethod
    def load(cls, folder: Optional[str | Path] = None) -> "JudgeTemplates":
        """The templates in `folder` (the three TEMPLATE_FILES); None = T3Bench's vendored ones."""
        folder = Path(folder) if folder is not None else T3BENCH_TEMPLATES
        texts, digest = [], hashlib.sha256()
        for name in TEMPLATE_FILES:
            try:
                raw = (folder / name).read_bytes()
            except OSError as e:
                raise ValueError(f"judge templates: cannot read {folder / name} ({e.strerror}); a template folder "
                                 f"holds {', '.join(TEMPLATE_FILES)}") from None
            texts.append(raw.decode("utf-8"))
            digest.update(hashlib.sha256(raw).digest())
        source = "t3bench" if folder.resolve() == T3BENCH_TEMPLATES.resolve() else str(folder)
        return cls(*texts, source=source, sha256=digest.hexdigest())

    def describe(self) -> dict:
        return {"source": self.source, "sha256": self.sha256}


def merge_messages(captions: list[str], templates: Optional[JudgeTemplates] = None) -> list[dict]:
    """T3Bench's merge request: prefix, one `view{i}: caption` line per view (i from 1), suffix; one user message."""
    t = templates or JudgeTemplates.load()
    body = "".join(f"view{i}: {c}\n" for i, c in enumerate(captions, start=1))
    return [{"role": "user", "content": t.merge_prefix + body + t.merge_suffix}]


def clean_caption(text: str) -> Optional[str]:
    """T3Bench's `process_text` on the merged caption (after stripping surrounding whitespace):
    drop one trailing '.', then one pair of surrounding double or single quotes, then a trailing
    '.' again. None when nothing is left (T3Bench would crash on an empty caption)."""
    text = text.strip()
    if text.endswith("."):
        text = text[:-1]
    for q in ('"', "'"):
        if len(text) >= 2 and text[0] == q and text[-1] == q:
            text = text[1:-1]
    if text.endswith("."):
        text = text[:-1]
    return text or None


def rating_messages(prompt: str, caption: str, templates: Optional[JudgeTemplates] = None) -> list[dict]:
    """T3Bench's rating request: the instruction, `Prompt: ...`, newline, `Prediction: <cleaned caption>`; one user message."""
    t = templates or JudgeTemplates.load()
    return [{"role": "user", "content": t.rate_instruction + "Prompt: " + prompt + "\n" + "Prediction: " + caption}]


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

    def check(self) -> None:
        """Raise JudgeUnavailableError when the judge cannot answer (endpoint, key, model)."""


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

    def check(self) -> None:
        """Endpoint, key and model, once before any captioning: JudgeUnavailableError saying which is wrong.

        GET {base_url}/models (every OpenAI-compatible server has it): unreachable -> the endpoint;
        401/403 -> the key; a model list without `model` -> the model. A server without /models
        (404) gets one 1-token chat request instead, which checks all three at once.
        """
        from urllib.parse import urlparse

        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if not key and (urlparse(self.base_url).hostname or "").endswith("openai.com"):
            raise JudgeUnavailableError(f"judge {self.name}: {self.base_url} needs an API key and "
                                        f"${self.api_key_env or 'OPENAI_API_KEY'} is not set")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        req = urllib.request.Request(f"{self.base_url}/models", headers=headers, method="GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                listing = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise JudgeUnavailableError(f"judge {self.name}: {self.base_url} refused the key from "
                                            f"${self.api_key_env} (HTTP {e.code})") from None
            if e.code == 404:  # no model listing: one tiny request checks endpoint, key and model
                try:
                    self.complete([{"role": "user", "content": "Reply with 1."}], 1)
                except JudgeTransportError as err:
                    raise JudgeUnavailableError(f"judge {self.name}: {err}") from None
                return
            raise JudgeUnavailableError(f"judge {self.name}: HTTP {e.code} from {self.base_url}/models") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            raise JudgeUnavailableError(f"judge {self.name}: cannot reach {self.base_url} ({e})") from None
        except (UnicodeDecodeError, ValueError):
            listing = {}
        served = [m.get("id") for m in listing.get("data", []) if isinstance(m, dict)] if isinstance(listing, dict) else []
        if served and self.model not in served:
            raise JudgeUnavailableError(f"judge {self.name}: {self.base_url} does not serve model {self.model!r} "
                                        f"(it serves: {', '.join(map(str, served[:10]))})")

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
        return {"kind": "local", "name": self.name, "temperature": 0.0, "decoding": "greedy",
                "dtype": str(self.model.dtype).replace("torch.", ""), **self.record}

    def check(self) -> None:
        """A loaded local judge is ready (its folder and chat template were checked on loading)."""

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


def judge_alignment(judge: Judge, prompt: str, captions: list[str], max_retries: int = 2,
                    merge_max_tokens: int = 128, rating_max_tokens: int = 16,
                    templates: Optional[JudgeTemplates] = None) -> dict:
    """Merge the captions, then rate recall of `prompt`; each step tried 1 + max_retries times.

    Returns {merged_caption (the merge reply, stripped), rated_caption (after T3Bench's clean-up),
    rating (1-5 or None), missing_reason, replies: {merge, rating}, errors: {merge, rating},
    attempts: {merge, rating}, judge: judge.describe() + the templates' source and sha256}.
    Raises JudgeUnavailableError when a step got no reply at all (see the module docstring).
    """
    templates = templates or JudgeTemplates.load()
    tries = 1 + max(0, int(max_retries))
    rated, merge_log = _ask(judge, merge_messages(captions, templates), merge_max_tokens, tries, clean_caption)
    merged = next((r.strip() for r in reversed(merge_log.replies) if r is not None), None) if rated else None
    result = {"merged_caption": merged, "rated_caption": rated, "rating": None, "missing_reason": None,
              "replies": {"merge": merge_log.replies, "rating": []},
              "errors": {"merge": merge_log.errors, "rating": []},
              "attempts": {"merge": len(merge_log.replies), "rating": 0},
              "judge": {**judge.describe(), "templates": templates.describe()}}
    if rated is None:
        result["missing_reason"] = f"merge: no usable caption in {tries} replies"
        return result
    rating, rating_log = _ask(judge, rating_messages(prompt, rated, templates), rating_max_tokens, tries, parse_rating)
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
