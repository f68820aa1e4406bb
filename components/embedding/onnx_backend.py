"""ONNX Runtime backend of the local provider: export a sentence-transformers folder once,
offline, and encode with ``onnxruntime`` on the CPU.

Why not sentence-transformers' own ``backend="onnx"``: it needs ``optimum-onnx``, whose
releases require ``transformers<4.58`` while this stack pins 5.x (docs/embedding.md). The
export here is the same recipe done directly:

1. the model folder's transformer (``AutoModel``, eager attention so the graph has the
   pattern ONNX Runtime fuses) through ``torch.onnx.export``;
2. ``onnxruntime.transformers.optimizer`` fuses embedding + LayerNorm, attention, GELU
   (for the model types it knows; others keep ONNX Runtime's generic graph optimisations);
3. ``onnx-int8`` only: dynamic int8 quantization of the weights (per channel), activations
   quantized on the fly (``onnxruntime.quantization.quantize_dynamic``).

The exported files are cached under ``<embedding.cache_dir>/onnx/<model id>/`` (written to a
temporary name and renamed, so two processes exporting at once both end with a whole file)
and reused by every later run. Pooling (mean / CLS / max) and ``Normalize`` follow the
folder's ``modules.json`` exactly as sentence-transformers applies them; a folder with any
other module (``Dense``, ...) is refused with a message naming it.

Example:
    >>> from components.embedding.config import EmbeddingConfig
    >>> from components.embedding.providers import get_provider
    >>> provider = get_provider(EmbeddingConfig(backend="onnx"))  # doctest: +SKIP
    >>> provider.embed_batch(["hello world"], "document").shape  # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import ProviderSetupError
from .providers import read_json_or_empty

log = logging.getLogger(__name__)

OnnxBackend = Literal["onnx", "onnx-int8"]

#: Bumped whenever the export recipe changes: part of the export folder and of the cache
#: namespace (a new recipe's vectors never mix with an old one's).
EXPORT_VERSION = 1

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
# sentence-transformers' Pooling config flags -> the pooling OnnxEncoder reproduces
_POOLING_MODES: dict[str, Literal["mean", "cls", "max"]] = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}
# model_type (config.json) -> the optimizer's model_type, for the fusions it implements
_OPTIMIZER_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "mpnet": "bert"}


def backend_tag(backend: OnnxBackend) -> str:
    """The backend's part of the cache namespace and export folder, e.g. ``onnx-int8.e1``."""
    return f"{backend}.e{EXPORT_VERSION}"


@dataclass(frozen=True)
class Pipeline:
    """What sentence-transformers does after the transformer, read from ``modules.json``."""

    pooling: Literal["mean", "cls", "max"]
    normalize: bool


def read_pipeline(model_path: Path) -> Pipeline:
    """The pooling and normalisation of a sentence-transformers folder.

    Raises:
        ProviderSetupError: a module the ONNX backend does not reproduce, or a pooling mode
            other than mean / CLS / max.
    """
    modules_file = model_path / "modules.json"
    try:
        modules = json.loads(modules_file.read_text())
    except (OSError, ValueError) as error:
        raise ProviderSetupError(
            f"embedding.backend onnx needs {modules_file} (a sentence-transformers folder): "
            f"{error}; use backend: torch"
        ) from None
    types = [module.get("type", "") for module in modules]
    unsupported = [t for t in types if t not in (_TRANSFORMER, _POOLING, _NORMALIZE)]
    if unsupported or types[:1] != [_TRANSFORMER] or _POOLING not in types:
        raise ProviderSetupError(
            f"embedding.backend onnx reproduces Transformer -> Pooling [-> Normalize] only; "
            f"{modules_file} has {types}; use backend: torch for this model"
        )
    pooling_dir = next(m.get("path", "") for m in modules if m.get("type") == _POOLING)
    config = json.loads((model_path / pooling_dir / "config.json").read_text())
    enabled = [key for key, on in config.items() if key.startswith("pooling_mode_") and on]
    if len(enabled) != 1 or enabled[0] not in _POOLING_MODES:
        raise ProviderSetupError(
            f"embedding.backend onnx supports one of mean / CLS / max pooling; "
            f"{model_path / pooling_dir / 'config.json'} sets {enabled}; "
            "use backend: torch for this model"
        )
    return Pipeline(pooling=_POOLING_MODES[enabled[0]], normalize=_NORMALIZE in types)


def export_dir(cache_dir: Path, model_files_id: str, backend: OnnxBackend) -> Path:
    """Where the export of a model folder (``name@fingerprint``) for ``backend`` is cached."""
    slug = re.sub(r"[^A-Za-z0-9._@-]+", "_", model_files_id).strip("_")
    return Path(cache_dir) / "onnx" / f"{slug}.{backend_tag(backend)}"


def ensure_export(
    model_path: Path, cache_dir: Path, model_files_id: str, backend: OnnxBackend
) -> Path:
    """The exported ``model.onnx`` for ``backend``, exporting it first if it is not cached.

    Args:
        model_path: the sentence-transformers folder (its transformer at the top level).
        cache_dir: ``embedding.cache_dir``.
        model_files_id: ``name@fingerprint`` of the folder (``ProviderIdentity.model_files_id``).
        backend: ``onnx`` (fp32, fused) or ``onnx-int8`` (the same, weights in int8).
    """
    folder = export_dir(cache_dir, model_files_id, backend)
    target = folder / "model.onnx"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    if backend == "onnx-int8":
        source = ensure_export(model_path, cache_dir, model_files_id, "onnx")
        log.info("quantizing %s to int8 (once; cached in %s)", source, folder)
        _write_atomically(target, lambda tmp: _quantize(source, tmp))
    else:
        log.info("exporting %s to ONNX (once; cached in %s)", model_path, folder)
        _write_atomically(target, lambda tmp: _export_fp32(model_path, tmp))
    return target


def _write_atomically(target: Path, write: object) -> None:
    """Run ``write(tmp)`` into a temporary file beside ``target``, then rename it there."""
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".onnx")
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)  # type: ignore[operator]
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _export_fp32(model_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    names = list(tokenizer.model_input_names)
    model = AutoModel.from_pretrained(
        str(model_path), local_files_only=True, attn_implementation="eager"
    ).eval()

    class LastHiddenState(torch.nn.Module):
        """The transformer with named tensor inputs and one output (what ONNX exports)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state

    sample = tokenizer(["a sample text", "another one"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    raw = out.with_suffix(".raw.onnx")
    try:
        # The tracer warns about Python branches on shapes in transformers' masking code;
        # they are constant for an encoder (key length = mask length), so the graph holds.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LastHiddenState(),
                tuple(sample[name] for name in names),
                str(raw),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,  # the TorchScript exporter needs no onnxscript
            )
        config = AutoConfig.from_pretrained(str(model_path), local_files_only=True)
        model_type = _OPTIMIZER_TYPES.get(getattr(config, "model_type", ""))
        if model_type is None:
            os.replace(raw, out)
            return
        from onnxruntime.transformers import optimizer

        optimized = optimizer.optimize_model(
            str(raw),
            model_type=model_type,
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
        )
        optimized.save_model_to_file(str(out))
    finally:
        raw.unlink(missing_ok=True)


def _quantize(source: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,  # per output channel: closer to fp32 than one scale per matrix
        # fused ops (Attention, SkipLayerNormalization) have no inferred output type
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


class OnnxEncoder:
    """Encode texts with an exported model: tokenizer, ONNX Runtime session, pooling.

    Args:
        model_path: the sentence-transformers folder (tokenizer, pooling, prompts).
        onnx_path: the exported model (:func:`ensure_export`).
        max_seq_length: tokens per text after truncation (the identity's ``max_input_tokens``).
    """

    def __init__(self, model_path: Path, onnx_path: Path, max_seq_length: int | None) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.pipeline = read_pipeline(model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        self.max_seq_length = max_seq_length
        self.lower_case = bool(
            read_json_or_empty(model_path / "sentence_bert_config.json").get("do_lower_case")
        )
        options = ort.SessionOptions()
        # ONNX Runtime ignores OMP_NUM_THREADS; honour it like torch does (0 = all cores).
        options.intra_op_num_threads = _env_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        prompts = read_json_or_empty(model_path / "config_sentence_transformers.json").get(
            "prompts"
        )
        self.prompts: dict[str, str] = dict(prompts or {})

    def encode(self, texts: list[str], prompt_name: str | None = None) -> np.ndarray:
        """float32 [len(texts), d], pooled (and unit-length where the folder normalises)."""
        prompt = self.prompts.get(prompt_name, "") if prompt_name else ""
        # As sentence-transformers' Transformer.tokenize: prompt prepended, text stripped.
        batch = [(prompt + text).strip() for text in texts]
        if self.lower_case:
            batch = [text.lower() for text in batch]
        encoded = self.tokenizer(
            batch,
            padding=True,
            truncation="longest_first",
            max_length=self.max_seq_length,
            return_tensors="np",
        )
        feed = {name: encoded[name].astype(np.int64) for name in self.input_names}
        hidden = self.session.run(None, feed)[0]
        mask = encoded["attention_mask"].astype(np.float32)[..., None]
        if self.pipeline.pooling == "mean":
            vectors = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        elif self.pipeline.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            vectors = np.where(mask > 0, hidden, -1e9).max(axis=1)
        if self.pipeline.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.clip(norms, 1e-12, None)
        return np.asarray(vectors, dtype=np.float32)


def _env_threads() -> int:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else 0
