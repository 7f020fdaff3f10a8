"""`judge`: the "GPT score" of InstructionGPT-4, an LLM rating each answer 0-100, from an OpenAI-compatible server
or a local HF causal LM. A failed request or an unparsable reply is recorded as missing with its reason: never a
made-up default (the original code mapped parse failures to 60 and "10" to 100)."""
from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
from typing import Any

import numpy as np

from selector.core.metric_api import Batch, Limiter, Metric, Scored, SharedLimit
from metrics.registry import register
from selector.core.errors import MmselectError
from selector.core.resolve import loading, resolve_hf_model

JUDGE_MODEL_FLAG = "--judge-model"

# InstructionGPT-4's rubric: quality and variety of the answer for the instruction, 0-100, score on the first line.
DEFAULT_PROMPT = """You are judging one sample of a multimodal instruction-tuning dataset.
Rate the quality and variety of the assistant's answer to the instruction on a scale from 0 to 100:
100 means the answer is accurate, detailed, helpful and varied; 0 means it is wrong, off-topic or useless.

Instruction:
{instruction}

Answer:
{answer}

Reply with the score alone (an integer from 0 to 100) on the first line, then a short reason on the second line."""

# A score is a whole number token: not part of `1e2`, `2nd`, `v1.5`, `3.14.15` or a longer word.
_NUMBER = r"(?<![\w.])(-?\d+(?:\.\d+)?)(?![\w])(?!\.\d)"
_OUT_OF = r"(?:\s*(?:/|out\s+of)\s*" + _NUMBER + r")?"
_KEYWORD = r"(?:score|rating)\w*"
# The first line may be the score alone ("85", "**85**", "85/100", "Score: 85", "85 - accurate and detailed").
_FIRST_LINE = re.compile(r"^(?:" + _KEYWORD + r"\s*(?:is|of)?\s*[:=\-]?\s*)?" + _NUMBER + _OUT_OF
                         + r"\s*(?:points?)?\s*(?:[.!]|\s[-\u2013\u2014:;,(]\s*.*|[:;,]\s.*)?$", re.I)
# A fraction on the first line may be followed by anything ("90/100 because ...").
_FIRST_FRACTION = re.compile(r"^(?:" + _KEYWORD + r"\s*(?:is|of)?\s*[:=\-]?\s*)?" + _NUMBER
                             + r"\s*(?:/|out\s+of)\s*" + _NUMBER + r"(?:[.!,;:]?\s.*|[.!])?$", re.I)
# Elsewhere only an explicit "score: N" / "rating is N", or "I rate it N out of D", counts.
_STATED = re.compile(r"(?:" + _KEYWORD + r"\s*(?:is|of|:|=|-)\s*\**\s*" + _NUMBER + _OUT_OF + r")|(?:\brate[sd]?\s+"
                     r"(?:it|this|the\s+answer|this\s+answer)\s+(?:an?\s+|at\s+|as\s+)?" + _NUMBER
                     + r"\s*(?:/|out\s+of)\s*" + _NUMBER + ")", re.I)


def _value(num: str, den: str | None, scale: float) -> tuple[float | None, str | None]:
    v = float(num)
    if den is not None:
        d = float(den)
        if d <= 0:
            return None, f"bad denominator in '{num}/{den}'"
        v = v / d * scale  # "8/10" means 80 on a 0-100 scale: rescaled explicitly, never guessed
    if not 0.0 <= v <= scale:
        return None, f"score {v:g} outside 0-{scale:g}"
    return v, None


def parse_score(text: str | None, scale: float = 100.0) -> tuple[float | None, str | None]:
    """(score, None) or (None, reason). A score is found only where it is unambiguous: the first non-empty line
    (markdown stripped) holding the number alone (optionally 'Score:', 'N/D', 'out of D', or a reason after a
    dash), or an explicit 'score: N' / 'rating is N' phrase. A number inside a sentence ('the answer has 2
    sentences'), a token like `1e2`, or two different stated scores are parse failures, never a guess."""
    if text is None or not text.strip():
        return None, "empty reply"
    plain = re.sub(r"[*_`#>]", "", text)
    lines = [ln.strip() for ln in plain.strip().splitlines() if ln.strip()]
    found: list[tuple[str, str | None]] = []
    m = (_FIRST_LINE.match(lines[0]) or _FIRST_FRACTION.match(lines[0])) if lines else None
    if m:
        found.append((m.group(1), m.group(2)))
    for s in _STATED.finditer(plain):
        found.append((s.group(1), s.group(2)) if s.group(1) is not None else (s.group(3), s.group(4)))
    snippet = text.strip().replace("\n", " ")[:60]
    if not found:
        return None, f"unparsable reply: {snippet!r}"
    values = {_value(num, den, scale) for num, den in found}
    if len(values) > 1:
        return None, f"ambiguous reply (several scores): {snippet!r}"
    return values.pop()


class ImageDataURL:
    """Picklable loader for DataLoader workers: an image file as a base64 data URL for vision judges."""

    def __call__(self, path) -> str:
        """`path`: an image file's path, or an embedded image's bytes as a file object."""
        if isinstance(path, str):
            mime = mimetypes.guess_type(path)[0] or "image/png"
            with open(path, "rb") as f:
                data = f.read()
        else:
            from selector.core.export import image_extension

            data = path.read()
            mime = mimetypes.guess_type("x" + image_extension(data))[0] or "image/png"
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"


class ImageRGB:
    """Picklable loader for DataLoader workers: an image file as an RGB PIL image, for a local VLM judge."""

    def __call__(self, path: str):
        from PIL import Image

        with Image.open(path) as im:
            return im.convert("RGB")


@register
class JudgeMetric(Metric):
    """LLM-judge score 0-100. backend "openai": an OpenAI-compatible chat-completions server (`url`, `model`,
    key from the env var `api_key_env`); backend "hf": a local model (`model` = folder or hub id), greedy: a causal
    LM, or a vision-language model (any AutoModelForImageTextToText with a chat template: LLaVA, Qwen2-VL, Idefics3,
    Gemma 3, ...) that also sees the image with `send_images`."""

    name = "judge"

    def __init__(self, backend: str = "openai", url: str | None = None, model: str | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", prompt: str = DEFAULT_PROMPT, send_images: bool = False,
                 temperature: float = 0.0, max_tokens: int = 64, concurrency: int = 8, timeout: float = 60.0,
                 max_retries: int = 5, backoff: float = 1.0, response_cache: str | None = None,
                 scale: float = 100.0, trust_remote_code: bool = False, column: str | None = None):
        if backend not in ("openai", "hf"):
            raise ValueError(f"judge backend must be 'openai' or 'hf', got {backend!r}")
        if backend == "openai" and not (url and model):
            raise ValueError("the openai judge needs --judge-url and --judge-model")
        if backend == "hf" and not model:
            raise ValueError("the hf judge needs --judge-model (a local folder or hub id)")
        if "{answer}" not in prompt:
            raise ValueError("the judge prompt template must contain {answer} (and usually {instruction})")
        self.backend, self.url, self.model, self.api_key_env = backend, url, model, api_key_env
        self.uses_torch = backend == "hf"
        self.prompt, self.send_images = prompt, bool(send_images)
        self.needs = frozenset({"text", "image"}) if send_images else frozenset({"text"})
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)
        self.concurrency, self.timeout = int(concurrency), float(timeout)
        self.max_retries, self.backoff = int(max_retries), float(backoff)
        self.response_cache, self.scale, self.trust_remote_code = response_cache, float(scale), trust_remote_code
        self._column = column
        self._client = None
        self._hf = None  # (tokenizer, causal LM, device)
        self._vlm = None  # (processor, image-text-to-text model, device, eos ids)
        self._failures: dict[str, int] = {}
        self._limiter: Limiter | None = None  # set by an engine running several copies (see shared_limit)

    @property
    def column(self) -> str:
        return self._column or self.name

    def config(self) -> dict[str, Any]:
        # Never the key, nor settings that do not change replies (concurrency, timeouts, retries).
        return {"backend": self.backend, "url": self.url, "model": self.model,
                "prompt_sha256": hashlib.sha256(self.prompt.encode()).hexdigest()[:16],
                "send_images": self.send_images, "temperature": self.temperature, "max_tokens": self.max_tokens,
                "scale": self.scale}

    def preprocessor(self):
        return ImageRGB() if self.backend == "hf" else ImageDataURL()

    def preprocess(self, image_path: str):
        return self.preprocessor()(image_path)

    def preprocess_key(self) -> str | None:
        if not self.send_images:
            return None
        return "image-rgb" if self.backend == "hf" else "image-data-url"

    def shared_limit(self) -> SharedLimit | None:
        """`concurrency` requests in flight across the whole run, however many copies of the judge send them. A
        slot is taken back after twice the request timeout plus a margin (urllib's timeout bounds each socket wait,
        not the whole request)."""
        return SharedLimit(self.concurrency, 2 * self.timeout + 10.0) if self.backend == "openai" else None

    def share_limit(self, limiter: Limiter) -> None:
        self._limiter = limiter

    def setup(self, device: str = "cpu") -> None:
        if self.backend == "openai":
            from metrics.judge_client import ChatClient, ChatConfig, ResponseCache

            cfg = ChatConfig(url=self.url, model=self.model, api_key_env=self.api_key_env,
                             temperature=self.temperature, max_tokens=self.max_tokens, timeout=self.timeout,
                             max_retries=self.max_retries, backoff=self.backoff, concurrency=self.concurrency)
            self._client = ChatClient(cfg, ResponseCache(self.response_cache) if self.response_cache else None,
                                      self._limiter)
        elif is_vision_language(self.model, self.trust_remote_code):
            self._vlm = _load_vlm(self.model, device, self.trust_remote_code)
        elif self.send_images:
            raise MmselectError(f"--judge-images: judge model {self.model!r} is a text-only language model; "
                                "pass a vision-language model folder with --judge-model, or drop --judge-images")
        else:
            self._hf = _load_causal_lm(self.model, device, self.trust_remote_code)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"failures": dict(self._failures)}
        if self._client is not None:
            out.update(self._client.stats())
        return out

    def prompt_text(self, instruction: str, answer: str) -> str:
        """The judge prompt filled in for one record."""
        return self.prompt.replace("{instruction}", instruction or "").replace("{answer}", answer or "")

    def messages(self, instruction: str, answer: str, image: str | None = None) -> list[dict]:
        text = self.prompt_text(instruction, answer)
        if image is None:
            return [{"role": "user", "content": text}]
        return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                             {"type": "text", "text": text}]}]

    def score(self, batch: Batch) -> Scored:
        n = len(batch)
        images = batch.images if self.send_images else [None] * n
        reasons: list[str | None] = [None] * n
        if self.send_images and batch.image_errors is not None:
            reasons = list(batch.image_errors)
        todo = [i for i in range(n) if reasons[i] is None]
        if self.backend == "openai":
            convs = [self.messages(batch.instructions[i], batch.answers[i], images[i]) for i in todo]
            replies = self._client.complete_many(convs)
            texts = [r.text for r in replies]
            errors = [r.error for r in replies]
        elif self._vlm is not None:  # a local vision-language model: each record with its own image
            texts = _generate_vlm(self._vlm, [self.prompt_text(batch.instructions[i], batch.answers[i]) for i in todo],
                                  [images[i] for i in todo], self.max_tokens)
            errors = [None] * len(texts)
        else:
            convs = [self.messages(batch.instructions[i], batch.answers[i]) for i in todo]
            texts = _generate(self._hf, convs, self.max_tokens)
            errors = [None] * len(texts)
        values = np.full(n, np.nan)
        raw: list[str | None] = [None] * n
        for i, text, err in zip(todo, texts, errors):
            raw[i] = text
            if err is not None:
                reasons[i] = f"request failed: {err}"
                continue
            value, why = parse_score(text, self.scale)
            if value is None:
                reasons[i] = why
            else:
                values[i] = value
        for r in reasons:
            if r is not None:
                key = r.split(":")[0]
                self._failures[key] = self._failures.get(key, 0) + 1
        return Scored(values, reasons, {"reply": raw})


def _load_causal_lm(ref: str, device: str, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_hf_model(ref, flag=JUDGE_MODEL_FLAG, trust_remote_code=trust_remote_code)
    with loading(ref, JUDGE_MODEL_FLAG):
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code,
                                                     use_safetensors=True).to(device).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "left"
    return tok, model, device


def _generate(hf, convs: list[list[dict]], max_new_tokens: int) -> list[str]:
    """Greedy replies of a local causal LM (chat template when the tokenizer has one)."""
    tok, model, device = hf
    prompts = []
    for conv in convs:
        text = conv[-1]["content"] if isinstance(conv[-1]["content"], str) else \
            "".join(p.get("text", "") for p in conv[-1]["content"])
        if getattr(tok, "chat_template", None):
            prompts.append(tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                   add_generation_prompt=True))
        else:
            prompts.append(text + "\n")
    if not prompts:
        return []
    enc = tok(prompts, return_tensors="pt", padding=True).to(device)
    enc.pop("token_type_ids", None)  # BERT-style tokenizers emit them; causal LMs take none
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def is_vision_language(ref: str, trust_remote_code: bool) -> bool:
    """Whether a model folder / hub id is an image-text-to-text model (judged with its processor and images)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    path = resolve_hf_model(ref, flag=JUDGE_MODEL_FLAG, trust_remote_code=trust_remote_code)
    with loading(ref, JUDGE_MODEL_FLAG):
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    return config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def _load_vlm(ref: str, device: str, trust_remote_code: bool):
    """(processor, model, device, eos ids) of a local vision-language judge; one that has no chat template is refused
    (its prompt could not be rendered)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = resolve_hf_model(ref, flag=JUDGE_MODEL_FLAG, trust_remote_code=trust_remote_code)
    with loading(ref, JUDGE_MODEL_FLAG):
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=trust_remote_code,
                                                            use_safetensors=True).to(device).eval()
    if getattr(processor, "chat_template", None) is None:
        raise MmselectError(f"judge model {ref!r}: its processor has no chat template to render the judge prompt; "
                            "use a chat/instruction model")
    eos = model.generation_config.eos_token_id
    eos = list(eos) if isinstance(eos, (list, tuple)) else [eos if eos is not None else processor.tokenizer.eos_token_id]
    return processor, model, device, eos


def _generate_vlm(vlm, prompts: list[str], images: list, max_new_tokens: int) -> list[str]:
    """Greedy replies of a local VLM, one record at a time (records with and without an image mix freely)."""
    import torch

    processor, model, device, eos = vlm
    tok = processor.tokenizer
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    replies = []
    for text, image in zip(prompts, images):
        parts = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": text}]
        rendered = processor.apply_chat_template([{"role": "user", "content": parts}], tokenize=False,
                                                 add_generation_prompt=True)
        enc = processor(text=rendered, images=[image] if image is not None else None, return_tensors="pt")
        enc = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in enc.items()}
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tok.pad_token_id)
        replies.append(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return replies
